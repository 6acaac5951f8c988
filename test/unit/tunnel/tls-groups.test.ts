import test from 'ava';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { HboneServer, type ConnectContext } from '../../../src/tunnel/server.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import { workloadSecureContext, spiffeServerIdentityCheck } from '../../../src/tunnel/tls-config.js';
import { DEFAULT_TLS_GROUPS, ecdhCurve, groupName, negotiatedGroup, parseTlsGroups, sessionKexGroup, TlsGroupsError } from '../../../src/tunnel/tls-groups.js';
import { wireTap, type WireTap } from '../../helpers/tls-wire.js';
import { makeFixture, tcpTarget, echo, CLIENT_ID, SERVER_ID, type Fixture, type Target } from './fixtures.js';

const X25519MLKEM768 = 0x11ec;
const X25519 = 0x001d;

let fx: Fixture;
let echoTarget: Target;

test.before(async () => {
  fx = await makeFixture();
  echoTarget = await tcpTarget(echo);
});

test.after.always(async () => {
  await echoTarget?.close();
  await fx?.close();
});

interface End {
  server: HboneServer;
  registry: Registry;
  seen: ConnectContext[];
  tap: WireTap;
  close(): Promise<void>;
}

/** An HBONE server offering `tlsGroups` (default: ambit's), reached through a wire tap. */
async function serverEnd(tlsGroups?: string[]): Promise<End> {
  const registry = new Registry();
  const seen: ConnectContext[] = [];
  const server = await HboneServer.create({
    identity: SERVER_ID, credentials: fx.identities, registry,
    authorize: (c) => { seen.push(c); return { allow: true }; },
    ...(tlsGroups !== undefined ? { tlsGroups } : {}),
  });
  const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
  const tap = await wireTap({ host: '127.0.0.1', port });
  return { server, registry, seen, tap, close: async () => { await server.close(100); await tap.close(); } };
}

/** Echoes `text` through a CONNECT; returns the pool's group of the stream's session. */
async function roundTrip(pool: HbonePool, end: End, text: string): Promise<string | undefined> {
  const s = await pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port: end.tap.port }, destinationIdentity: SERVER_ID, authority: `127.0.0.1:${echoTarget.port}` });
  const got = new Promise<string>((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts).toString()));
    s.on('error', reject);
  });
  const group = pool.tlsGroupOf(s);
  s.end(text);
  if ((await got) !== text) throw new Error('echo mismatch');
  return group;
}

async function handshakes(registry: Registry): Promise<Record<string, number>> {
  const m = await registry.getSingleMetric('ambit_tls_handshakes_total')?.get();
  return Object.fromEntries((m?.values ?? []).map((v) => [`${String(v.labels['role'])}/${String(v.labels['group'])}`, v.value]));
}

test('parseTlsGroups: the default, both separators, and each kind of bad list named in the error', (t) => {
  t.deepEqual(parseTlsGroups('X25519MLKEM768:X25519'), [...DEFAULT_TLS_GROUPS]);
  t.deepEqual(parseTlsGroups('X25519, secp256r1'), ['X25519', 'secp256r1']);
  const bad = t.throws(() => parseTlsGroups('X25519MLKEM768:X25519Kyber:X25519'), { instanceOf: TlsGroupsError });
  t.is(bad.code, 'AMBIT_ERR_TLS_GROUPS');
  t.is(bad.group, 'X25519Kyber');
  t.regex(bad.message, /TLS group 'X25519Kyber' is not supported/);
  t.regex(t.throws(() => parseTlsGroups('X25519::X25519MLKEM768')).message, /empty entry/);
  t.regex(t.throws(() => parseTlsGroups('')).message, /empty/);
  t.regex(t.throws(() => parseTlsGroups('X25519:x25519')).message, /listed twice/);
  t.regex(t.throws(() => parseTlsGroups('*X25519MLKEM768:X25519')).message, /not a group name/);
});

test('ecdhCurve: key shares for the hybrid group and the first classical one; a classical list is passed as is', (t) => {
  t.is(ecdhCurve(), '*X25519MLKEM768:*X25519');
  t.is(ecdhCurve(['X25519MLKEM768', 'X25519', 'secp256r1']), '*X25519MLKEM768:*X25519:secp256r1');
  t.is(ecdhCurve(['X25519', 'X25519MLKEM768']), 'X25519:X25519MLKEM768');
  t.is(ecdhCurve(['X25519']), 'X25519');
  t.is(ecdhCurve(['X25519MLKEM768']), 'X25519MLKEM768');
});

test('sessionKexGroup reads nothing from what is not an OpenSSL session; unnamed code points print as hex', (t) => {
  t.is(sessionKexGroup(Buffer.alloc(0)), undefined);
  t.is(sessionKexGroup(Buffer.from('3003020101', 'hex')), undefined);
  t.is(sessionKexGroup(Buffer.from('3008020101b303020111ff', 'hex').subarray(0, 7)), undefined, 'truncated');
  t.is(sessionKexGroup(Buffer.from('3009020101b305020211ec', 'hex')), undefined, 'length past the end');
  t.is(sessionKexGroup(Buffer.from('3009020101b304020211ec', 'hex')), X25519MLKEM768);
  t.is(groupName(0x1234), '0x1234');
});

test('two ambit ends negotiate X25519MLKEM768: on the wire, in the pool, in the CONNECT context and in the metrics', async (t) => {
  const end = await serverEnd();
  const clientRegistry = new Registry();
  const pool = new HbonePool({ credentials: fx.identities, registry: clientRegistry });
  t.teardown(async () => { pool.destroy(); await end.close(); });
  const group = await roundTrip(pool, end, 'post-quantum hello');

  const flight = end.tap.flight(0);
  t.deepEqual(flight.clientHellos.map((h) => h.supportedGroups), [[X25519MLKEM768, X25519]], 'the client offered the hybrid group first');
  t.deepEqual(flight.serverHellos, [{ retry: false, group: X25519MLKEM768 }]);

  t.is(group, 'X25519MLKEM768');
  t.is(pool.stats()[0]?.tlsGroup, 'X25519MLKEM768');
  t.is(end.seen[0]?.tlsGroup, 'X25519MLKEM768');
  t.deepEqual(await handshakes(clientRegistry), { 'client/X25519MLKEM768': 1 });
  t.deepEqual(await handshakes(end.registry), { 'server/X25519MLKEM768': 1 });
});

test('a classical-only client still connects to an ambit server, with X25519 and no retry', async (t) => {
  const end = await serverEnd();
  const clientRegistry = new Registry();
  const pool = new HbonePool({ credentials: fx.identities, registry: clientRegistry, tlsGroups: ['X25519'] });
  t.teardown(async () => { pool.destroy(); await end.close(); });
  const group = await roundTrip(pool, end, 'classical client');
  t.deepEqual(end.tap.flight(0).serverHellos, [{ retry: false, group: X25519 }]);
  t.is(group, 'X25519');
  t.is(end.seen[0]?.tlsGroup, 'X25519');
  t.deepEqual(await handshakes(end.registry), { 'server/X25519': 1 });
  t.deepEqual(await handshakes(clientRegistry), { 'client/X25519': 1 });
});

test('an ambit client still connects to a classical-only server: it sent an X25519 share too, so no HelloRetryRequest', async (t) => {
  const end = await serverEnd(['X25519']);
  const pool = new HbonePool({ credentials: fx.identities });
  t.teardown(async () => { pool.destroy(); await end.close(); });
  const group = await roundTrip(pool, end, 'classical server');
  const flight = end.tap.flight(0);
  t.deepEqual(flight.serverHellos, [{ retry: false, group: X25519 }]);
  t.deepEqual(flight.clientHellos.map((h) => h.keyShareGroups), [[X25519MLKEM768, X25519]]);
  t.is(group, 'X25519');
  t.is(end.seen[0]?.tlsGroup, 'X25519');
});

test('the group read from the session agrees with Node\'s client-side getEphemeralKeyInfo', async (t) => {
  const end = await serverEnd();
  t.teardown(() => end.close());
  for (const [groups, want] of [[DEFAULT_TLS_GROUPS, 'X25519MLKEM768'], [['X25519'], 'X25519']] as const) {
    const cert = await fx.identities.credentials(CLIENT_ID);
    const sock = tlsConnect({
      host: '127.0.0.1', port: end.tap.port, secureContext: workloadSecureContext(cert, groups), ALPNProtocols: ['h2'], checkServerIdentity: spiffeServerIdentityCheck(SERVER_ID),
    });
    await new Promise<void>((resolve, reject) => { sock.once('secureConnect', () => resolve()); sock.once('error', reject); });
    const info = sock.getEphemeralKeyInfo() as { name?: string };
    t.is(info.name, want);
    t.is(negotiatedGroup(sock), want);
    sock.destroy();
  }
});

test.serial('a renewed server certificate keeps the configured groups (setSecureContext would reset them to OpenSSL\'s default)', async (t) => {
  // OpenSSL 3.5's default list would pick X25519MLKEM768 here; the configured X25519 must stay.
  const end = await serverEnd(['X25519']);
  const pool = new HbonePool({ credentials: fx.identities });
  t.teardown(async () => { pool.destroy(); await end.close(); });
  const before = end.server.certificateSerial();
  await fx.identities.renewNow(SERVER_ID);
  t.not(end.server.certificateSerial(), before);
  const group = await roundTrip(pool, end, 'after renewal');
  t.is(group, 'X25519');
  t.deepEqual(end.tap.flight(0).serverHellos, [{ retry: false, group: X25519 }]);
});
