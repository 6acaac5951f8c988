/**
 * Telemetry in the pushed views: the Projector turns each Telemetry into one TELEMETRY resource
 * (the validated spec as written) and the views send it to the subscribers it can apply to:
 * agents of the workloads it selects (every agent from the root namespace), waypoints of its
 * namespace (every waypoint from the root namespace), and the waypoint or bound Service its
 * targetRefs name.
 */
import test from 'ava';
import { parseYamlText } from '../../../src/model/load/yaml-text.js';
import { parseObject } from '../../../src/model/load/parse-object.js';
import type { Resource } from '../../../src/model/resource.js';
import { Projector } from '../../../src/control/projection.js';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { scopedView, viewContext } from '../../../src/control/views.js';
import type { MeshResource } from '../../../src/control/mesh-resource.js';

function telemetries(yaml: string): Resource[] {
  return parseYamlText(yaml, 't.yaml').objects.map((o) => {
    const r = parseObject(o.value, { origin: o.origin });
    if (r.resource === undefined) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
    return r.resource;
  });
}

const t = (name: string, ns: string, spec: string) => `---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${ns}, creationTimestamp: "2026-01-01T00:00:00Z" }
spec: ${spec}
`;

const wl = (name: string, node: string, ns: string, labels: Record<string, string>): MeshResource => ({
  kind: 'WORKLOAD', name: `${ns}/${name}`, json: '{}', workload: { node, namespace: ns, serviceAccount: 'sa', labels },
});
const binding = (wp: string, services: string[]): MeshResource => ({ kind: 'WAYPOINT_BINDING', name: wp, json: '{}', binding: { waypoint: wp, serviceAccount: 'wp', services } });

test('each Telemetry reaches the agents and waypoints it can apply to', (tt) => {
  const resources = telemetries(
    t('mesh', 'istio-system', '{ accessLogging: [{ disabled: true }] }') +
    t('shop', 'shop', '{ tracing: [{ randomSamplingPercentage: 5 }] }') +
    t('web', 'shop', '{ selector: { matchLabels: { app: web } }, accessLogging: [{ disabled: true }] }') +
    t('wp', 'shop', '{ targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: wp }], accessLogging: [{ disabled: true }] }') +
    t('db-svc', 'data', '{ targetRefs: [{ kind: Service, name: db }], accessLogging: [{ disabled: true }] }'),
  );
  const projected = new Projector().project({ workloads: [], services: [], waypoints: [] }, resources);
  tt.deepEqual(projected.map((m) => `${m.kind} ${m.name}`), ['TELEMETRY istio-system/mesh', 'TELEMETRY shop/shop', 'TELEMETRY shop/web', 'TELEMETRY shop/wp', 'TELEMETRY data/db-svc']);
  tt.like(JSON.parse(projected[2]?.json ?? '{}'), { namespace: 'shop', name: 'web', creationTimestamp: '2026-01-01T00:00:00Z', spec: { selector: { matchLabels: { app: 'web' } } } });
  const table = new ResourceTable();
  table.replaceAll([
    ...projected,
    wl('web', 'n1', 'shop', { app: 'web' }),
    wl('api', 'n2', 'shop', { app: 'api' }),
    wl('db', 'n3', 'data', { app: 'db' }),
    binding('shop/wp', ['shop/web']),
    binding('data/wp', ['data/db']),
    binding('other/wp', ['shop/api']),
  ]);
  const names = (kind: 'agent' | 'waypoint', name: string) => [...scopedView(table, viewContext(table, { kind, name })).values()].map((e) => e.resource.name).sort();
  tt.deepEqual(names('agent', 'n1'), ['istio-system/mesh', 'shop/shop', 'shop/web']);
  tt.deepEqual(names('agent', 'n2'), ['istio-system/mesh', 'shop/shop']);
  tt.deepEqual(names('agent', 'n3'), ['istio-system/mesh']);
  tt.deepEqual(names('waypoint', 'shop/wp'), ['istio-system/mesh', 'shop/shop', 'shop/wp']);
  tt.deepEqual(names('waypoint', 'data/wp'), ['data/db-svc', 'istio-system/mesh']);
  tt.deepEqual(names('waypoint', 'other/wp'), ['istio-system/mesh'], 'a waypoint in another namespace gets only the mesh-wide one');
});

test('an edited or deleted Telemetry is a one-resource delta', (tt) => {
  const [mesh] = telemetries(t('mesh', 'istio-system', '{ accessLogging: [{ disabled: true }] }'));
  const projector = new Projector();
  const empty = { workloads: [], services: [], waypoints: [], workloadByKey: () => undefined, serviceByKey: () => undefined };
  projector.project(empty, []);
  const up = projector.projectChanges(empty, { workloads: [], services: [], waypoints: [], upserted: [mesh as Resource], removed: [] });
  tt.deepEqual(up.upserts.map((m) => `${m.kind} ${m.name}`), ['TELEMETRY istio-system/mesh']);
  tt.deepEqual(up.removals, []);
  const down = projector.projectChanges(empty, { workloads: [], services: [], waypoints: [], upserted: [], removed: [(mesh as Resource).ref] });
  tt.deepEqual(down.upserts, []);
  tt.deepEqual(down.removals, ['TELEMETRY\u0000istio-system/mesh']);
});
