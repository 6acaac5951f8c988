/**
 * `ambit waypoint`: the L7 proxy process for the services bound to one waypoint Gateway. It
 * subscribes to the control plane as `namespace/name`, obtains its own certificate through the
 * control plane's CA (the key never leaves the process), serves HBONE on 15008, metrics on
 * 15020 and readiness on 15021, and drains on SIGTERM. Exits 2 on bad options.
 *
 * With `--ingress` it is the ingress gateway of a Gateway of class `ambit` instead: no HBONE
 * listener; the Gateway's listener ports are opened on `--host` for clients outside the mesh
 * (src/waypoint/ingress.ts), and requests enter the mesh over HBONE with its identity.
 */
import { numberOption, parseOptions } from './lib/options.js';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { DiscoveryClient } from '../discovery/discovery-client.js';
import { GrpcSigner } from '../discovery/grpc-signer.js';
import { IdentityManager } from '../identity/manager.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import { childLogger } from '../util/log.js';
import { WaypointConfig } from '../waypoint/config.js';
import { WaypointError } from '../waypoint/errors.js';
import { isPathNormalization, PATH_NORMALIZATIONS, type PathNormalization } from '../waypoint/request-target.js';
import { configFromView } from '../waypoint/view-config.js';
import { Waypoint } from '../waypoint/waypoint.js';
import { Ingress } from '../waypoint/ingress.js';
import { ingressFromView } from '../waypoint/ingress-config.js';
import { tlsGroupsHelp, tlsGroupsOption } from './lib/tls-groups.js';

const HELP = `usage: ambit waypoint --name NAMESPACE/NAME --control-plane HOST:PORT --token-file FILE [options]

identity and control plane:
  --name NS/NAME             the waypoint Gateway this process serves (required)
  --ingress                  serve NS/NAME as an ingress gateway (gatewayClassName ambit):
                             its listener ports on --host, no HBONE listener (default off)
  --service-account NAME     service account the waypoint runs as (default: the Gateway name)
  --trust-domain NAME        SPIFFE trust domain (default cluster.local)
  --control-plane HOST:PORT  discovery and CA address (required)
  --trust-bundle FILE        PEM roots of the control plane (omit for plaintext on loopback)
  --token-file FILE          bootstrap or service-account token (required)
  --cache-file FILE          keep the last good view here (default: not persisted)

serving:
  --host ADDR                listen address (default 0.0.0.0)
  --hbone-port N             HBONE (default 15008)
  --metrics-port N           Prometheus metrics (default 15020)
  --readiness-port N         readiness (default 15021)
  --max-header-bytes N       largest request head (default 16384)
  --headers-timeout-ms N     time to receive a request head (default 10000)
  --path-normalization MODE  Istio's pathNormalization: NONE, BASE, MERGE_SLASHES or
                             DECODE_AND_MERGE_SLASHES (default BASE)
  --retry-budget-ratio X     retries as a share of requests (default 0.2)
  --retry-budget-min N       retries always allowed per second (default 10)
${tlsGroupsHelp(29, 'HBONE and the control-plane link')}`;

function num(v: string | undefined, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  return numberOption(v, name, dflt, { min, max }, (m) => new WaypointError('AMBIT_ERR_WAYPOINT_CONFIG', m));
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('waypoint', HELP, argv, {
    name: { type: 'string' }, 'service-account': { type: 'string' }, 'trust-domain': { type: 'string' },
    'control-plane': { type: 'string' }, 'trust-bundle': { type: 'string' }, 'token-file': { type: 'string' }, 'cache-file': { type: 'string' },
    host: { type: 'string' }, 'hbone-port': { type: 'string' }, 'metrics-port': { type: 'string' }, 'readiness-port': { type: 'string' },
    'max-header-bytes': { type: 'string' }, 'headers-timeout-ms': { type: 'string' }, 'path-normalization': { type: 'string' },
    'retry-budget-ratio': { type: 'string' }, 'retry-budget-min': { type: 'string' }, 'tls-groups': { type: 'string' },
    ingress: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  const name = values.name;
  const address = values['control-plane'];
  const tokenFile = values['token-file'];
  if (name === undefined || !/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(name) || address === undefined || tokenFile === undefined) {
    process.stderr.write(`ambit waypoint: --name NAMESPACE/NAME, --control-plane and --token-file are required\n\n${HELP}`);
    return 2;
  }
  const [namespace, gateway] = name.split('/') as [string, string];
  const pathNormalization = values['path-normalization'] ?? 'BASE';
  if (!isPathNormalization(pathNormalization)) {
    process.stderr.write(`ambit waypoint: --path-normalization must be one of ${PATH_NORMALIZATIONS.join(', ')}, not ${JSON.stringify(pathNormalization.slice(0, 40))}\n`);
    return 2;
  }
  let tlsGroups: string[];
  try {
    tlsGroups = tlsGroupsOption(values['tls-groups']);
  } catch (err) {
    process.stderr.write(`ambit waypoint: ${(err as Error).message}\n`);
    return 2;
  }
  const log = childLogger('waypoint');
  const trustBundlePem = values['trust-bundle'] === undefined ? undefined : await readFile(values['trust-bundle'], 'utf8');
  const token = () => readFile(tokenFile, 'utf8').then((s) => s.trim());
  const target = { address, tlsGroups, ...(trustBundlePem !== undefined ? { trustBundlePem } : {}) };
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ambit_waypoint_process_' });
  const signer = new GrpcSigner({ ...target, kind: 'waypoint', name, token });
  const identities = new IdentityManager({ signer, registry });
  const identity = formatSpiffeId({ trustDomain: values['trust-domain'] ?? 'cluster.local', namespace, serviceAccount: values['service-account'] ?? gateway });
  const host = values.host ?? '0.0.0.0';
  if (values.ingress === true) return runIngress({ name, identity, identities, registry, log, tlsGroups, host, pathNormalization, target, token, cacheFile: values['cache-file'], values, signer });

  const waypoint = await Waypoint.start({
    name, identity, credentials: identities, registry, logger: log, tlsGroups,
    config: new WaypointConfig({ bound: [], workloads: [], pathNormalization }),
    listen: { host, port: num(values['hbone-port'], 'hbone-port', 15008, 0, 65535) },
    limits: { maxHeaderBytes: num(values['max-header-bytes'], 'max-header-bytes', 16_384, 1024), headersTimeoutMs: num(values['headers-timeout-ms'], 'headers-timeout-ms', 10_000, 100) },
    retryBudget: { ratio: num(values['retry-budget-ratio'], 'retry-budget-ratio', 0.2, 0, 10), minPerSecond: num(values['retry-budget-min'], 'retry-budget-min', 10) },
  });
  let ready = false;
  const discovery = new DiscoveryClient({
    ...target, kind: 'waypoint', name, token,
    ...(values['cache-file'] !== undefined ? { cacheFile: values['cache-file'] } : {}),
    // Throwing here nacks the push and keeps the last good config.
    onUpdate: (_change, view) => {
      waypoint.setConfig(configFromView(view, { waypoint: name, pathNormalization }));
      ready = true;
    },
  });
  discovery.on('update', (c) => {
    if (c.source === 'cache') {
      waypoint.setConfig(configFromView(discovery.view, { waypoint: name, pathNormalization }));
      ready = true;
    }
  });
  await discovery.start();

  const servers: Server[] = [];
  const serve = (port: number, handler: Parameters<typeof createServer>[1]) => new Promise<void>((resolve, reject) => {
    const s = createServer(handler);
    s.once('error', reject);
    s.listen(port, host, () => resolve());
    servers.push(s);
  });
  await serve(num(values['metrics-port'], 'metrics-port', 15020, 0, 65535), (req, res) => {
    if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
    registry.metrics().then((text) => { res.writeHead(200, { 'content-type': registry.contentType }); res.end(text); }, () => res.writeHead(500).end());
  });
  await serve(num(values['readiness-port'], 'readiness-port', 15021, 0, 65535), (_req, res) => {
    res.writeHead(ready ? 200 : 503).end(ready ? 'ready' : 'waiting for the first configuration');
  });
  log.info({ waypoint: name, identity }, 'waypoint started');
  await new Promise<void>((resolve) => {
    const stop = () => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  ready = false;
  await waypoint.close();
  await discovery.close();
  signer.close();
  identities.close();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return 0;
}

interface IngressRun {
  name: string;
  identity: string;
  identities: IdentityManager;
  registry: Registry;
  log: ReturnType<typeof childLogger>;
  tlsGroups: string[];
  host: string;
  pathNormalization: PathNormalization;
  target: { address: string; tlsGroups: string[]; trustBundlePem?: string };
  token: () => Promise<string>;
  cacheFile: string | undefined;
  values: Record<string, string | boolean | undefined>;
  signer: GrpcSigner;
}

/** `--ingress`: the Gateway's listeners for outside clients, routes and policy from the view. */
async function runIngress(r: IngressRun): Promise<number> {
  const { name, log, host, pathNormalization } = r;
  const str = (k: string) => (typeof r.values[k] === 'string' ? (r.values[k] as string) : undefined);
  const ingress = await Ingress.start({
    name, identity: r.identity, credentials: r.identities, registry: r.registry, logger: log, tlsGroups: r.tlsGroups, host,
    limits: { maxHeaderBytes: num(str('max-header-bytes'), 'max-header-bytes', 16_384, 1024), headersTimeoutMs: num(str('headers-timeout-ms'), 'headers-timeout-ms', 10_000, 100) },
    retryBudget: { ratio: num(str('retry-budget-ratio'), 'retry-budget-ratio', 0.2, 0, 10), minPerSecond: num(str('retry-budget-min'), 'retry-budget-min', 10) },
  }, { waypoint: new WaypointConfig({ bound: [], workloads: [], pathNormalization }), ports: [] });
  let ready = false;
  // Pushes apply in order: a newer one waits for the listeners of the one before.
  let applying: Promise<void> = Promise.resolve();
  const apply = (view: DiscoveryClient['view']) => {
    const config = ingressFromView(view, { gateway: name, listenHost: host, pathNormalization });
    applying = applying.then(() => ingress.setConfig(config)).then(() => { ready = true; }, (err: Error) => log.error({ ingress: name, reason: err.message }, 'ingress configuration could not be applied'));
  };
  const discovery = new DiscoveryClient({
    ...r.target, kind: 'waypoint', name, token: r.token,
    ...(r.cacheFile !== undefined ? { cacheFile: r.cacheFile } : {}),
    // Throwing here nacks the push and keeps the last good config.
    onUpdate: (_change, view) => apply(view),
  });
  discovery.on('update', (c) => { if (c.source === 'cache') apply(discovery.view); });
  await discovery.start();
  const servers: Server[] = [];
  const serve = (port: number, handler: Parameters<typeof createServer>[1]) => new Promise<void>((resolve, reject) => {
    const s = createServer(handler);
    s.once('error', reject);
    s.listen(port, host, () => resolve());
    servers.push(s);
  });
  await serve(num(str('metrics-port'), 'metrics-port', 15020, 0, 65535), (req, res) => {
    if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
    r.registry.metrics().then((text) => { res.writeHead(200, { 'content-type': r.registry.contentType }); res.end(text); }, () => res.writeHead(500).end());
  });
  await serve(num(str('readiness-port'), 'readiness-port', 15021, 0, 65535), (_req, res) => {
    res.writeHead(ready ? 200 : 503).end(ready ? 'ready' : 'waiting for the first configuration');
  });
  log.info({ ingress: name, identity: r.identity }, 'ingress gateway started');
  await new Promise<void>((resolve) => {
    const stop = () => { process.off('SIGTERM', stop); process.off('SIGINT', stop); resolve(); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  ready = false;
  await ingress.close();
  await discovery.close();
  r.signer.close();
  r.identities.close();
  await Promise.all(servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
  return 0;
}
