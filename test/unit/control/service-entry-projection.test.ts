/**
 * ServiceEntry hosts and the mesh settings on their way to the agents: each host projects to one
 * SERVICE resource (what agents resolve with; its routes go to waypoints only, as for any
 * Service), an edit that drops a host removes that SERVICE and keeps the untouched host's
 * resource object, and MESH_CONFIG is a global kind, in every agent's and waypoint's view.
 */
import test from 'ava';
import { ModelCompiler } from '../../../src/control/model-compiler.js';
import { Projector } from '../../../src/control/projection.js';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { isGlobal, scopedView, viewContext } from '../../../src/control/views.js';
import { resourceKey, type MeshResource } from '../../../src/control/mesh-resource.js';
import { meshConfigResource } from '../../../src/control/mesh-config.js';
import { parseYaml } from '../model/helpers.js';

const OPTS = { serviceEntryVipRange: '198.18.224.0/20' };

const entry = (hosts: string[]) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec:
  hosts: [${hosts.join(', ')}]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: shop}
spec:
  hosts: [a.example.com]
  http: [{timeout: 2s, route: [{destination: {host: a.example.com}}]}]
---
`;

test('each ServiceEntry host is one SERVICE resource for agents; its routes are a waypoint-scoped ROUTE', (t) => {
  const parsed = parseYaml(entry(['a.example.com', 'b.example.com']));
  const compiled = new ModelCompiler(OPTS).compile(parsed.resources);
  const out = new Projector().project(compiled.mesh!, parsed.resources);
  const svc = out.find((m) => m.kind === 'SERVICE' && m.name === 'shop/a.example.com');
  const json = JSON.parse(svc?.json ?? '{}') as Record<string, unknown>;
  t.is(json['hostname'], 'a.example.com');
  t.deepEqual(json['serviceEntry'], { location: 'MESH_EXTERNAL', resolution: 'DNS', addressRanges: [], autoAllocated: true });
  t.regex(String(json['vip']), /^198\.18\.2(2[4-9]|3\d)\.\d+$/);
  t.false('routes' in json, 'agents do not receive routes');
  t.truthy(out.find((m) => m.kind === 'ROUTE' && m.name === 'shop/a.example.com')?.select?.waypointServices);
  t.truthy(out.find((m) => m.kind === 'SERVICE' && m.name === 'shop/b.example.com'));
});

test('an edit dropping a host removes its SERVICE; the other host keeps its resource object', (t) => {
  const compiler = new ModelCompiler(OPTS);
  const projector = new Projector();
  const first = parseYaml(entry(['a.example.com', 'b.example.com']));
  const r1 = compiler.compile(first.resources);
  const before = projector.project(r1.mesh!, first.resources).find((m) => m.kind === 'SERVICE' && m.name === 'shop/a.example.com');
  const second = parseYaml(entry(['a.example.com']));
  const r2 = compiler.compile(second.resources);
  const delta = projector.projectChanges(r2.mesh!, r2.changes!);
  t.true(delta.removals.includes(resourceKey('SERVICE', 'shop/b.example.com')));
  t.false(delta.upserts.some((m) => m.kind === 'SERVICE' && m.name === 'shop/a.example.com'), 'unchanged host: nothing to send');
  const after = projector.project(r2.mesh!, second.resources).find((m) => m.kind === 'SERVICE' && m.name === 'shop/a.example.com');
  t.is(after, before, 'same object: its projection is not serialized again');
});

test('MESH_CONFIG is global: every agent and waypoint view holds it', (t) => {
  const table = new ResourceTable();
  const parsed = parseYaml(entry(['a.example.com']));
  const projected: MeshResource[] = new Projector().project(new ModelCompiler(OPTS).compile(parsed.resources).mesh!, parsed.resources);
  table.replaceAll([...projected, meshConfigResource({ outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } })]);
  const globals = [...table.values()].filter(isGlobal);
  const mesh = globals.find((e) => e.resource.kind === 'MESH_CONFIG');
  t.is(mesh?.resource.name, 'mesh');
  t.deepEqual(JSON.parse(mesh?.resource.json ?? '{}'), { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } });
  for (const sub of [{ kind: 'agent', name: 'node-1' }, { kind: 'waypoint', name: 'shop/wp' }] as const) {
    t.false([...scopedView(table, viewContext(table, sub)).values()].some((e) => e.resource.kind === 'MESH_CONFIG'), 'not a scoped kind');
  }
});
