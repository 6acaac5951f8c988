/**
 * `ambit agent`: the node agent process (one per node, a DaemonSet in a cluster). Subscribes to
 * the control plane for its node's view, captures the local pods of the mesh with eBPF, tunnels
 * their traffic with HBONE, enforces L4 policy, serves metrics and admin endpoints. Drains on
 * SIGTERM/SIGINT. Exits 2 on bad options, 1 when it cannot start (with a one-line reason).
 */
import { numberOption, parseOptions, PORT } from './lib/options.js';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent, type AgentPorts } from '../agent/agent.js';
import { AgentConfigError } from '../agent/errors.js';
import { existsSync } from 'node:fs';
import { PodLocator, defaultProcRoot } from '../agent/kube/pod-locator.js';
import { childLogger } from '../util/log.js';
import { tlsGroupsHelp, tlsGroupsOption } from './lib/tls-groups.js';

const HELP = `usage: ambit agent --node NAME --control ADDR [options]

control plane:
  --node NAME              this node's name, as in the pods' spec.nodeName (required)
  --control HOST:PORT      control plane: its TLS port (15012) with --control-ca, or 127.0.0.1:15010 (required)
  --control-ca FILE        PEM roots that sign the control plane's certificate (e.g. <ca-dir>/root-cert.pem)
  --control-identity ID    SPIFFE ID the control plane must present (default spiffe://<td>/ns/ambit-system/sa/ambit-control)
  --token-file FILE        bootstrap or service-account token, re-read on every use (required)

capture:
  --cgroup-root PATH       cgroup v2 directory holding the pods (default /sys/fs/cgroup/kubepods.slice)
  --pin-dir DIR            bpffs directory for pinned maps and links (default /sys/fs/bpf/ambit/<node>)
  --node-address IP[,IP]   this node's addresses as pods see them (default: every address of this netns)
  --state-dir DIR          where the last good view is cached and handover.sock lives: an agent started
                           with the same state dir takes the running one's listeners over (upgrade)
                           (default /var/lib/ambit/agent/<node>)
  --pod-discovery MODE     how a pod's netns is found: 'annotation' (ambit.dev/netns, file mode) or
                           'proc' (Kubernetes: pod UID in the node's /proc/<pid>/cgroup) (default annotation)
  --proc-root DIR          the node's /proc for --pod-discovery proc (default /host/proc if mounted, else /proc)
  --dns-capture BOOL       answer enrolled pods' DNS for mesh names (<svc>.<ns>.svc.<cluster-domain> -> VIP)
                           and forward the rest to the resolver they addressed, as Istio ambient's DNS
                           capture: 'true' or 'false' (default true; false also detaches a previous
                           agent's DNS programs)
  --cluster-domain NAME    Kubernetes cluster domain of Service names in DNS (default cluster.local)

ports (in each pod's netns / in the node's netns):
  --outbound-port N        outbound capture listener (default 15001)
  --inbound-port N         inbound plaintext listener (default 15006)
  --hbone-port N           inbound HBONE listener, and the port dialled on other nodes (default 15008)
  --dns-port N             DNS proxy listeners on 127.0.0.1, UDP and TCP (default 15053)
  --admin-port N           admin: /config_dump /certs /connections (default 15000, on --admin-host)
  --metrics-port N         Prometheus /metrics (default 15020)
  --readiness-port N       /healthz/ready (default 15021)
  --admin-host ADDR        address of the admin port (default 127.0.0.1)

other:
  --trust-domain NAME      SPIFFE trust domain (default cluster.local)
  --root-namespace NAME    Istio root namespace (default istio-system)
  --drain-seconds N        how long SIGTERM lets open connections finish before they are cut
                           (default 30, as the DaemonSet's terminationGracePeriodSeconds)
  --drain-ms N             the same in milliseconds (overrides --drain-seconds)
  --handover-wait-seconds N  on SIGTERM before any hand-over, keep serving up to N s for a new agent
                           to take the listeners (a DaemonSet surge pod) before draining (default 0)
  --source-address MODE    what apps see as the peer of an inbound connection: 'client' (the client
                           pod's own address, as ztunnel does; needs CAP_NET_ADMIN) or 'node' (the
                           node's address) (default client; falls back to node, logged and counted
                           in ambit_source_address_fallbacks_total, where unsupported)
${tlsGroupsHelp(27, 'HBONE and the control-plane link')}`;

function port(v: string | undefined, name: string): number | undefined {
  return numberOption(v, name, undefined, PORT, (m) => new AgentConfigError(m));
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('agent', HELP, argv, {
    node: { type: 'string' }, control: { type: 'string' }, 'control-ca': { type: 'string' }, 'control-identity': { type: 'string' },
    'token-file': { type: 'string' }, 'cgroup-root': { type: 'string' }, 'pin-dir': { type: 'string' }, 'node-address': { type: 'string' },
    'state-dir': { type: 'string' }, 'outbound-port': { type: 'string' }, 'inbound-port': { type: 'string' }, 'hbone-port': { type: 'string' },
    'admin-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'readiness-port': { type: 'string' }, 'admin-host': { type: 'string' },
    'trust-domain': { type: 'string' }, 'root-namespace': { type: 'string' }, 'drain-ms': { type: 'string' }, 'drain-seconds': { type: 'string' }, 'handover-wait-seconds': { type: 'string' },
    'pod-discovery': { type: 'string' }, 'proc-root': { type: 'string' }, 'source-address': { type: 'string' }, 'tls-groups': { type: 'string' },
    'dns-capture': { type: 'string' }, 'dns-port': { type: 'string' }, 'cluster-domain': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  for (const req of ['node', 'control', 'token-file'] as const) {
    if (values[req] === undefined) {
      process.stderr.write(`ambit agent: --${req} is required\n\n${HELP}`);
      return 2;
    }
  }
  const tlsGroups = tlsGroupsOption(values['tls-groups']);
  const tokenFile = values['token-file'] as string;
  const readToken = async () => {
    const t = (await readFile(tokenFile, 'utf8')).split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
    if (t === undefined) throw new AgentConfigError(`token file ${tokenFile} is empty`);
    return t.split(/\s+/)[0] as string;
  };
  try {
    await readToken();
  } catch (err) {
    throw new AgentConfigError(`cannot read the token file: ${(err as Error).message}`, { cause: err });
  }
  let trust: string | undefined;
  if (values['control-ca'] !== undefined) {
    try {
      trust = readFileSync(values['control-ca'], 'utf8');
    } catch (err) {
      throw new AgentConfigError(`cannot read --control-ca ${values['control-ca']}: ${(err as Error).message}`, { cause: err });
    }
  }
  const ports: AgentPorts = {};
  const setPort = (key: keyof AgentPorts, flag: string) => { const p = port(values[flag as keyof typeof values] as string | undefined, flag); if (p !== undefined) ports[key] = p; };
  setPort('outbound', 'outbound-port');
  setPort('inboundPlain', 'inbound-port');
  setPort('hbone', 'hbone-port');
  setPort('admin', 'admin-port');
  setPort('metrics', 'metrics-port');
  setPort('readiness', 'readiness-port');
  const drainSeconds = values['drain-seconds'] === undefined ? undefined : Number(values['drain-seconds']);
  if (drainSeconds !== undefined && !(Number.isInteger(drainSeconds) && drainSeconds >= 0)) throw new AgentConfigError(`--drain-seconds must be a non-negative integer, got '${values['drain-seconds']}'`);
  const drainMsFlag = values['drain-ms'] === undefined ? undefined : Number(values['drain-ms']);
  if (drainMsFlag !== undefined && !(Number.isInteger(drainMsFlag) && drainMsFlag >= 0)) throw new AgentConfigError(`--drain-ms must be a non-negative integer, got '${values['drain-ms']}'`);
  const drain = drainMsFlag ?? (drainSeconds !== undefined ? drainSeconds * 1000 : undefined);
  const handoverWait = values['handover-wait-seconds'] === undefined ? undefined : Number(values['handover-wait-seconds']);
  if (handoverWait !== undefined && !(Number.isFinite(handoverWait) && handoverWait >= 0)) throw new AgentConfigError(`--handover-wait-seconds must be a non-negative number, got '${values['handover-wait-seconds']}'`);
  const sourceAddress = values['source-address'] ?? 'client';
  if (sourceAddress !== 'client' && sourceAddress !== 'node') throw new AgentConfigError(`--source-address must be 'client' or 'node', got '${sourceAddress}'`);
  const dnsCapture = values['dns-capture'] ?? 'true';
  if (dnsCapture !== 'true' && dnsCapture !== 'false') throw new AgentConfigError(`--dns-capture must be 'true' or 'false', got '${dnsCapture}'`);
  const dnsPort = port(values['dns-port'], 'dns-port');
  const discovery = values['pod-discovery'] ?? 'annotation';
  if (discovery !== 'annotation' && discovery !== 'proc') throw new AgentConfigError(`--pod-discovery must be 'annotation' or 'proc', got '${discovery}'`);
  let locator: PodLocator | undefined;
  if (discovery === 'proc') {
    locator = new PodLocator({ procRoot: values['proc-root'] ?? defaultProcRoot(existsSync), logger: childLogger('agent.kube') });
    locator.refresh();
    if (locator.lastError !== undefined) throw new AgentConfigError(locator.lastError);
  }
  const agent = new Agent({
    node: values.node as string,
    control: values.control as string,
    token: readToken,
    ports,
    ...(trust !== undefined ? { controlTrustBundlePem: trust } : {}),
    ...(values['control-identity'] !== undefined ? { controlIdentity: values['control-identity'] } : {}),
    ...(values['cgroup-root'] !== undefined ? { cgroupRoot: values['cgroup-root'] } : {}),
    ...(values['pin-dir'] !== undefined ? { pinDir: values['pin-dir'] } : {}),
    ...(values['state-dir'] !== undefined ? { stateDir: values['state-dir'] } : {}),
    ...(values['node-address'] !== undefined ? { nodeAddresses: values['node-address'].split(',').map((s) => s.trim()).filter(Boolean) } : {}),
    ...(values['admin-host'] !== undefined ? { adminHost: values['admin-host'] } : {}),
    ...(values['trust-domain'] !== undefined ? { trustDomain: values['trust-domain'] } : {}),
    ...(values['root-namespace'] !== undefined ? { rootNamespace: values['root-namespace'] } : {}),
    ...(drain !== undefined ? { drainMs: drain } : {}),
    ...(handoverWait !== undefined ? { handoverWaitMs: handoverWait * 1000 } : {}),
    ...(sourceAddress === 'node' ? { preserveSourceAddress: false } : {}),
    dnsCapture: dnsCapture === 'true',
    ...(dnsPort !== undefined ? { dnsPort } : {}),
    ...(values['cluster-domain'] !== undefined ? { clusterDomain: values['cluster-domain'] } : {}),
    tlsGroups,
    ...(locator !== undefined ? {
      netnsOf: (w) => {
        const r = locator.locate(w.uid);
        return r.found ? { path: r.location.netnsPath } : { reason: r.reason, retry: r.retry };
      },
    } : {}),
  });
  await agent.start();
  await new Promise<void>((resolve) => {
    const stop = () => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await agent.stop();
  return 0;
}
