/**
 * Regression tests for the "upgrade" finding class: an HTTP/1.1 Upgrade must not become a way
 * to turn a client connection into a raw pipe to a backend, past the waypoint's L7 policy.
 *
 * Proves, through the real proxy on loopback with an AuthorizationPolicy denying `/admin*`:
 * - A connection is spliced only once the backend answered 101 with the protocol the client
 *   asked for; then bytes flow both ways. A backend answering 200 leaves the connection HTTP, so
 *   a later `/admin` request on it is still parsed and denied by the waypoint.
 * - `Connection` must name the `upgrade` token exactly (`x-notupgrade` is a plain request, whose
 *   Upgrade header does not reach the backend).
 * - h2c upgrades (Upgrade: h2c with HTTP2-Settings) are never performed.
 * - A 101 naming another protocol than the one requested is answered 502 and not spliced.
 */
import test from 'ava';
import type { Socket } from 'node:net';
import { makeConfig, rawBackend, startProxy, type RawBackend } from './harness.js';
import { describe, rawConnect } from './raw-client.js';

const H = 'host: reviews.shop.svc.cluster.local\r\n';
const WS = `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
const ADMIN = `GET /admin/secret HTTP/1.1\r\n${H}\r\n`;
const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
const SECRET = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret';

type Answer = (head: string, sock: Socket, rest: Buffer, b: RawBackend) => boolean | void;

async function setup(t: import('ava').ExecutionContext, answer: Answer) {
  const b = await rawBackend(answer);
  const h = await startProxy(makeConfig([{
    name: 'reviews',
    endpoints: [{ backend: b }],
    authz: [{ name: 'deny-admin', spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] } }],
  }]));
  const c = await rawConnect(h.port);
  t.teardown(async () => { c.destroy(); await h.close(); await b.close(); });
  return { b, h, c };
}

/** Upgrade-header lines of the request heads the backend saw. */
const upgradeLines = (b: RawBackend) => b.heads.flatMap((hd) => hd.split('\r\n').filter((l) => /^(upgrade|http2-settings)\s*:/i.test(l)));
const settle = () => new Promise((r) => setTimeout(r, 100));

test('upgrade: a backend answering 200 to an upgrade leaves the connection HTTP, so a later /admin request is still denied', async (t) => {
  const { b, c } = await setup(t, (head, sock) => void sock.write(head.includes('/admin') ? SECRET : OK));
  c.write(WS);
  const first = await c.responses(1);
  t.is(first.responses[0]?.status, 200, `the upgrade request was not answered as a plain request: ${describe(first)}`);
  c.write(ADMIN);
  const r = await c.responses(2);
  await settle();
  t.false(b.received().includes('/admin'), `the /admin request reached the backend through the connection (${JSON.stringify(b.heads)}); client saw: ${describe(r)}`);
  t.is(r.responses[1]?.status, 403, `expected the waypoint to deny the second request with 403, got: ${describe(r)}`);
});

test('upgrade: a backend answering 101 with the requested protocol is spliced both ways', async (t) => {
  const { c } = await setup(t, (head, sock) => {
    if (!/^upgrade: *websocket$/im.test(head)) return void sock.write(OK);
    sock.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
    sock.on('data', (d: Buffer) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
    return true;
  });
  c.write(WS);
  const head = await c.wait((x) => x.responses.length > 0);
  t.is(head.responses[0]?.status, 101, `the upgrade did not complete: ${describe(head)}`);
  c.write('ping');
  const r = await c.wait((x) => x.text.endsWith('echo:ping'));
  t.true(r.text.endsWith('echo:ping'), `bytes were not spliced both ways: ${describe(r)}`);
});

test('upgrade: Connection: x-notupgrade with Upgrade: websocket is a plain request and the connection stays HTTP', async (t) => {
  const { b, c } = await setup(t, (head, sock) => void sock.write(head.includes('/admin') ? SECRET : OK));
  c.write(`GET /ws HTTP/1.1\r\n${H}Connection: x-notupgrade\r\nUpgrade: websocket\r\n\r\n`);
  const first = await c.responses(1);
  t.is(first.responses[0]?.status, 200, `expected a plain 200, got: ${describe(first)}`);
  t.deepEqual(upgradeLines(b), [], `the backend received an upgrade request: ${JSON.stringify(b.heads)}`);
  c.write(ADMIN);
  const r = await c.responses(2);
  await settle();
  t.false(b.received().includes('/admin'), `the /admin request reached the backend (${JSON.stringify(b.heads)}); client saw: ${describe(r)}`);
  t.is(r.responses[1]?.status, 403, `expected the waypoint to parse and deny the second request, got: ${describe(r)}`);
});

test('upgrade: Upgrade: h2c with HTTP2-Settings is never upgraded', async (t) => {
  const { b, c } = await setup(t, (head, sock) => {
    if (!/^upgrade: *h2c$/im.test(head)) return void sock.write(OK);
    // An h2c-capable backend: it would switch, and then speak HTTP/2 on the connection.
    sock.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n');
    return true;
  });
  c.write(`GET /h2 HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`);
  const r = await c.responses(1);
  t.true(r.responses.length > 0 && r.responses[0]?.status !== 101, `expected an answer other than 101, got: ${describe(r)}`);
  t.deepEqual(upgradeLines(b), [], `the backend received the h2c upgrade: ${JSON.stringify(b.heads)}`);
});

test('upgrade: a 101 naming another protocol than the one requested is answered 502 and not spliced', async (t) => {
  const { b, c } = await setup(t, (head, sock) => {
    if (!/^upgrade:/im.test(head)) return void sock.write(OK);
    sock.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n');
    return true;
  });
  c.write(WS);
  const r = await c.responses(1);
  t.is(r.responses[0]?.status, 502, `expected 502 for a 101 with upgrade: h2c to a websocket request, got: ${describe(r)}`);
  c.write('after-the-answer');
  await settle();
  t.false(b.received().includes('after-the-answer'), `bytes the client sent after the answer reached the backend: ${JSON.stringify(b.received().slice(-200))}`);
});
