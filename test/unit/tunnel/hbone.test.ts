import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { HboneServer, type ConnectContext } from '../../../src/tunnel/server.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import { workloadSecureContext, spiffeServerIdentityCheck } from '../../../src/tunnel/tls-config.js';
import { makeFixture, tcpTarget, echo, summarize, CLIENT_ID, SERVER_ID, type Fixture, type Target } from './fixtures.js';
import { logSink } from '../../helpers/log-sink.js';

let fx: Fixture;
let echoTarget: Target;
let summaryTarget: Target;
let server: HboneServer;
let port: number;
const seen: ConnectContext[] = [];
const registry = new Registry();
const log = logSink();

test.before(async () => {
  fx = await makeFixture();
  echoTarget = await tcpTarget(echo);
  summaryTarget = await tcpTarget(summarize);
  server = await HboneServer.create({
    identity: SERVER_ID,
    credentials: fx.identities,
    registry,
    logger: log.logger,
    authorize: (ctx) => {
      seen.push(ctx);
      return ctx.authority.port === 9 ? { allow: false, reason: 'port 9 is not allowed by policy deny-discard' } : { allow: true };
    },
  });
  port = (await server.listen({ port: 0, host: '127.0.0.1' })).port;
});

test.after.always(async () => {
  await server?.close(100);
  await echoTarget?.close();
  await summaryTarget?.close();
  await fx?.close();
});

function newPool(extra: Partial<ConstructorParameters<typeof HbonePool>[0]> = {}): HbonePool {
  return new HbonePool({ credentials: fx.identities, ...extra });
}

function request(pool: HbonePool, authority: string, extra: { forwardedFor?: { host: string; port: number }; traceparent?: string } = {}): Promise<Duplex> {
  return pool.connect({ source: CLIENT_ID, address: { host: '127.0.0.1', port }, destinationIdentity: SERVER_ID, authority, ...extra });
}

function readAll(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

test('CONNECT carries bytes both ways and the server sees peer identity, forwarded and traceparent', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const s = await request(pool, `127.0.0.1:${echoTarget.port}`, { forwardedFor: { host: '198.19.1.5', port: 40000 }, traceparent: tp });
  const reply = readAll(s);
  s.end('hello through the mesh');
  t.is((await reply).toString(), 'hello through the mesh');
  const ctx = seen.find((c) => c.traceparent === tp);
  t.truthy(ctx);
  t.is(ctx?.peerIdentity, CLIENT_ID);
  t.is(ctx?.peerSerial, fx.identities.current(CLIENT_ID)?.serial);
  t.deepEqual(ctx?.authority, { host: '127.0.0.1', port: echoTarget.port, family: 4 });
  t.is(ctx?.headers['forwarded'], 'for="198.19.1.5:40000"');
  t.deepEqual(ctx?.forwardedFor, { host: '198.19.1.5', port: 40000, family: 4 });
  t.is(ctx?.remoteAddress, '127.0.0.1');
});

test('a traceparent is generated when none is given, and IPv6 authorities are bracketed', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const s = await request(pool, `127.0.0.1:${echoTarget.port}`, { forwardedFor: { host: '2001:db8::1', port: 443 } });
  s.end();
  await readAll(s);
  const ctx = seen.find((c) => c.forwardedFor?.host === '2001:db8::1');
  t.regex(ctx?.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
  t.is(ctx?.headers['forwarded'], 'for="[2001:db8::1]:443"');
});

test('half-close: the client ends its side and still reads the whole reply', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const s = await request(pool, `127.0.0.1:${summaryTarget.port}`);
  const reply = readAll(s);
  s.write(Buffer.alloc(100_000, 1));
  s.end(Buffer.alloc(23, 2));
  t.is((await reply).toString(), 'got 100023 bytes');
});

test('denied by the authorization hook: 401 with a named error, and the reason logged', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const err = await t.throwsAsync(request(pool, '127.0.0.1:9'), { code: 'AMBIT_ERR_TUNNEL_DENIED' });
  t.is((err as { status?: number }).status, 401);
  t.regex(err?.message ?? '', /denied the connection to 127.0.0.1:9 \(401\)/);
  t.true(log.lines().some((l) => l['status'] === 401 && l['reason'] === 'port 9 is not allowed by policy deny-discard' && l['peer'] === CLIENT_ID));
  // The session survives a refused stream.
  const s = await request(pool, `127.0.0.1:${echoTarget.port}`);
  s.end('still fine');
  t.is((await readAll(s)).toString(), 'still fine');
  t.is(pool.stats().length, 1);
});

test('upstream unavailable: 503', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const closed = await tcpTarget(() => {});
  const deadPort = closed.port;
  await closed.close();
  const err = await t.throwsAsync(request(pool, `127.0.0.1:${deadPort}`), { code: 'AMBIT_ERR_TUNNEL_UPSTREAM_UNAVAILABLE' });
  t.is((err as { status?: number }).status, 503);
  t.true(log.lines().some((l) => l['status'] === 503 && /ECONNREFUSED/.test(String(l['reason']))));
});

test('the client refuses malformed authorities before sending anything', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  for (const bad of ['example.com:80', '127.0.0.1', '::1:80', '127.0.0.1:0', '127.0.0.1:65536']) {
    await t.throwsAsync(request(pool, bad), { code: 'AMBIT_ERR_TUNNEL_INVALID_ARGUMENT' }, bad);
  }
  t.is(pool.stats().length, 0);
});

/** A raw, correctly authenticated HTTP/2 session, to send what the pool never would. */
async function rawSession(): Promise<ClientHttp2Session> {
  const cert = await fx.identities.credentials(CLIENT_ID);
  const session = h2Connect(`https://127.0.0.1:${port}`, {
    createConnection: () => tlsConnect({ host: '127.0.0.1', port, secureContext: workloadSecureContext(cert), ALPNProtocols: ['h2'], checkServerIdentity: spiffeServerIdentityCheck(SERVER_ID) }),
  });
  await new Promise((r) => session.once('remoteSettings', r));
  return session;
}

function status(session: ClientHttp2Session, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: false });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.resume();
  });
}

test('the server answers 405 to other methods and 400 to bad authorities', async (t) => {
  const session = await rawSession();
  t.teardown(() => session.destroy());
  t.is(await status(session, { ':method': 'GET', ':path': '/', ':authority': `127.0.0.1:${echoTarget.port}` }), 405);
  t.is(await status(session, { ':method': 'POST', ':path': '/x', ':authority': 'a' }), 405);
  for (const authority of ['localhost:80', '127.0.0.1', '[::1]', '999.1.1.1:80', '127.0.0.1:99999', '127.0.0.1:08']) {
    t.is(await status(session, { ':method': 'CONNECT', ':authority': authority }), 400, authority);
  }
  t.true(log.lines().some((l) => l['status'] === 400 && /host names are not accepted/.test(String(l['reason']))));
  t.regex(await registry.metrics(), /ambit_tunnel_server_streams_total\{code="400"\} [1-9]/);
});

test('1,000 concurrent CONNECT streams through one pool carry distinct payloads intact', async (t) => {
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const N = 1000;
  const results = await Promise.all(Array.from({ length: N }, async (_, i) => {
    const payload = Buffer.concat([Buffer.from(`stream ${i}:`), randomBytes(512 + (i % 7) * 1000)]);
    const s = await request(pool, `127.0.0.1:${echoTarget.port}`);
    const reply = readAll(s);
    s.end(payload);
    return (await reply).equals(payload);
  }));
  t.is(results.filter(Boolean).length, N);
  const sessions = pool.stats();
  t.is(sessions.length, 10, '100 streams per session');
  t.true(sessions.every((s) => s.state === 'ready'));
});

test('a 1 GiB transfer is byte-identical end to end (both directions)', async (t) => {
  t.timeout(90_000);
  const pool = newPool();
  t.teardown(() => pool.destroy());
  const s = await request(pool, `127.0.0.1:${echoTarget.port}`);
  const TOTAL = 1024 * 1024 * 1024;
  const block = randomBytes(1024 * 1024);
  const sentHash = createHash('sha256');
  const gotHash = createHash('sha256');
  let got = 0;
  const received = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      got += d.length;
      gotHash.update(d);
    });
    s.on('end', resolve);
    s.on('error', reject);
  });
  let sent = 0;
  let i = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < TOTAL) {
        // Vary every block so reordering or duplication could not go unnoticed.
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i++, 0);
        sent += chunk.length;
        sentHash.update(chunk);
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
      resolve();
    };
    pump();
  });
  await received;
  t.is(got, TOTAL);
  t.is(gotHash.digest('hex'), sentHash.digest('hex'));
});
