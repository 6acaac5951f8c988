/**
 * Fixtures for the agent's loopback tests: a view built from YAML through the real pipeline
 * (model compile → control-plane projection → LocalView, exactly what discovery delivers), a
 * real in-process CA behind identity managers, and two "nodes" worth of proxy handlers whose
 * pods live on distinct loopback addresses (127.0.0.x), so HBONE, authorization and delivery
 * run over real sockets without root.
 */
import { createServer, type AddressInfo, type Server, type Socket, connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { logSink } from '../../helpers/log-sink.js';
import { eventually } from '../../helpers/eventually.js';
import { parseYamlText } from '../../../src/model/load/yaml-text.js';
import { parseObject } from '../../../src/model/load/parse-object.js';
import type { Resource } from '../../../src/model/resource.js';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import type { CompileOptions } from '../../../src/model/compile/options.js';
import { meshConfigResource, type MeshConfig } from '../../../src/control/mesh-config.js';
import { Projector } from '../../../src/control/projection.js';
import { LocalView } from '../../../src/discovery/local-view.js';
import type { DiscoveryResponse__Output } from '../../../src/control/proto.js';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager } from '../../../src/identity/manager.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import { MeshState } from '../../../src/agent/mesh-state.js';
import { createAgentMetrics } from '../../../src/agent/metrics.js';
import { ConnectionTracker } from '../../../src/agent/connections.js';
import { AccessLog } from '../../../src/agent/access-log.js';
import { Resolver, type Destination } from '../../../src/agent/resolve.js';
import type { ProxyContext } from '../../../src/agent/context.js';

/** YAML of the Nodes and of namespaces enrolled in ambient mode, the start of a test mesh. */
export function clusterYaml(nodes: readonly string[], ambientNamespaces: readonly string[]): string {
  return [
    ...nodes.map((n) => `apiVersion: v1\nkind: Node\nmetadata: { name: ${n} }\n`),
    ...ambientNamespaces.map((ns) => `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${ns}, labels: { ambit.dev/dataplane-mode: ambient } }\n`),
  ].join('---\n');
}

/** YAML of one running Pod (label `app` defaults to its name; `containerPort` is declared when given). */
export function podYaml(p: { name: string; namespace: string; node: string; serviceAccount: string; ip: string; app?: string; containerPort?: number }): string {
  const ports = p.containerPort !== undefined ? `, ports: [{ containerPort: ${p.containerPort} }]` : '';
  return `apiVersion: v1
kind: Pod
metadata: { name: ${p.name}, namespace: ${p.namespace}, labels: { app: ${p.app ?? p.name} } }
spec: { nodeName: ${p.node}, serviceAccountName: ${p.serviceAccount}, containers: [{ name: c, image: x${ports} }] }
status: { phase: Running, podIP: ${p.ip} }
`;
}

let version = 0;

/**
 * A LocalView holding what the control plane would distribute for `yaml`; `opts.compile` are the
 * model's options, `opts.mesh` adds the MESH_CONFIG the control plane would push (default: none,
 * as from a control plane that predates it).
 */
export function viewFromYaml(yaml: string, opts: { compile?: CompileOptions; mesh?: MeshConfig } = {}): LocalView {
  const y = parseYamlText(yaml, 'test.yaml');
  const resources: Resource[] = [];
  const errors: string[] = [];
  for (const o of y.objects) {
    const r = parseObject(o.value, { origin: o.origin });
    for (const d of r.diagnostics) if (d.severity === 'error') errors.push(d.message);
    if (r.resource !== undefined) resources.push(r.resource);
  }
  const { mesh, diagnostics } = new ModelCompiler(opts.compile).compile(resources);
  for (const d of diagnostics) if (d.severity === 'error') errors.push(d.message);
  if (errors.length > 0 || mesh === undefined) throw new Error(`fixture YAML is invalid: ${errors.join('; ')}`);
  const projected = new Projector().project(mesh, resources);
  if (opts.mesh !== undefined) projected.push(meshConfigResource(opts.mesh));
  const view = new LocalView();
  const push = {
    epoch: 'test', version: ++version, full: true, baseVersion: 0, changedAtMs: Date.now(), replaceKinds: [], removals: [],
    upserts: projected.map((m) => ({ kind: m.kind, name: m.name, json: m.json })),
  } as unknown as DiscoveryResponse__Output;
  view.apply(push);
  return view;
}

export function stateFromYaml(yaml: string, node: string, opts: { compile?: CompileOptions; mesh?: MeshConfig } = {}): MeshState {
  return new MeshState(viewFromYaml(yaml, opts), { node });
}

export interface TestNode {
  ctx: ProxyContext;
  registry: Registry;
  tracker: ConnectionTracker;
  lines: () => Record<string, unknown>[];
  setState(s: MeshState): void;
  close(): Promise<void>;
}

/** Waits until no connection is open on `nodes`: their access lines and close metrics are then written. */
export function waitIdle(...nodes: TestNode[]): Promise<void> {
  return eventually('every connection on the agents to close', () => nodes.every((n) => n.tracker.size === 0), {
    timeoutMs: 3_000,
    detail: () => `${nodes.map((n) => n.tracker.size).join(', ')} open`,
  });
}

/**
 * One agent's shared proxy context (without capture): its own metrics, tracker, pool. `pool`:
 * the pool's key-exchange groups, and whether its metrics go to the node's registry as the
 * agent's do (default: ambit's groups, no pool metrics).
 */
export function testNode(identities: IdentityManager, hbonePort: number, state: MeshState, pool: { tlsGroups?: readonly string[]; metrics?: boolean } = {}): TestNode {
  const registry = new Registry();
  const metrics = createAgentMetrics(registry, { processMetrics: false });
  const { logger, lines } = logSink();
  let current = state;
  const tracker = new ConnectionTracker(metrics, new AccessLog(logger), (pod, mode) => current.telemetryFor(pod)[mode]);
  const hbonePool = new HbonePool({
    credentials: identities, logger,
    ...(pool.tlsGroups !== undefined ? { tlsGroups: pool.tlsGroups } : {}),
    ...(pool.metrics === true ? { registry } : {}),
  });
  const ctx: ProxyContext = {
    state: () => current, tracker, metrics, credentials: identities, pool: hbonePool,
    resolver: new Resolver({ hbonePort }), connectTimeoutMs: 2000, log: logger,
  };
  return { ctx, registry, tracker, lines, setState: (s) => { current = s; }, close: async () => { hbonePool.destroy(); } };
}

export async function makeIdentities(): Promise<{ identities: IdentityManager; close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-agent-test-'));
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  const identities = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  return { identities, close: async () => { identities.close(); await rm(dir, { recursive: true, force: true }); } };
}

/** A port free on every given loopback address (the same port, as an agent uses 15008 everywhere). */
export async function freePort(hosts: string[]): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const s = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      s.once('error', reject);
      s.listen(0, hosts[0], () => resolve((s.address() as AddressInfo).port));
    });
    s.close();
    const ok = await Promise.all(hosts.map((h) => new Promise<boolean>((resolve) => {
      const t = createServer();
      t.once('error', () => resolve(false));
      t.listen(port, h, () => t.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return port;
  }
  throw new Error('no common free port');
}

/** An echo app answering `<name>:<data>` per chunk. */
export async function echoApp(name: string, host: string, port: number): Promise<Server> {
  const s = createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('error', () => {});
    sock.on('data', (d) => sock.write(`${name}:${d.toString()}`));
    sock.on('end', () => sock.end());
  });
  await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(port, host, () => resolve()); });
  return s;
}

/** Connects, sends `data`, returns the first reply (or the error code when refused/reset). */
export async function roundTrip(host: string, port: number, data: string, timeoutMs = 5000, localAddress?: string): Promise<string> {
  return new Promise((resolve) => {
    const sock: Socket = connect({ host, port, ...(localAddress !== undefined ? { localAddress } : {}) });
    const timer = setTimeout(() => { sock.destroy(); resolve('TIMEOUT'); }, timeoutMs);
    sock.on('connect', () => sock.write(data));
    sock.once('data', (d) => { clearTimeout(timer); sock.end(); resolve(d.toString()); });
    sock.on('error', (err: Error & { code?: string }) => { clearTimeout(timer); resolve(err.code ?? 'ERROR'); });
    sock.on('close', () => { clearTimeout(timer); resolve('CLOSED'); });
  });
}

/** A lookup standing in for Capture.originalDestination: the test says where the next connection was going. */
export function destinationBox(): { lookup: () => Destination | null; set(d: Destination): void } {
  let next: Destination | null = null;
  return { lookup: () => next, set: (d) => { next = d; } };
}

export async function metricText(registry: Registry, name: string): Promise<string[]> {
  const text = await registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(name));
}
