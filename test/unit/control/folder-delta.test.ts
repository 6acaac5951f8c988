/**
 * The folder source's fast path (only changed documents parsed, only changed resources
 * compiled, only changed table entries projected) must leave the resource table exactly as a
 * fresh full load of the same folder would: checked after every step of a long sequence of
 * edits of every kind (pods edited, added, removed and moved between files; a waypoint and
 * routes coming and going; a file deleted; an object defined twice, then fixed; a broken edit,
 * then fixed), and that each one-pod edit reaches the table as a small delta.
 */
import test from 'ava';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { ResourceTable, type ChangeSet } from '../../../src/control/resource-table.js';
import { FolderSource } from '../../../src/control/sources/folder-source.js';
import type { SourceSink } from '../../../src/control/source.js';
import { namespaceYaml, nodeYaml, podYaml, serviceAccountYaml, serviceYaml, denyPolicyYaml } from '../../integration/control/mesh-yaml.js';

interface Loaded { source: FolderSource; table: ResourceTable; sets: ChangeSet[]; rejected: number }

function sinkFor(l: Loaded): SourceSink {
  return {
    replaceAll: (r, at) => { const cs = l.table.replaceAll(r, at); if (cs) l.sets.push(cs); },
    applyDelta: (u, r, at) => { const cs = l.table.apply(u, r, at); if (cs) l.sets.push(cs); },
    rejected: () => { l.rejected++; },
  };
}

async function load(dir: string): Promise<Loaded> {
  const source = new FolderSource({ dir, compiler: new ModelCompiler(), rescanMs: 0, debounceMs: 600_000 });
  const l: Loaded = { source, table: new ResourceTable(), sets: [], rejected: 0 };
  await source.start(sinkFor(l));
  return l;
}

const contents = (t: ResourceTable): Record<string, string> => Object.fromEntries([...t.values()].map((e) => [e.key, `${e.resource.json} ${e.selectKey}`]).sort());

function write(file: string, text: string): void {
  writeFileSync(`${file}.tmp~`, text);
  renameSync(`${file}.tmp~`, file);
}

const gateway = (name: string, ns: string): string => `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  gatewayClassName: ambit-waypoint\n  listeners:\n    - {name: mesh, port: 15008, protocol: HBONE}\n`;
const waypointPod = (ns: string): string => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: wp-0\n  namespace: ${ns}\n  labels: {gateway.networking.k8s.io/gateway-name: wp}\nspec:\n  nodeName: node-a\n  serviceAccountName: wp\n  containers: [{name: proxy}]\nstatus: {phase: Running, podIP: 198.19.9.9}\n`;
const route = (ns: string, svc: string): string => `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ${svc}\n  namespace: ${ns}\nspec:\n  hosts: [${svc}]\n  http: [{route: [{destination: {host: ${svc}}}], timeout: 2s}]\n`;

test('after every kind of edit, the incrementally updated table equals a fresh full load', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-folder-delta-'));
  const opened: FolderSource[] = [];
  t.teardown(async () => { for (const s of opened) await s.close(); rmSync(dir, { recursive: true, force: true }); });
  mkdirSync(join(dir, 'pods'));
  const pods = (f: number, n: number, version = 'v1', app = (i: number) => `app-${i % 3}`): string =>
    Array.from({ length: n }, (_, i) => podYaml({ name: `p-${f}-${i}`, ns: 'shop', node: i % 2 === 0 ? 'node-a' : 'node-b', ip: `198.19.${f}.${i + 1}`, app: app(i), sa: 'web', version: i === 0 ? version : 'v1' })).join('---\n');
  write(join(dir, 'base.yaml'), [namespaceYaml('shop'), nodeYaml('node-a', '198.18.0.1'), nodeYaml('node-b', '198.18.0.2'), serviceAccountYaml('web', 'shop'), serviceAccountYaml('wp', 'shop')].join('---\n'));
  write(join(dir, 'services.yaml'), [0, 1, 2].map((a) => serviceYaml({ name: `app-${a}`, ns: 'shop', vip: `198.18.128.${a + 1}`, app: `app-${a}` })).join('---\n'));
  write(join(dir, 'pods', 'a.yaml'), pods(1, 6));
  write(join(dir, 'pods', 'b.yaml'), pods(2, 6));
  const live = await load(dir);
  opened.push(live.source);
  const policy = (name: string): string => denyPolicyYaml(name, 'shop', 'app-1');

  const steps: [string, () => void, boolean?][] = [
    ['one pod relabelled', () => write(join(dir, 'pods', 'a.yaml'), pods(1, 6, 'v2'))],
    ['a pod moves to another Service', () => write(join(dir, 'pods', 'a.yaml'), pods(1, 6, 'v2', (i) => (i === 3 ? 'app-2' : `app-${i % 3}`)))],
    ['a pod added and one removed', () => write(join(dir, 'pods', 'b.yaml'), pods(2, 5) + '---\n' + podYaml({ name: 'extra', ns: 'shop', node: 'node-a', ip: '198.19.2.99', app: 'app-0', sa: 'web' }))],
    ['a pod moves to another file', () => {
      write(join(dir, 'pods', 'b.yaml'), pods(2, 5));
      write(join(dir, 'pods', 'c.yaml'), podYaml({ name: 'extra', ns: 'shop', node: 'node-b', ip: '198.19.2.99', app: 'app-0', sa: 'web' }));
    }],
    ['a policy file appears', () => write(join(dir, 'policy.yaml'), policy('deny-1'))],
    ['the policy is renamed', () => write(join(dir, 'policy.yaml'), policy('deny-2'))],
    ['a waypoint with its pod, bound by a Service label', () => {
      write(join(dir, 'waypoint.yaml'), [gateway('wp', 'shop'), waypointPod('shop')].join('---\n'));
      write(join(dir, 'services.yaml'), [0, 1, 2].map((a) => serviceYaml({ name: `app-${a}`, ns: 'shop', vip: `198.18.128.${a + 1}`, app: `app-${a}` }).replace('metadata:\n', a === 1 ? 'metadata:\n  labels: {ambit.dev/use-waypoint: wp}\n' : 'metadata:\n')).join('---\n'));
    }],
    ['routes for the bound Service', () => write(join(dir, 'routes.yaml'), route('shop', 'app-1'))],
    ['the routes go away', () => unlinkSync(join(dir, 'routes.yaml'))],
    ['the waypoint pod goes away', () => write(join(dir, 'waypoint.yaml'), gateway('wp', 'shop'))],
    ['the waypoint goes away', () => unlinkSync(join(dir, 'waypoint.yaml')), true],
    ['the binding goes away too', () => write(join(dir, 'services.yaml'), [0, 1, 2].map((a) => serviceYaml({ name: `app-${a}`, ns: 'shop', vip: `198.18.128.${a + 1}`, app: `app-${a}` })).join('---\n'))],
    ['a pod defined twice (rejected)', () => write(join(dir, 'pods', 'd.yaml'), podYaml({ name: 'extra', ns: 'shop', node: 'node-a', ip: '198.19.2.98', app: 'app-0', sa: 'web' })), true],
    ['another edit while the duplicate stands', () => write(join(dir, 'pods', 'a.yaml'), pods(1, 6, 'v3')), true],
    ['the duplicate resolved by deleting the first definition', () => unlinkSync(join(dir, 'pods', 'c.yaml'))],
    ['a broken edit (rejected)', () => write(join(dir, 'pods', 'b.yaml'), pods(2, 5).replace('nodeName: node-a', 'nodeName: [')), true],
    ['fixed, with a change', () => write(join(dir, 'pods', 'b.yaml'), pods(2, 5, 'v4'))],
    ['a file of pods deleted', () => unlinkSync(join(dir, 'pods', 'b.yaml'))],
    ['a Service deleted, the policy file deleted', () => {
      write(join(dir, 'services.yaml'), [0, 1].map((a) => serviceYaml({ name: `app-${a}`, ns: 'shop', vip: `198.18.128.${a + 1}`, app: `app-${a}` })).join('---\n'));
      unlinkSync(join(dir, 'policy.yaml'));
    }],
    ['the namespace leaves the mesh', () => write(join(dir, 'base.yaml'), [namespaceYaml('shop', false), nodeYaml('node-a', '198.18.0.1'), nodeYaml('node-b', '198.18.0.2'), serviceAccountYaml('web', 'shop'), serviceAccountYaml('wp', 'shop')].join('---\n'))],
    ['a document inserted at the top shifts every position', () => write(join(dir, 'pods', 'a.yaml'), `# moved\n${pods(1, 6, 'v3')}`)],
  ];
  for (const [what, edit, rejected] of steps) {
    const before = live.rejected;
    edit();
    await live.source.reload();
    t.is(live.rejected > before, rejected === true, `${what}: rejected as expected`);
    const fresh = await load(dir);
    opened.push(fresh.source);
    if (rejected !== true) t.is(fresh.rejected, 0, `${what}: the folder is valid`);
    else continue; // the live table keeps the last good configuration; a fresh load would have none
    t.deepEqual(contents(live.table), contents(fresh.table), `${what}: table equals a fresh full load`);
    await fresh.source.close();
  }
});

test('a one-pod edit in a file of many pods reaches the table as that pod and its Service', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-folder-delta-'));
  let source: FolderSource | undefined;
  t.teardown(async () => { await source?.close(); rmSync(dir, { recursive: true, force: true }); });
  write(join(dir, 'base.yaml'), [namespaceYaml('shop'), nodeYaml('node-a', '198.18.0.1'), serviceAccountYaml('web', 'shop'), serviceYaml({ name: 'web', ns: 'shop', vip: '198.18.128.1', app: 'web' })].join('---\n'));
  const pods = (v: string) => Array.from({ length: 50 }, (_, i) => podYaml({ name: `p-${i}`, ns: 'shop', node: 'node-a', ip: `198.19.1.${i + 1}`, app: 'web', sa: 'web', version: i === 7 ? v : 'v1' })).join('---\n');
  write(join(dir, 'pods.yaml'), pods('v1'));
  const l = await load(dir);
  source = l.source;
  write(join(dir, 'pods.yaml'), pods('v2'));
  await l.source.reload();
  const last = l.sets.at(-1);
  t.deepEqual(last?.changes.map((c) => c.key.replace('\u0000', ' ')).sort(), ['SERVICE shop/web', 'WORKLOAD shop/p-7']);
});
