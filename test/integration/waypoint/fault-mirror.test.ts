import test from 'ava';
import { backend, echo, makeConfig, startProxy, send, many, route, forward, hostOf, eventually } from './harness.js';

const host = hostOf('reviews');

test('fault abort at 20% answers 503 at that rate; a delay adds its time', async (t) => {
  const b = await backend(echo('v1'));
  const abortRoute = [route({ action: forward({ host }), fault: { delay: undefined, abort: { httpStatus: 503, percent: 20 } } })];
  const h = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], routes: abortRoute }]));
  const rs = await many(1000, 16, () => send(h.port));
  const aborted = rs.filter((r) => r.status === 503).length / 1000;
  t.true(Math.abs(aborted - 0.2) <= 0.04, `aborted share ${aborted}`);
  t.is(rs.filter((r) => r.status !== 503 && r.status !== 200).length, 0);
  t.true(h.entries.filter((e) => e.responseFlags === 'FI').length > 0);
  t.is(b.hits, rs.filter((r) => r.status === 200).length);
  await h.close();

  const delayRoute = [route({ action: forward({ host }), fault: { delay: { ms: 300, percent: 100 }, abort: undefined } })];
  const h2 = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], routes: delayRoute }]));
  t.teardown(async () => { await h2.close(); await b.close(); });
  const started = Date.now();
  const r = await send(h2.port);
  t.is(r.status, 200);
  t.true(Date.now() - started >= 290);
  t.is(h2.entries.at(-1)?.responseFlags, 'DI');
});

test('mirroring delivers copies and never affects the response', async (t) => {
  const main = await backend(echo('main'));
  const copies: Array<{ host: string | undefined; body: string }> = [];
  const shadow = await backend((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      copies.push({ host: req.headers.host, body: Buffer.concat(chunks).toString() });
      // A mirror that is slow and fails must not matter.
      setTimeout(() => { res.writeHead(500); res.end('shadow broke'); }, 1500).unref();
    });
  });
  const routes = [route({ action: forward({ host }), mirrors: [{ destination: { host: hostOf('shadow'), subset: undefined, port: undefined, weight: 100 }, percent: 100 }] })];
  const h = await startProxy(makeConfig([
    { name: 'reviews', endpoints: [{ backend: main }], routes },
    { name: 'shadow', endpoints: [{ backend: shadow }] },
  ]));
  t.teardown(async () => { await h.close(); await main.close(); await shadow.close(); });
  const rs = await many(20, 4, (i) => send(h.port, { method: 'POST', body: `item-${i}` }));
  t.true(rs.every((r) => r.status === 200 && r.headers['x-backend'] === 'main'));
  t.true(h.entries.every((e) => e.durationMs < 1000), 'responses did not wait for the slow mirror');
  await eventually(() => copies.length === 20);
  t.true(copies.every((c) => c.host === 'reviews.shop.svc.cluster.local-shadow'));
  t.deepEqual(copies.map((c) => c.body).sort(), Array.from({ length: 20 }, (_, i) => `item-${i}`).sort());
  await shadow.close();
  const after = await send(h.port);
  t.is(after.status, 200, 'a dead mirror target does not matter either');
});
