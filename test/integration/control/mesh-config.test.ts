/**
 * Mesh-wide settings from the control plane to the agents: Istio MeshConfig YAML (bare, or the
 * istio ConfigMap's data.mesh) is read for outboundTrafficPolicy.mode, and the setting reaches a
 * real agent's view over Discovery as the MESH_CONFIG resource, surviving a complete reload of
 * the source; the agent's MeshState reads it, and a view without it (an older control plane)
 * means ALLOW_ANY. `ambit control` refuses a bad mode with exit 2.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { MeshState } from '../../../src/agent/mesh-state.js';
import { ControlConfigError } from '../../../src/control/errors.js';
import { parseMeshConfig } from '../../../src/control/mesh-config.js';
import type { ViewChange } from '../../../src/discovery/local-view.js';
import { MemorySource, TOKEN, service, startControlPlane, tempDir, waitFor, workload } from './fixtures.js';

test('parseMeshConfig: a bare MeshConfig, the istio ConfigMap, absent settings, and bad modes', (t) => {
  t.deepEqual(parseMeshConfig('outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\naccessLogFile: /dev/stdout\n', 'mesh.yaml'), { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } });
  const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    outboundTrafficPolicy:\n      mode: ALLOW_ANY\n';
  t.deepEqual(parseMeshConfig(cm, 'cm.yaml'), { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } });
  t.deepEqual(parseMeshConfig('', 'empty.yaml'), {});
  t.deepEqual(parseMeshConfig('defaultConfig: {}\n', 'other.yaml'), {});
  t.throws(() => parseMeshConfig('outboundTrafficPolicy: {mode: registry_only}\n', 'm.yaml'), { instanceOf: ControlConfigError, message: /m\.yaml: outboundTrafficPolicy\.mode: "registry_only" is not an outbound traffic policy mode \(ALLOW_ANY or REGISTRY_ONLY\)/ });
  t.throws(() => parseMeshConfig('kind: ConfigMap\ndata: {}\n', 'cm.yaml'), { instanceOf: ControlConfigError, message: /no data\.mesh/ });
  t.throws(() => parseMeshConfig('- a\n', 'list.yaml'), { instanceOf: ControlConfigError });
});

test('REGISTRY_ONLY reaches an agent as MESH_CONFIG, stays after a complete reload, and its MeshState enforces it', async (t) => {
  const tmp = tempDir('meshcfg');
  const src = new MemorySource([workload('web-1', 'node-a'), service('web')]);
  const cp = await startControlPlane(src, tmp.dir, { mesh: { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } } });
  const a = new DiscoveryClient({ address: `127.0.0.1:${cp.ports.tls}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-a', token: TOKEN, backoff: { initialMs: 50, maxMs: 300 } });
  t.teardown(async () => { await a.close(); await cp.stop(); tmp.cleanup(); });
  const updates = (cb: (u: ViewChange) => void) => { a.on('update', cb); return () => { a.off('update', cb); }; };
  const full = waitFor(updates, (u) => u.full, 10_000, 'full view');
  await a.start();
  await full;
  t.deepEqual(a.view.get('MESH_CONFIG', 'mesh'), { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } });
  t.is(new MeshState(a.view, { node: 'node-a' }).outboundTrafficPolicy, 'REGISTRY_ONLY');

  const next = waitFor(updates, (u) => u.upserted.some((x) => x.name === 'default/db'), 10_000, 'reload');
  src.replace([workload('web-1', 'node-a'), service('web'), service('db')]);
  await next;
  t.deepEqual(a.view.get('MESH_CONFIG', 'mesh'), { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, 'a complete reload keeps the mesh settings');

  // A view from a control plane that predates MESH_CONFIG: ALLOW_ANY, as before.
  t.is(new MeshState({ version: 1, all: (kind) => (kind === 'MESH_CONFIG' ? new Map() : a.view.all(kind)) }, { node: 'node-a' }).outboundTrafficPolicy, 'ALLOW_ANY');
});

test('ambit control refuses a bad --outbound-traffic-policy and a bad --mesh-config with exit 2', (t) => {
  const tmp = tempDir('meshcfg-cli');
  t.teardown(() => tmp.cleanup());
  const bad = join(tmp.dir, 'mesh.yaml');
  writeFileSync(bad, 'outboundTrafficPolicy: {mode: DENY_ALL}\n');
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', 'src/cli/main.ts', 'control', '--config', tmp.dir, '--token-file', join(tmp.dir, 'none'), ...args], { encoding: 'utf8', timeout: 60_000 });
  const r1 = run('--outbound-traffic-policy', 'registry-only');
  t.is(r1.status, 2, r1.stderr);
  t.regex(r1.stderr, /--outbound-traffic-policy: "registry-only" is not an outbound traffic policy mode \(ALLOW_ANY or REGISTRY_ONLY\)/);
  const r2 = run('--mesh-config', bad);
  t.is(r2.status, 2, r2.stderr);
  t.regex(r2.stderr, /mesh\.yaml: outboundTrafficPolicy\.mode: "DENY_ALL"/);
  const r3 = run('--service-entry-vip-range', 'fd00::/64');
  t.is(r3.status, 2, r3.stderr);
  t.regex(r3.stderr, /--service-entry-vip-range: .*not an IPv4 CIDR block/);
});
