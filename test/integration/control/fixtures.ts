/**
 * Shared pieces of the control-plane integration tests: an in-memory configuration source (the
 * real folder and Kubernetes sources have their own tests), a token file, a control plane on
 * port 0 with an in-memory CA, and small MeshResource builders.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { ControlPlane, type ControlPlaneOptions } from '../../../src/control/control-plane.js';
import { TokenFileAuthenticator } from '../../../src/control/auth.js';
import type { ConfigSource, SourceSink, SourceStatus, ConfigProblem } from '../../../src/control/source.js';
import type { MeshResource } from '../../../src/control/mesh-resource.js';

export class MemorySource implements ConfigSource {
  sink: SourceSink | undefined;
  constructor(private initial: MeshResource[] | undefined) {}
  async start(sink: SourceSink): Promise<void> {
    this.sink = sink;
    if (this.initial !== undefined) sink.replaceAll(this.initial, Date.now());
  }
  replace(rs: MeshResource[]): void { this.sink?.replaceAll(rs, Date.now()); }
  delta(up: MeshResource[], rm: string[] = []): void { this.sink?.applyDelta(up, rm, Date.now()); }
  reject(p: ConfigProblem[]): void { this.sink?.rejected(p); }
  status(): SourceStatus { return { kind: 'memory', location: 'memory', synced: this.sink !== undefined, problems: [] }; }
  async close(): Promise<void> {}
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `ambit-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const TOKEN = 'shared-bootstrap-token-0123456789';
export const NODE_A_TOKEN = 'node-a-only-token-abcdef';

export function writeTokenFile(dir: string): string {
  const f = join(dir, 'tokens');
  writeFileSync(f, `# test tokens\n${TOKEN}\n${NODE_A_TOKEN} agent node-a\n`);
  return f;
}

let sharedCa: Promise<CertificateAuthority> | undefined;
/** One in-memory CA per test process (RSA key generation is the slow part). */
export function testCa(): Promise<CertificateAuthority> {
  sharedCa ??= CertificateAuthority.open();
  return sharedCa;
}

export async function startControlPlane(source: ConfigSource, dir: string, extra: Partial<ControlPlaneOptions> = {}): Promise<ControlPlane> {
  const cp = new ControlPlane({
    source,
    authenticator: new TokenFileAuthenticator(writeTokenFile(dir)),
    signer: await testCa(),
    host: '127.0.0.1',
    tlsPort: 0, plaintextPort: 0, metricsPort: 0, readinessPort: 0,
    drainMs: 500,
    ...extra,
  });
  await cp.start();
  return cp;
}

export function workload(name: string, node: string, opts: { ns?: string; sa?: string; labels?: Record<string, string>; ip?: string } = {}): MeshResource {
  const ns = opts.ns ?? 'default';
  const w = { node, namespace: ns, serviceAccount: opts.sa ?? 'default', labels: opts.labels ?? { app: name } };
  return { kind: 'WORKLOAD', name: `${ns}/${name}`, json: JSON.stringify({ name, ...w, ip: opts.ip ?? '198.19.0.1' }), workload: w };
}

export function service(name: string, ns = 'default', vip = '198.18.128.1'): MeshResource {
  return { kind: 'SERVICE', name: `${ns}/${name}`, json: JSON.stringify({ name, namespace: ns, vip }) };
}

export function policy(name: string, ns: string, selector?: Record<string, string>): MeshResource {
  return {
    kind: 'AUTHORIZATION_POLICY', name: `${ns}/${name}`,
    json: JSON.stringify({ name, namespace: ns, selector, action: 'DENY' }),
    select: { agents: { namespace: ns, ...(selector ? { selector } : {}) } },
  };
}

export function binding(waypoint: string, services: string[], sa = 'waypoint'): MeshResource {
  return { kind: 'WAYPOINT_BINDING', name: waypoint, json: JSON.stringify({ waypoint, services }), binding: { waypoint, serviceAccount: sa, services } };
}

export function route(name: string, ns: string, services: string[]): MeshResource {
  return { kind: 'ROUTE', name: `${ns}/${name}`, json: JSON.stringify({ name, services }), select: { waypointServices: services } };
}

/** Resolves with the first event value for which `pred` holds, or rejects after `ms`. */
export function waitFor<T>(subscribe: (cb: (v: T) => void) => () => void, pred: (v: T) => boolean, ms = 10_000, what = 'event'): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out after ${ms} ms waiting for ${what}`)); }, ms);
    const off = subscribe((v) => { if (pred(v)) { clearTimeout(timer); off(); resolve(v); } });
  });
}
