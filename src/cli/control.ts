/**
 * `ambit control`: the control plane process. Reads the mesh from a folder (`--config DIR`) or
 * the Kubernetes API (`--kubernetes`), serves Discovery and the CA over gRPC, metrics,
 * /config_dump and readiness; drains on SIGTERM. Exits 1 with the first problems when the
 * initial configuration is invalid, 2 on bad options (unknown flags, a bad --debounce-ms).
 */
import { numberOption, parseOptions, PORT } from './lib/options.js';
import { CertificateAuthority } from '../identity/ca.js';
import { ControlPlane } from '../control/control-plane.js';
import { TokenFileAuthenticator, TokenReviewAuthenticator, type Authenticator } from '../control/auth.js';
import { FolderSource } from '../control/sources/folder-source.js';
import { KubeSource } from '../control/sources/kube-source.js';
import { ModelCompiler } from '../control/model-compiler.js';
import { WaypointDeployer } from '../control/waypoint-deployer.js';
import { loadKubeConfig } from '../control/kube/kube-config.js';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeTokenReviewer } from '../control/kube/token-review.js';
import { ControlConfigError } from '../control/errors.js';
import type { ConfigSource } from '../control/source.js';
import { tlsGroupsHelp, tlsGroupsOption } from './lib/tls-groups.js';
import { readFileSync } from 'node:fs';
import { allocateVips } from '../model/compile/service-entry.js';
import { DEFAULT_MESH_CONFIG, outboundTrafficPolicyMode, parseMeshConfig, type MeshConfig } from '../control/mesh-config.js';

const HELP = `usage: ambit control (--config DIR | --kubernetes) [options]

sources:
  --config DIR               folder of mesh YAML, watched for changes
  --kubernetes               list/watch the Kubernetes API (in-cluster, or --kubeconfig)
  --kubeconfig FILE          kubeconfig for --kubernetes (default: in-cluster)
  --context NAME             kubeconfig context (default: current-context)
  --debounce-ms N            quiet time after a change before recompiling, ms; changes within it
                             are applied together (default 5 with --config, 50 with --kubernetes)
  --allow-unknown-fields     with --config: fields the API does not define are warnings and
                             ignored (default: errors that reject the configuration, as Istio
                             does; objects from the Kubernetes API are always warned, not refused)

security:
  --token-file FILE          bootstrap tokens for folder mode (required with --config)
  --ca-dir DIR               root CA directory, created on first start (default /var/lib/ambit/ca)
  --trust-domain NAME        SPIFFE trust domain (default cluster.local)
  --agent-service-accounts L comma-separated ns/name agents run as (default ambit-system/ambit-agent)

serving:
  --host ADDR                address for TLS, metrics, readiness (default 0.0.0.0)
  --grpc-tls-port N          gRPC over TLS (default 15012)
  --grpc-plaintext-port N    gRPC plaintext on 127.0.0.1, 'off' to disable (default 15010)
  --metrics-port N           metrics and /config_dump (default 15014)
  --readiness-port N         readiness (default 15021)
  --root-namespace NAME      Istio root namespace (default istio-system)

mesh:
  --mesh-config FILE         Istio MeshConfig YAML (or the istio ConfigMap holding it in data.mesh);
                             ambit reads outboundTrafficPolicy.mode (default: none)
  --outbound-traffic-policy M  ALLOW_ANY: enrolled pods reach any destination; REGISTRY_ONLY:
                             only mesh services, pods and ServiceEntries, other connections
                             are refused (default ALLOW_ANY, or the --mesh-config value)
  --service-entry-vip-range CIDR  IPv4 block for ServiceEntry hosts without addresses
                             (default 240.240.0.0/16, as Istio's auto-allocation)
${tlsGroupsHelp(29, 'the gRPC TLS port')}`;

/** A whole number of milliseconds 0-3600000 (undefined when not given); throws naming the option. */
function milliseconds(v: string | undefined, name: string): number | undefined {
  return numberOption(v, name, undefined, { max: 3_600_000, integer: true, what: 'a whole number of milliseconds' }, (m) => new ControlConfigError(m));
}

function port(v: string | undefined, name: string, dflt: number): number {
  return numberOption(v, name, dflt, PORT, (m) => new ControlConfigError(m));
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('control', HELP, argv, {
    config: { type: 'string' }, kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' }, context: { type: 'string' },
    'debounce-ms': { type: 'string' }, 'allow-unknown-fields': { type: 'boolean' },
    'token-file': { type: 'string' }, 'ca-dir': { type: 'string' }, 'trust-domain': { type: 'string' },
    'agent-service-accounts': { type: 'string' }, host: { type: 'string' },
    'grpc-tls-port': { type: 'string' }, 'grpc-plaintext-port': { type: 'string' },
    'metrics-port': { type: 'string' }, 'readiness-port': { type: 'string' }, 'root-namespace': { type: 'string' },
    'tls-groups': { type: 'string' },
    'mesh-config': { type: 'string' }, 'outbound-traffic-policy': { type: 'string' }, 'service-entry-vip-range': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  if ((values.config === undefined) === (values.kubernetes !== true)) {
    process.stderr.write(`ambit control: pass exactly one of --config DIR or --kubernetes\n\n${HELP}`);
    return 2;
  }
  let debounceMs: number | undefined;
  let tlsGroups: string[];
  let mesh: MeshConfig = DEFAULT_MESH_CONFIG;
  try {
    debounceMs = milliseconds(values['debounce-ms'], 'debounce-ms');
    tlsGroups = tlsGroupsOption(values['tls-groups']);
    const file = values['mesh-config'];
    if (file !== undefined) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new ControlConfigError(`--mesh-config ${file}: ${(err as Error).message}`);
      }
      mesh = { ...mesh, ...parseMeshConfig(text, file) };
    }
    const otp = values['outbound-traffic-policy'];
    if (otp !== undefined) mesh = { ...mesh, outboundTrafficPolicy: { mode: outboundTrafficPolicyMode(otp, '--outbound-traffic-policy') } };
    const range = values['service-entry-vip-range'];
    if (range !== undefined) {
      try {
        allocateVips([], range);
      } catch (err) {
        throw new ControlConfigError(`--service-entry-vip-range: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    process.stderr.write(`ambit control: ${(err as Error).message}\n`);
    return 2;
  }
  const trustDomain = values['trust-domain'] ?? 'cluster.local';
  const rootNamespace = values['root-namespace'] ?? 'istio-system';
  const vipRange = values['service-entry-vip-range'];
  const compiler = new ModelCompiler({ trustDomain, rootNamespace, ...(vipRange !== undefined ? { serviceEntryVipRange: vipRange } : {}) });
  let source: ConfigSource;
  let authenticator: Authenticator;
  let kube: KubeConfig | undefined;
  if (values.config !== undefined) {
    const tokenFile = values['token-file'];
    if (tokenFile === undefined) throw new ControlConfigError('--token-file is required with --config (subscribers authenticate with a bootstrap token)');
    authenticator = new TokenFileAuthenticator(tokenFile);
    source = new FolderSource({
      dir: values.config, compiler, rootNamespace, allowUnknownFields: values['allow-unknown-fields'] === true,
      ...(debounceMs !== undefined ? { debounceMs } : {}),
    });
  } else {
    kube = loadKubeConfig({
      ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
      ...(values.context !== undefined ? { context: values.context } : {}),
    });
    const agents = values['agent-service-accounts']?.split(',').map((s) => s.trim()).filter(Boolean);
    authenticator = new TokenReviewAuthenticator({ reviewer: new KubeTokenReviewer(kube), ...(agents ? { agentServiceAccounts: agents } : {}) });
    source = new KubeSource({ kube, compiler, rootNamespace, ...(debounceMs !== undefined ? { debounceMs } : {}) });
  }
  const ca = await CertificateAuthority.open({ dir: values['ca-dir'] ?? '/var/lib/ambit/ca', trustDomain });
  const plain = values['grpc-plaintext-port'];
  const cp = new ControlPlane({
    source, authenticator, signer: ca, trustDomain, mesh,
    host: values.host ?? '0.0.0.0',
    tlsPort: port(values['grpc-tls-port'], 'grpc-tls-port', 15012),
    plaintextPort: plain === 'off' ? null : port(plain, 'grpc-plaintext-port', 15010),
    metricsPort: port(values['metrics-port'], 'metrics-port', 15014),
    readinessPort: port(values['readiness-port'], 'readiness-port', 15021),
    tlsGroups,
  });
  await cp.start();
  if (!cp.ready) {
    const dump = cp.configDump() as { lastRejected: { file?: string; line?: number; column?: number; message: string }[] };
    for (const p of dump.lastRejected.slice(0, 10)) {
      process.stderr.write(`ambit control: ${p.file ? `${p.file}:${p.line ?? 0}:${p.column ?? 0}: ` : ''}${p.message}\n`);
    }
    process.stderr.write('ambit control: the initial configuration is invalid; fix it (see `ambit analyze`) and start again\n');
    await cp.stop();
    return 1;
  }
  // In Kubernetes mode the control plane also runs each waypoint Gateway as a Deployment + Service.
  const deployer = kube === undefined ? undefined : new WaypointDeployer({ kube, snapshot: () => compiler.current, roots: () => cp.trustBundlePem });
  deployer?.start();
  await new Promise<void>((resolve) => {
    const stop = () => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  deployer?.stop();
  await cp.stop();
  return 0;
}
