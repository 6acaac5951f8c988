import test from 'ava';
import { connect as netConnect, type Socket } from 'node:net';
import { backend, echo, makeConfig, startProxy, send } from './harness.js';

function raw(port: number): { sock: Socket; text: () => string; closed: Promise<void> } {
  const sock = netConnect(port, '127.0.0.1');
  let got = '';
  sock.on('data', (c: Buffer) => { got += c.toString(); });
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return { sock, text: () => got, closed };
}

test('malformed requests, oversized headers and slowloris clients are refused without affecting others', async (t) => {
  const b = await backend(echo('v1'));
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]), { limits: { maxHeaderBytes: 4096, headersTimeoutMs: 500, checkIntervalMs: 100 } });
  t.teardown(async () => { await h.close(); await b.close(); });

  // A slowloris client trickles a header line and never finishes.
  const slow = raw(h.port);
  slow.sock.write('GET / HTTP/1.1\r\nhost: reviews\r\n');
  const trickle = setInterval(() => slow.sock.write('x-a: b\r\n'), 100);
  t.teardown(() => { clearInterval(trickle); slow.sock.destroy(); });

  const bad = raw(h.port);
  bad.sock.write('GET / HTTP/1.1\r\nhost reviews\r\nbroken\x00header\r\n\r\n');
  await bad.closed;
  t.regex(bad.text(), /^HTTP\/1\.1 400/);

  const big = raw(h.port);
  big.sock.write(`GET / HTTP/1.1\r\nhost: reviews\r\nx-big: ${'a'.repeat(8000)}\r\n\r\n`);
  await big.closed;
  t.regex(big.text(), /^HTTP\/1\.1 431/);

  // Meanwhile, a well-behaved client is served normally.
  for (let i = 0; i < 5; i++) t.is((await send(h.port)).status, 200);

  await slow.closed;
  clearInterval(trickle);
  t.regex(slow.text(), /^HTTP\/1\.1 408|^$/);
  t.is((await send(h.port)).status, 200);
  const m = (await h.registry.metrics()).split("\n").filter((l) => l.startsWith("ambit_waypoint_refused")).join("\n");
  t.regex(m, /ambit_waypoint_refused_total\{reason="malformed"\} 1/);
  t.regex(m, /ambit_waypoint_refused_total\{reason="header_overflow"\} 1/);
  t.regex(m, /ambit_waypoint_refused_total\{reason="slow_client"\} 1/);
  t.is(b.hits, 6);
});

test('the header size limit is configurable', async (t) => {
  const b = await backend(echo('v1'));
  const small = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]), { limits: { maxHeaderBytes: 8192 } });
  const large = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }] }]), { limits: { maxHeaderBytes: 32_768 } });
  t.teardown(async () => { await small.close(); await large.close(); await b.close(); });
  const headers = { 'x-big': 'a'.repeat(12_000) };
  t.is((await send(small.port, { headers, agent: false })).status, 431);
  t.is((await send(large.port, { headers, agent: false })).status, 200);
  t.is(b.hits, 1);
});
