/**
 * The waypoint's HBONE ends offer the mesh's key-exchange groups and count what they negotiate in
 * `ambit_tls_handshakes_total{group,role}`: a client offering ambit's groups reaches it with
 * X25519MLKEM768 (role server), it tunnels on to a classical-only endpoint with X25519 (role
 * client), and `tlsGroups` overrides what it offers.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager } from '../../../src/identity/manager.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import { HboneServer } from '../../../src/tunnel/server.js';
import { WaypointConfig } from '../../../src/waypoint/config.js';
import { Waypoint } from '../../../src/waypoint/waypoint.js';
import { backend, echo } from '../../integration/waypoint/harness.js';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const WAYPOINT = 'spiffe://cluster.local/ns/shop/sa/waypoint';
const REVIEWS = 'spiffe://cluster.local/ns/shop/sa/reviews';
const VIP = '198.18.128.20';

function get(stream: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ createConnection: () => stream as never, path: '/', headers: { host: 'reviews.shop.svc.cluster.local' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function handshakes(registry: Registry): Promise<Record<string, number>> {
  const m = await registry.getSingleMetric('ambit_tls_handshakes_total')?.get();
  return Object.fromEntries((m?.values ?? []).map((v) => [`${String(v.labels['role'])}/${String(v.labels['group'])}`, v.value]));
}

test('the waypoint counts X25519MLKEM768 from an ambit client, X25519 to a classical endpoint, and honours tlsGroups', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-waypoint-groups-'));
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  const ids = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  await Promise.all([CLIENT, WAYPOINT, REVIEWS].map((i) => ids.credentials(i)));
  const b = await backend(echo('reviews'));
  const endpoint = await HboneServer.create({ identity: REVIEWS, credentials: ids, authorize: () => ({ allow: true }), tlsGroups: ['X25519'] });
  const ep = await endpoint.listen({ port: 0, host: '127.0.0.1' });
  const config = new WaypointConfig({
    bound: [{
      service: {
        key: 'shop/reviews', name: 'reviews', namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local', vips: [VIP], labels: {},
        ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP', appProtocol: undefined }],
        endpoints: [{ workload: 'shop/reviews-1', ip: '127.0.0.1', node: 'n1', ready: true, enrolled: true, ports: { 9080: b.port }, labels: {} }],
      },
      routes: [], destinationPolicy: undefined, authorization: [], requestAuthentication: [], rateLimits: [],
    }],
    workloads: [{ key: 'shop/reviews-1', name: 'reviews-1', namespace: 'shop', identity: REVIEWS, labels: {}, enrolled: true }],
  });
  const registry = new Registry();
  const waypoint = await Waypoint.start({ name: 'shop/waypoint', identity: WAYPOINT, credentials: ids, config, registry, listen: { port: 0, host: '127.0.0.1' }, endpointHbonePort: ep.port, drainMs: 200 });
  const classicalRegistry = new Registry();
  const classical = await Waypoint.start({ name: 'shop/waypoint', identity: WAYPOINT, credentials: ids, config, registry: classicalRegistry, tlsGroups: ['X25519'], listen: { port: 0, host: '127.0.0.1' }, endpointHbonePort: ep.port, drainMs: 200 });
  const pool = new HbonePool({ credentials: ids });
  t.teardown(async () => {
    await pool.close();
    await waypoint.close();
    await classical.close();
    await endpoint.close(200);
    await b.close();
    ids.close();
    await rm(dir, { recursive: true, force: true });
  });
  const open = (port: number) => pool.connect({ source: CLIENT, address: { host: '127.0.0.1', port }, destinationIdentity: WAYPOINT, authority: `${VIP}:9080` });

  t.is(await get(await open(waypoint.address().port)), 200);
  t.deepEqual(await handshakes(registry), { 'server/X25519MLKEM768': 1, 'client/X25519': 1 });

  t.is(await get(await open(classical.address().port)), 200);
  t.deepEqual(await handshakes(classicalRegistry), { 'server/X25519': 1, 'client/X25519': 1 });
});
