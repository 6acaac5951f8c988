/**
 * The Kubernetes manifests in deploy/: every object validates against the Kubernetes schemas
 * (kubernetes-models), CRDs are structural, kustomizations list files that exist, and the
 * properties the operator relies on hold (agent capabilities instead of privileged, host mounts,
 * rolling update, probes, resources; control plane replicas, PDB, Service, CA Secret; RBAC that
 * covers exactly what the control plane watches and gives the agent nothing). Flags in the
 * manifests are checked against the real `ambit <command> --help`, so a renamed flag breaks here
 * and not on a cluster.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { WATCHED_KINDS } from '../../../src/control/kube/kube-kinds.js';
import { parseObjects } from '../../../src/model/load/load-paths.js';
import { renderWaypointTemplate } from './render-waypoint.js';

const execFileP = promisify(execFile);
const DEPLOY = join(REPO_ROOT, 'deploy');

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name) && e.name !== 'kustomization.yaml' && e.name !== 'prometheus.yml') out.push(p);
  }
  return out.sort();
}

function load(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${relative(REPO_ROOT, file)}: ${d.errors[0]?.message}`);
    const v = d.toJS() as Obj | null;
    if (v !== null) out.push(v);
  }
  return out;
}

const ALL = new Map(yamlFiles(DEPLOY).map((f) => [relative(DEPLOY, f), load(f)]));
const objects = [...ALL.values()].flat();
const find = <T = Obj>(kind: string, name: string): T => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind} ${name} in deploy/`);
  return o as T;
};

// kubernetes-models class for each built-in kind the manifests use.
const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  'v1/Namespace': Namespace, 'v1/ServiceAccount': ServiceAccount, 'v1/Service': Service, 'v1/ConfigMap': ConfigMap,
  'apps/v1/Deployment': Deployment, 'apps/v1/DaemonSet': DaemonSet, 'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

test('every manifest validates against the Kubernetes schemas', (t) => {
  t.true(objects.length >= 20, `found ${objects.length} objects`);
  for (const [file, objs] of ALL) {
    for (const o of objs) {
      const where = `${file}: ${o.kind} ${o.metadata?.name}`;
      const cls = MODELS[`${o.apiVersion}/${o.kind}`];
      if (cls !== undefined) {
        t.notThrows(() => new cls(o as never).validate(), where);
      } else if (o.apiVersion.startsWith('gateway.networking.k8s.io/')) {
        // Not a built-in kind: validated by ambit's own model (GatewayClass: by the CRD schema below).
        if (o.kind === 'Gateway') t.deepEqual(parseObjects([o]).diagnostics.filter((d) => d.severity === 'error'), [], where);
        else t.is(o.kind, 'GatewayClass', where);
      } else {
        t.fail(`${where}: no schema to validate ${o.apiVersion}/${o.kind} against`);
      }
    }
  }
});

test('schema validation is real: a broken object fails', (t) => {
  const ds = structuredClone(find('DaemonSet', 'ambit-agent')) as { spec: { template: { spec: { containers: { ports?: { containerPort: unknown }[] }[] } } } };
  (ds.spec.template.spec.containers[0] as { ports?: { containerPort: unknown }[] }).ports = [{ containerPort: 'fifteen-thousand' }];
  t.throws(() => new DaemonSet(ds as never).validate());
});

test('CRDs are structural: typed root, one storage version, names agree, and cover every optional kind the control plane watches', (t) => {
  const crds = objects.filter((o) => o.kind === 'CustomResourceDefinition') as unknown as {
    metadata: { name: string };
    spec: { group: string; names: { plural: string; kind: string }; scope: string; versions: { name: string; served: boolean; storage: boolean; schema?: { openAPIV3Schema?: Record<string, unknown> } }[] };
  }[];
  const structural = (s: Record<string, unknown>, path: string): void => {
    const props = s['properties'] as Record<string, Record<string, unknown>> | undefined;
    t.true(typeof s['type'] === 'string' || s['x-kubernetes-int-or-string'] === true, `${path} has a type`);
    for (const [k, v] of Object.entries(props ?? {})) structural(v, `${path}.${k}`);
    if (s['items'] !== undefined) structural(s['items'] as Record<string, unknown>, `${path}[]`);
  };
  for (const c of crds) {
    t.is(c.metadata.name, `${c.spec.names.plural}.${c.spec.group}`);
    t.is(c.spec.versions.filter((v) => v.storage).length, 1, `${c.metadata.name}: exactly one storage version`);
    for (const v of c.spec.versions) {
      const schema = v.schema?.openAPIV3Schema;
      t.truthy(schema, `${c.metadata.name}/${v.name} has a schema`);
      if (schema !== undefined) {
        t.is(schema['type'], 'object');
        structural(schema, `${c.metadata.name}/${v.name}`);
      }
    }
  }
  const have = new Set(crds.map((c) => `${c.spec.group}/${c.spec.names.kind}`));
  for (const k of WATCHED_KINDS.filter((x) => x.optional)) t.true(have.has(`${k.group}/${k.kind}`), `CRD for ${k.group}/${k.kind}`);
  const gc = find('GatewayClass', 'ambit-waypoint') as unknown as { spec: { controllerName: string } };
  t.regex(gc.spec.controllerName, /^[a-z0-9.-]+\/[a-z0-9._/-]+$/, 'controllerName is a domain-prefixed path');
});

test('kustomizations list files that exist and put everything in ambit-system', (t) => {
  for (const dir of [DEPLOY, join(DEPLOY, 'crds')]) {
    const k = load(join(dir, 'kustomization.yaml'))[0] as unknown as { kind: string; resources: string[]; namespace?: string };
    t.is(k.kind, 'Kustomization');
    for (const r of k.resources) t.true(existsSync(join(dir, r)), `${relative(REPO_ROOT, dir)}/${r} exists`);
  }
  const top = load(join(DEPLOY, 'kustomization.yaml'))[0] as unknown as { namespace: string; resources: string[]; images: { name: string }[] };
  t.is(top.namespace, 'ambit-system');
  for (const r of top.resources) for (const o of load(join(DEPLOY, r))) if (o.metadata.namespace !== undefined) t.is(o.metadata.namespace, 'ambit-system', `${r}: ${o.kind} ${o.metadata.name}`);
  const images = new Set(top.images.map((i) => i.name));
  for (const o of objects.filter((x) => x.kind === 'Deployment' || x.kind === 'DaemonSet')) {
    if (o.metadata.namespace !== 'ambit-system') continue;
    for (const c of (o as unknown as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template.spec.containers) t.true(images.has(c.image), `${o.metadata.name} uses image '${c.image}' that kustomize rewrites`);
  }
});

interface Container {
  name: string; image: string; args: string[];
  securityContext: { privileged?: boolean; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean; capabilities: { drop: string[]; add?: string[] } };
  readinessProbe?: unknown; livenessProbe?: unknown; startupProbe?: unknown;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  ports?: { containerPort: number; name: string }[];
}
interface PodSpec { containers: Container[]; volumes: { name: string; hostPath?: { path: string }; secret?: { secretName: string }; configMap?: { name: string }; projected?: unknown }[]; tolerations?: { operator: string }[]; hostNetwork?: boolean; serviceAccountName: string; automountServiceAccountToken?: boolean }

test('agent DaemonSet: named capabilities instead of privileged, each justified; host mounts; tolerations; rolling update; probes; resources', (t) => {
  const ds = find<{ spec: { updateStrategy: { type: string; rollingUpdate: { maxUnavailable: number; maxSurge: number } }; template: { spec: PodSpec & { terminationGracePeriodSeconds: number } } } }>('DaemonSet', 'ambit-agent');
  const pod = ds.spec.template.spec;
  const c = pod.containers[0] as Container;
  t.is(ds.spec.updateStrategy.type, 'RollingUpdate');
  // Zero-downtime upgrade: the new agent starts next to the old one and takes its listeners over.
  t.is(ds.spec.updateStrategy.rollingUpdate.maxSurge, 1);
  t.is(ds.spec.updateStrategy.rollingUpdate.maxUnavailable, 0);
  t.not(c.securityContext.privileged, true, 'not privileged');
  t.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  t.deepEqual([...(c.securityContext.capabilities.add ?? [])].sort(), ['BPF', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_RESOURCE']);
  const text = readFileSync(join(DEPLOY, 'agent.yaml'), 'utf8');
  for (const cap of c.securityContext.capabilities.add ?? []) t.regex(text, new RegExp(`# CAP_${cap}: \\S`), `CAP_${cap} is justified in a comment`);
  t.true(c.securityContext.readOnlyRootFilesystem);
  t.false(c.securityContext.allowPrivilegeEscalation);
  t.true(pod.hostNetwork, 'runs in the node netns');
  const host = (path: string) => pod.volumes.find((v) => v.hostPath?.path === path);
  const mount = (vol: string | undefined) => c.volumeMounts.find((m) => m.name === vol);
  t.is(mount(host('/sys/fs/bpf')?.name)?.mountPath, '/sys/fs/bpf');
  t.is(mount(host('/sys/fs/cgroup')?.name)?.mountPath, '/sys/fs/cgroup');
  t.true(mount(host('/sys/fs/cgroup')?.name)?.readOnly);
  t.is(mount(host('/proc')?.name)?.mountPath, '/host/proc');
  t.true(mount(host('/proc')?.name)?.readOnly);
  t.true(pod.tolerations?.some((x) => x.operator === 'Exists'), 'tolerates every taint');
  t.truthy(c.readinessProbe);
  t.truthy(c.livenessProbe);
  t.truthy(c.resources.requests['cpu']);
  t.truthy(c.resources.requests['memory']);
  t.truthy(c.resources.limits['memory']);
  t.true(c.args.includes('--pod-discovery=proc') && c.args.includes('--proc-root=/host/proc'), 'Kubernetes-mode pod discovery');
  t.is(pod.automountServiceAccountToken, false, 'the agent never calls the API; only a projected token to prove who it is');
  t.truthy(pod.volumes.find((v) => v.projected !== undefined));
  // On hostNetwork declared ports are hostPorts, which would keep the surge pod from scheduling.
  t.is(c.ports, undefined, 'no containerPorts: the surge pod must fit next to the old one');
  const drain = c.args.find((a) => a.startsWith('--drain-seconds='));
  t.truthy(drain, 'the drain deadline is explicit');
  t.true(pod.terminationGracePeriodSeconds > Number(drain?.split('=')[1]), 'the grace period outlasts the drain');
  const state = mount(host('/var/lib/ambit')?.name);
  t.is(state?.mountPath, '/var/lib/ambit', 'the state dir (view cache, handover.sock) is a hostPath both pods of an upgrade share');
  t.true(c.args.includes('--state-dir=/var/lib/ambit/agent'));
});

test('control plane: 2 replicas, PDB, Service 15012/15014, CA root from a Secret, probes, non-root', (t) => {
  const d = find<{ spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec & { securityContext: { runAsNonRoot: boolean } } } } }>('Deployment', 'ambit-control');
  t.is(d.spec.replicas, 2);
  const pod = d.spec.template.spec;
  const c = pod.containers[0] as Container;
  t.true(pod.securityContext.runAsNonRoot);
  t.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  t.truthy(c.readinessProbe);
  t.truthy(c.livenessProbe);
  t.truthy(c.resources.limits['memory']);
  const ca = pod.volumes.find((v) => v.secret?.secretName === 'ambit-ca');
  t.truthy(ca, 'CA root from Secret ambit-ca');
  const caDir = c.volumeMounts.find((m) => m.name === ca?.name)?.mountPath;
  t.true(c.args.includes(`--ca-dir=${caDir}`), 'the CA directory is the Secret mount');
  const pdb = find<{ spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } }>('PodDisruptionBudget', 'ambit-control');
  t.is(pdb.spec.minAvailable, 1);
  for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) t.is(d.spec.template.metadata.labels[k], v, 'PDB selects the control plane pods');
  const svc = find<{ spec: { selector: Record<string, string>; ports: { port: number }[] } }>('Service', 'ambit-control');
  t.deepEqual(svc.spec.ports.map((p) => p.port).sort(), [15012, 15014]);
  for (const [k, v] of Object.entries(svc.spec.selector)) t.is(d.spec.template.metadata.labels[k], v, 'Service selects the control plane pods');
  const agent = find<{ spec: { template: { spec: PodSpec } } }>('DaemonSet', 'ambit-agent').spec.template.spec.containers[0] as Container;
  t.true(agent.args.includes('--control=ambit-control.ambit-system.svc:15012'), 'agents dial the Service');
});

test('RBAC: the control plane reads exactly what it watches, no secrets, no wildcards; the agent has no API access', (t) => {
  const role = find<{ rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] }>('ClusterRole', 'ambit-control');
  const can = (group: string, resource: string, verb: string) => role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  for (const k of WATCHED_KINDS) for (const verb of ['list', 'watch']) t.true(can(k.group, k.plural, verb), `${verb} ${k.group || 'core'}/${k.plural}`);
  t.true(can('authentication.k8s.io', 'tokenreviews', 'create'));
  for (const [g, r] of [['apps', 'deployments'], ['', 'services'], ['', 'serviceaccounts'], ['', 'configmaps']] as const) {
    for (const verb of ['get', 'create', 'update', 'delete']) t.true(can(g, r, verb), `waypoint deployer: ${verb} ${g || 'core'}/${r}`);
  }
  for (const r of role.rules) {
    t.false(r.resources.includes('secrets'), 'no access to Secrets');
    t.false(r.verbs.includes('*') || r.resources.includes('*') || r.apiGroups.includes('*'), 'no wildcards');
  }
  const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') as unknown as { subjects: { name: string }[] }[];
  t.false(bindings.some((b) => b.subjects.some((s) => s.name === 'ambit-agent')), 'no role is bound to the agent');
});

async function helpOf(sub: string): Promise<string> {
  const { stdout } = await execFileP(process.execPath, ['--import=tsx', join(REPO_ROOT, 'src/cli/main.ts'), sub, '--help'], { cwd: REPO_ROOT, timeout: 60_000 });
  return stdout;
}

test('every flag in the manifests is a flag of the real command', async (t) => {
  const check = async (sub: string, args: string[], where: string) => {
    const help = await helpOf(sub);
    for (const a of args.filter((x) => x.startsWith('--'))) {
      const flag = a.split('=')[0] as string;
      t.true(new RegExp(`\\s${flag}[\\s,]`).test(help), `${where}: ${flag} is a flag of 'ambit ${sub}'`);
    }
  };
  const agent = (find<{ spec: { template: { spec: PodSpec } } }>('DaemonSet', 'ambit-agent').spec.template.spec.containers[0] as Container).args;
  t.is(agent[0], 'agent');
  await check('agent', agent.slice(1), 'agent.yaml');
  const control = (find<{ spec: { template: { spec: PodSpec } } }>('Deployment', 'ambit-control').spec.template.spec.containers[0] as Container).args;
  t.is(control[0], 'control');
  await check('control', control.slice(1), 'control-plane.yaml');
  const wp = (find<{ spec: { template: { spec: PodSpec } } }>('Deployment', 'waypoint').spec.template.spec.containers[0] as Container).args;
  t.is(wp[0], 'waypoint');
  await check('waypoint', wp.slice(1), 'waypoint/waypoint.yaml');
});

test('deploy/waypoint/waypoint.yaml is exactly what the waypoint deployer renders', (t) => {
  t.is(readFileSync(join(DEPLOY, 'waypoint', 'waypoint.yaml'), 'utf8'), renderWaypointTemplate(), 'regenerate with: node --import=tsx test/unit/deploy/render-waypoint.ts > deploy/waypoint/waypoint.yaml');
});
