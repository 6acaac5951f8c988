/**
 * `npm run bench -- model`: the resource model at scale. Generates a mesh of 10,000 pods,
 * 1,000 Services and 1,000 AuthorizationPolicies over 50 namespaces and 100 nodes, then measures,
 * in each round (bench/lib/report.ts reports the median and range over the rounds):
 * - parse_ms: validating the 12,000+ objects (schema, as from the Kubernetes API),
 * - compile_ms: a full compile to a Snapshot (the round's median of 5),
 * - incremental_ms: median of one pod change applied with applyChange (300 changes a round),
 * - l4_decisions_per_s: agent-side L4 authorization (look up the destination workload by IP,
 *   take its indexed policies from the snapshot, evaluate) with the 1,000 policies in place
 *   (the round's median of 7 batches),
 * - l4_decisions_all_policies_per_s: the same against one indexed set of all 1,000 policies,
 *   selecting by the destination's namespace and labels at evaluation time,
 * - rss_mb: peak resident memory of the process so far (the generated objects included).
 * `--quick` uses a tenth of the mesh and shorter loops.
 */
import { performance } from 'node:perf_hooks';
import { evaluateAuthorization } from '../src/model/authz/evaluate.js';
import { buildAuthzPolicySet } from '../src/model/authz/policy-set.js';
import type { AuthzContext } from '../src/model/authz/types.js';
import { applyChange, compile } from '../src/model/compile/compile.js';
import type { Snapshot } from '../src/model/compile/snapshot.js';
import { parseObjects } from '../src/model/load/load-paths.js';
import type { Resource } from '../src/model/resource.js';
import { interleaved, median, Samples, type BenchOptions } from './lib/report.js';

interface MeshSize {
  pods: number;
  services: number;
  policies: number;
  namespaces: number;
  nodes: number;
}

function ip(base: string, i: number): string {
  return `${base}.${(i >> 8) & 255}.${i & 255}`;
}

/** Plain Kubernetes objects of a generated mesh (deterministic). */
export function generateMesh(size: MeshSize): unknown[] {
  const out: unknown[] = [];
  const nsName = (i: number): string => `ns-${i}`;
  out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
  for (let n = 0; n < size.namespaces; n++) {
    out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: nsName(n), labels: { 'ambit.dev/dataplane-mode': 'ambient' } } });
    out.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace: nsName(n) } });
  }
  for (let n = 0; n < size.nodes; n++) {
    out.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: `node-${n}` }, status: { addresses: [{ type: 'InternalIP', address: `198.18.${n >> 8}.${n & 255}` }] } });
  }
  const svcPerNs = Math.ceil(size.services / size.namespaces);
  for (let s = 0; s < size.services; s++) {
    const ns = nsName(s % size.namespaces);
    const app = `app-${Math.floor(s / size.namespaces)}`;
    out.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: app, namespace: ns },
      spec: { clusterIP: ip('198.18', 32768 + s), selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    });
  }
  for (let p = 0; p < size.pods; p++) {
    const ns = nsName(p % size.namespaces);
    const app = `app-${Math.floor(p / size.namespaces) % svcPerNs}`;
    out.push({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `pod-${p}`, namespace: ns, labels: { app, version: `v${p % 3}` } },
      spec: { nodeName: `node-${p % size.nodes}`, serviceAccountName: 'app', containers: [{ name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
      status: { phase: 'Running', podIP: ip('198.19', p) },
    });
  }
  out.push({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } });
  out.push({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-blocked', namespace: 'istio-system' },
    spec: { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['203.0.113.0/24'] } }] }] },
  });
  for (let i = 0; i < size.policies - 1; i++) {
    const n = i % size.namespaces;
    const ns = nsName(n);
    const app = `app-${Math.floor(i / size.namespaces) % svcPerNs}`;
    const peer = nsName((n + 1) % size.namespaces);
    const deny = i % 5 === 4;
    out.push({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `policy-${i}`, namespace: ns },
      spec: deny
        ? { selector: { matchLabels: { app } }, action: 'DENY', rules: [{ from: [{ source: { notNamespaces: [ns, peer] } }], to: [{ operation: { ports: ['9999'] } }] }] }
        : {
            selector: { matchLabels: { app } },
            action: 'ALLOW',
            rules: [
              { from: [{ source: { principals: [`cluster.local/ns/${peer}/sa/app`] } }], to: [{ operation: { ports: ['8080'] } }] },
              { from: [{ source: { namespaces: [ns] } }] },
            ],
          },
    });
  }
  return out;
}

export async function run(opts: BenchOptions): Promise<Samples> {
  const scale = opts.quick ? 10 : 1;
  const size: MeshSize = { pods: 10_000 / scale, services: 1_000 / scale, policies: 1_000 / scale, namespaces: 50 / (opts.quick ? 5 : 1), nodes: 100 / scale };
  let peakRss = process.memoryUsage().rss;
  const sample = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };
  const objects = generateMesh(size);
  const out = new Samples();
  await interleaved('model', opts.rounds, ['ambit'], async (subject, round) => {
    let t = performance.now();
    const parsed = parseObjects(objects);
    const parseMs = performance.now() - t;
    const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) throw new Error(`generated mesh is invalid: ${errors[0]?.message}`);
    sample();

    let snap: Snapshot | undefined;
    const compileTimes: number[] = [];
    for (let i = 0; i < (opts.quick ? 2 : 5); i++) {
      t = performance.now();
      snap = compile(parsed.resources);
      compileTimes.push(performance.now() - t);
      sample();
    }
    let current = snap as Snapshot;

    // One pod change at a time: relabel a pod (moves it between subsets, touches its Service).
    const pods = parsed.resources.filter((r) => r.kind === 'Pod');
    const changes = opts.quick ? 50 : 300;
    const variants: Resource[] = [];
    for (let i = 0; i < changes; i++) {
      const pod = pods[(i * 7919) % pods.length] as Resource;
      const raw = JSON.parse(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: pod.metadata, spec: pod.spec, status: pod.status })) as { metadata: { labels: Record<string, string> } };
      raw.metadata.labels['version'] = `canary-${round}-${i}`;
      const r = parseObjects([raw]).resources[0];
      if (r === undefined) throw new Error('changed pod failed to parse');
      variants.push(r);
    }
    const incTimes: number[] = [];
    for (const v of variants) {
      t = performance.now();
      current = applyChange(current, { upsert: [v] });
      incTimes.push(performance.now() - t);
    }
    sample();

    // L4 decisions: destination by IP → its policies → evaluate.
    const workloads = current.workloads();
    const ctxs: AuthzContext[] = [];
    for (let i = 0; i < 1024; i++) {
      const src = workloads[(i * 31) % workloads.length];
      const dst = workloads[(i * 17 + 5) % workloads.length];
      if (src === undefined || dst === undefined || dst.ip === undefined || src.ip === undefined) continue;
      ctxs.push({ source: { principal: src.identity.slice('spiffe://'.length), namespace: src.namespace, ip: src.ip }, destination: { ip: dst.ip, port: i % 2 === 0 ? 8080 : 9999, namespace: dst.namespace, labels: dst.labels } });
    }
    const options = { layer: 'L4' as const };
    let allowed = 0;
    const decide = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const c = ctxs[i & 1023] as AuthzContext;
        const w = current.workloadByIp(c.destination.ip);
        if (w === undefined) continue;
        if (evaluateAuthorization(current.authorizationSetFor(w), c, options).allow) allowed++;
      }
    };
    decide(20_000); // warm-up
    const batches: number[] = [];
    const n = opts.quick ? 50_000 : 200_000;
    for (let b = 0; b < 7; b++) {
      t = performance.now();
      decide(n);
      batches.push(n / ((performance.now() - t) / 1000));
    }
    sample();

    // The same decisions against one indexed set of all policies, selecting by namespace/labels
    // (what `ambit why` or a control-plane check does without a per-workload list).
    const all = buildAuthzPolicySet(current.authorizationPolicies());
    const meshOptions = { layer: 'L4' as const, applySelectors: true };
    const meshBatches: number[] = [];
    for (let b = 0; b < 3; b++) {
      t = performance.now();
      const m = n / 4;
      for (let i = 0; i < m; i++) evaluateAuthorization(all, ctxs[i & 1023] as AuthzContext, meshOptions);
      meshBatches.push(m / ((performance.now() - t) / 1000));
    }
    sample();
    if (allowed === 0) throw new Error('no decision allowed anything: the generated policies are wrong');

    out.add(subject, 'parse_ms', parseMs);
    out.add(subject, 'compile_ms', median(compileTimes));
    out.add(subject, 'incremental_ms', median(incTimes));
    out.add(subject, 'l4_decisions_per_s', median(batches));
    out.add(subject, 'l4_decisions_all_policies_per_s', median(meshBatches));
    out.add(subject, 'rss_mb', peakRss / 1048576);
  });
  return out;
}
