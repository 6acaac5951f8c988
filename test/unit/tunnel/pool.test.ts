import test from 'ava';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { HboneServer, type ConnectContext } from '../../../src/tunnel/server.js';
import { HbonePool, type HbonePoolOptions } from '../../../src/tunnel/pool.js';
import { makeFixture, tcpTarget, echo, CLIENT_ID, SERVER_ID, type Fixture, type Target } from './fixtures.js';
import { eventually } from '../../helpers/eventually.js';

let fx: Fixture;
let target: Target;
let server: HboneServer;
let port: number;
/** Serial of the client certificate the server saw, per CONNECT (by traceparent). */
const serverSaw = new Map<string, string>();
const pools: HbonePool[] = [];

// Tests that send GOAWAY or renew certificates run serially (ava runs them first), so they
// never drain the sessions of the concurrent tests.
test.before(async () => {
  [fx, target] = await Promise.all([makeFixture(), tcpTarget(echo)]);
  server = await HboneServer.create({
    identity: SERVER_ID,
    credentials: fx.identities,
    authorize: (ctx: ConnectContext) => {
      if (ctx.traceparent !== undefined) serverSaw.set(ctx.traceparent, ctx.peerSerial);
      return { allow: true };
    },
  });
  port = (await server.listen({ port: 0, host: '127.0.0.1' })).port;
});

test.after.always(async () => {
  for (const p of pools) p.destroy();
  await server?.close(100);
  await target?.close();
  await fx?.close();
});

function newPool(extra: Partial<HbonePoolOptions> = {}): HbonePool {
  const p = new HbonePool({ credentials: fx.identities, ...extra });
  pools.push(p);
  return p;
}

let traceSeq = 0;
async function open(pool: HbonePool): Promise<{ s: Duplex; traceparent: string }> {
  const traceparent = `00-${(++traceSeq).toString(16).padStart(32, '0')}-${'1'.padStart(16, '0')}-00`;
  const s = await pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port }, destinationIdentity: SERVER_ID, authority: `127.0.0.1:${target.port}`, traceparent });
  return { s, traceparent };
}

/** Writes `msg` and waits for its echo (the stream stays open). */
function roundTrip(s: Duplex, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let acc = '';
    const onData = (d: Buffer) => {
      acc += d.toString();
      if (acc.length >= msg.length) {
        s.off('data', onData);
        resolve(acc);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(msg);
  });
}

async function closeStream(s: Duplex): Promise<void> {
  const closed = new Promise((r) => s.once('close', r));
  s.end();
  s.resume();
  await closed;
}

test('stream cap: the (cap+1)th concurrent stream opens a second session; freed slots are reused', async (t) => {
  const registry = new Registry();
  const pool = newPool({ maxStreamsPerSession: 3, registry });
  const streams = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(() => open(pool)));
  const stats = pool.stats();
  t.deepEqual(stats.map((s) => s.streams), [3, 3, 1]);
  t.true(stats.every((s) => s.state === 'ready' && s.address === `127.0.0.1:${port}` && s.source === CLIENT_ID && s.destinationIdentity === SERVER_ID));
  for (const { s } of streams) t.is(await roundTrip(s, 'x'), 'x');
  await closeStream(streams[0]!.s);
  await eventually('a stream slot to free', () => pool.stats()[0]?.streams === 2, { timeoutMs: 2000 });
  await open(pool);
  t.deepEqual(pool.stats().map((s) => s.streams), [3, 3, 1], 'the freed slot in the first session was reused');
  t.regex(await registry.metrics(), /ambit_tunnel_client_sessions 3/);
  t.regex(await registry.metrics(), /ambit_tunnel_client_streams_total\{result="ok"\} 8/);
});

test('idle release: a session without streams is closed after idleTimeoutMs, the next stream opens a new one', async (t) => {
  const pool = newPool({ idleTimeoutMs: 200 });
  const { s } = await open(pool);
  const first = pool.stats()[0]?.id;
  await closeStream(s);
  t.is(pool.stats()[0]?.streams, 0);
  await eventually('the idle session to be released', () => pool.stats().length === 0, { timeoutMs: 3000 });
  await open(pool);
  t.not(pool.stats()[0]?.id, first);
});

test('a busy session is not released as idle', async (t) => {
  const pool = newPool({ idleTimeoutMs: 100 });
  const { s } = await open(pool);
  await new Promise((r) => setTimeout(r, 400));
  t.is(pool.stats().length, 1);
  t.is(await roundTrip(s, 'alive'), 'alive');
});

test.serial('GOAWAY: open streams finish on the old session, new streams go to a new session', async (t) => {
  const pool = newPool();
  const { s: old } = await open(pool);
  const firstId = pool.stats()[0]?.id;
  server.drain();
  await eventually('GOAWAY to reach the client', () => pool.stats().find((x) => x.id === firstId)?.state === 'draining', { timeoutMs: 3000 });
  t.is(await roundTrip(old, 'old stream still works'), 'old stream still works');
  const { s: fresh } = await open(pool);
  const ids = pool.stats().map((x) => x.id);
  t.true(ids.includes(firstId ?? -1));
  const newer = pool.stats().find((x) => x.id !== firstId);
  t.truthy(newer);
  t.is(newer?.state, 'ready');
  t.is(newer?.streams, 1);
  t.is(await roundTrip(fresh, 'new'), 'new');
  await closeStream(old);
  await eventually('drained session to close after its last stream', () => !pool.stats().some((x) => x.id === firstId), { timeoutMs: 3000 });
});

test.serial('a failed session is never reused: after the server goes away the pool reconnects', async (t) => {
  const pool = newPool({ connectTimeoutMs: 2000 });
  const { s } = await open(pool);
  t.is(await roundTrip(s, 'a'), 'a');
  // A second server on another port stands in for "the peer restarted".
  const other = await HboneServer.create({ identity: SERVER_ID, credentials: fx.identities, authorize: () => ({ allow: true }) });
  const otherPort = (await other.listen({ port: 0, host: '127.0.0.1' })).port;
  const viaOther = () => pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port: otherPort }, destinationIdentity: SERVER_ID, authority: `127.0.0.1:${target.port}` });
  const s2 = await viaOther();
  t.is(await roundTrip(s2, 'b'), 'b');
  await other.close(50);
  await eventually('dead session to leave the pool', () => !pool.stats().some((x) => x.address === `127.0.0.1:${otherPort}`), { timeoutMs: 3000 });
  await t.throwsAsync(viaOther(), { code: 'AMBIT_ERR_TUNNEL_CONNECT_REFUSED', message: /refused: is the ambit agent running there and listening on HBONE port/ });
});

test.serial('renewal while streams are open: old streams keep working, new streams use the new certificate', async (t) => {
  const pool = newPool();
  const { s: before, traceparent: tpBefore } = await open(pool);
  const oldSerial = fx.identities.current(CLIENT_ID)?.serial ?? '';
  t.is(serverSaw.get(tpBefore), oldSerial);

  const renewed = await fx.identities.renewNow(CLIENT_ID);
  t.not(renewed.serial, oldSerial);
  const { s: after, traceparent: tpAfter } = await open(pool);
  t.is(serverSaw.get(tpAfter), renewed.serial, 'the server saw the new certificate on the new stream');
  t.is(await roundTrip(before, 'old stream survives renewal'), 'old stream survives renewal');
  t.is(await roundTrip(after, 'new stream'), 'new stream');
  const stats = pool.stats();
  t.is(stats.find((x) => x.serial === oldSerial)?.state, 'draining');
  t.is(stats.find((x) => x.serial === renewed.serial)?.state, 'ready');

  // Server-side renewal: new sessions present the new server certificate, old ones keep going.
  const oldServerSerial = server.certificateSerial();
  const renewedServer = await fx.identities.renewNow(SERVER_ID);
  t.is(server.certificateSerial(), renewedServer.serial);
  t.is(pool.stats().find((x) => x.serial === renewed.serial)?.peerSerial, oldServerSerial);
  server.drain(); // push clients to new sessions
  await eventually('GOAWAY to drain every session', () => pool.stats().every((x) => x.state === 'draining'), { timeoutMs: 3000 });
  await open(pool);
  t.is(pool.stats().find((x) => x.state === 'ready')?.peerSerial, renewedServer.serial);
  t.is(await roundTrip(after, 'still here'), 'still here');
  await closeStream(before);
  await closeStream(after);
});
