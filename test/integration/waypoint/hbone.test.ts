/**
 * The waypoint on the real data path: a client workload opens an HBONE CONNECT (mTLS, its own
 * SPIFFE identity) to the waypoint for the service VIP:port; the waypoint serves HTTP inside the
 * stream, applies L7 policy with the client's identity, and tunnels on to the endpoint's HBONE
 * server with the waypoint's identity; the endpoint's server splices to the backend.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { IdentityManager } from '../../../src/identity/manager.js';
import { compileAuthorizationPolicy } from '../../../src/model/authz/compile.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import { HboneServer } from '../../../src/tunnel/server.js';
import { WaypointConfig } from '../../../src/waypoint/config.js';
import { Waypoint } from '../../../src/waypoint/waypoint.js';
import { backend, echo } from './harness.js';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/frontend';
const INTRUDER = 'spiffe://cluster.local/ns/other/sa/intruder';
const WAYPOINT = 'spiffe://cluster.local/ns/shop/sa/waypoint';
const REVIEWS = 'spiffe://cluster.local/ns/shop/sa/reviews';
const VIP = '198.18.128.20';
const FRONTEND_IP = '198.19.1.5';

/** One HTTP/1.1 request through an HBONE stream. */
function viaStream(stream: Duplex, path: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ createConnection: () => stream as never, path, headers: { host: 'reviews.shop.svc.cluster.local' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A waypoint for reviews (ALLOW `allowed` sources, GET only) in front of an HBONE endpoint, and a client pool. */
async function setup(t: ExecutionContext, allowed: Record<string, string[]>) {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-waypoint-test-'));
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  const ids = new IdentityManager({ signer: ca, lifetimeSeconds: 3600 });
  await Promise.all([CLIENT, INTRUDER, WAYPOINT, REVIEWS].map((i) => ids.credentials(i)));
  const b = await backend(echo('reviews'));
  const peers: string[] = [];
  const forwarded: (string | undefined)[] = [];
  const endpointServer = await HboneServer.create({
    identity: REVIEWS,
    credentials: ids,
    authorize: (ctx) => { peers.push(ctx.peerIdentity); forwarded.push(ctx.forwardedFor?.host); return { allow: true }; },
  });
  const ep = await endpointServer.listen({ port: 0, host: '127.0.0.1' });
  const config = new WaypointConfig({
    bound: [{
      service: {
        key: 'shop/reviews', name: 'reviews', namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local', vips: [VIP], labels: {},
        ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP', appProtocol: undefined }],
        endpoints: [{ workload: 'shop/reviews-1', ip: '127.0.0.1', node: 'n1', ready: true, enrolled: true, ports: { 9080: b.port }, labels: {} }],
      },
      routes: [],
      destinationPolicy: undefined,
      authorization: [compileAuthorizationPolicy({ namespace: 'shop', name: 'only-frontend' }, { action: 'ALLOW', rules: [{ from: [{ source: allowed }], to: [{ operation: { methods: ['GET'] } }] }] })],
      requestAuthentication: [],
      rateLimits: [],
    }],
    workloads: [
      { key: 'shop/reviews-1', name: 'reviews-1', namespace: 'shop', identity: REVIEWS, labels: {}, enrolled: true },
      { key: 'shop/frontend-1', name: 'frontend-1', namespace: 'shop', identity: CLIENT, labels: {}, enrolled: true, ip: FRONTEND_IP },
    ],
  });
  const waypoint = await Waypoint.start({ name: 'shop/waypoint', identity: WAYPOINT, credentials: ids, config, listen: { port: 0, host: '127.0.0.1' }, endpointHbonePort: ep.port, drainMs: 200 });
  const wp = waypoint.address();
  const pool = new HbonePool({ credentials: ids });
  t.teardown(async () => {
    await pool.close();
    await waypoint.close();
    await endpointServer.close(200);
    await b.close();
    ids.close();
    await rm(dir, { recursive: true, force: true });
  });

  const open = (source: string, authority = `${VIP}:9080`, forwardedFor = FRONTEND_IP) => pool.connect({ source, address: { host: '127.0.0.1', port: wp.port }, destinationIdentity: WAYPOINT, authority, forwardedFor: { host: forwardedFor, port: 40000 } });
  return { open, peers, forwarded };
}

test('HBONE in, L7 policy with the peer identity, HBONE out with the waypoint identity', async (t) => {
  const { open, peers } = await setup(t, { principals: ['cluster.local/ns/shop/sa/frontend'] });
  const ok = await viaStream(await open(CLIENT), '/reviews/1');
  t.is(ok.status, 200);
  t.is((JSON.parse(ok.body) as { url: string }).url, '/reviews/1');
  t.deepEqual([...new Set(peers)], [WAYPOINT], 'the endpoint saw the waypoint identity');

  const denied = await viaStream(await open(INTRUDER), '/reviews/1');
  t.is(denied.status, 403);

  const err = await t.throwsAsync(open(CLIENT, '198.18.128.99:80'));
  t.is((err as { code?: string }).code, 'AMBIT_ERR_TUNNEL_DENIED', 'an authority not bound to the waypoint is refused at the tunnel');
});

test('a forwarded client address is believed only from the identity of the pod that has it', async (t) => {
  const { open, forwarded } = await setup(t, { ipBlocks: [FRONTEND_IP] });
  // frontend's own address, under frontend's identity: the ipBlocks ALLOW applies, and the
  // endpoint is told that address.
  t.is((await viaStream(await open(CLIENT), '/r')).status, 200);
  t.deepEqual(forwarded, [FRONTEND_IP]);
  // The intruder claims frontend's address: not believed, so the policy sees the tunnel peer.
  t.is((await viaStream(await open(INTRUDER), '/r')).status, 403);
  // frontend claiming an address that is not its own is not believed either.
  t.is((await viaStream(await open(CLIENT, `${VIP}:9080`, '198.19.1.6'), '/r')).status, 403);
  t.deepEqual(forwarded, [FRONTEND_IP], 'refused requests reached no endpoint');
});
