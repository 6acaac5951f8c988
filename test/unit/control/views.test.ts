import test from 'ava';
import { ResourceTable } from '../../../src/control/resource-table.js';
import { scopedView, viewContext, contextFingerprint } from '../../../src/control/views.js';
import type { MeshResource } from '../../../src/control/mesh-resource.js';

const wl = (name: string, node: string, ns: string, labels: Record<string, string>): MeshResource => ({
  kind: 'WORKLOAD', name: `${ns}/${name}`, json: '{}', workload: { node, namespace: ns, serviceAccount: 'sa', labels },
});
const pol = (name: string, select: MeshResource['select'], kind: MeshResource['kind'] = 'AUTHORIZATION_POLICY'): MeshResource => ({ kind, name, json: '{}', ...(select ? { select } : {}) });

function names(table: ResourceTable, kind: 'agent' | 'waypoint', name: string): string[] {
  return [...scopedView(table, viewContext(table, { kind, name })).values()].map((e) => e.resource.name).sort();
}

test('agents get mesh-wide, namespace-wide and selector policies that match a local workload', (t) => {
  const table = new ResourceTable();
  table.replaceAll([
    wl('web', 'n1', 'shop', { app: 'web', v: '1' }),
    wl('db', 'n2', 'data', { app: 'db' }),
    pol('mesh', { agents: { meshWide: true } }),
    pol('shop-all', { agents: { namespace: 'shop' } }),
    pol('shop-web', { agents: { namespace: 'shop', selector: { app: 'web' } } }),
    pol('shop-web-v2', { agents: { namespace: 'shop', selector: { app: 'web', v: '2' } } }),
    pol('data-db', { agents: { namespace: 'data', selector: { app: 'db' } } }),
    pol('route', { waypointServices: ['shop/web'] }, 'ROUTE'),
  ]);
  t.deepEqual(names(table, 'agent', 'n1'), ['mesh', 'shop-all', 'shop-web']);
  t.deepEqual(names(table, 'agent', 'n2'), ['data-db', 'mesh']);
  t.deepEqual(names(table, 'agent', 'empty-node'), ['mesh']);
});

test('waypoints get resources of their bound services, namespaces or themselves', (t) => {
  const table = new ResourceTable();
  table.replaceAll([
    { kind: 'WAYPOINT_BINDING', name: 'shop/wp', json: '{}', binding: { waypoint: 'shop/wp', serviceAccount: 'wp', services: ['shop/web'] } },
    pol('r-web', { waypointServices: ['shop/web'] }, 'ROUTE'),
    pol('r-db', { waypointServices: ['data/db'] }, 'ROUTE'),
    pol('ra', { waypointNamespaces: ['shop'] }, 'REQUEST_AUTHENTICATION'),
    pol('gw', { waypoints: ['shop/wp'] }),
    pol('l4', { agents: { namespace: 'shop' } }),
  ]);
  t.deepEqual(names(table, 'waypoint', 'shop/wp'), ['gw', 'r-web', 'ra']);
  t.deepEqual(names(table, 'waypoint', 'other/wp'), []);
  const ctx = viewContext(table, { kind: 'waypoint', name: 'shop/wp' });
  t.is(contextFingerprint(ctx), 'shop/web');
});
