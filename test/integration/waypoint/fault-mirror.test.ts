import test from 'ava';
import type { ServerResponse } from 'node:http';
import { backend, echo, makeConfig, startProxy, send, many, route, forward, hostOf } from './harness.js';
import { eventually } from '../../helpers/eventually.js';

const host = hostOf('reviews');

test('fault abort at 20% answers 503 at that rate; a delay holds the request before it is forwarded', async (t) => {
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

  // The delay is the test's: the request waits until the test ends it, whatever the clock says.
  const delays: { ms: number; end: () => void }[] = [];
  const faultDelay = (ms: number) => new Promise<void>((end) => { delays.push({ ms, end }); });
  const delayRoute = [route({ action: forward({ host }), fault: { delay: { ms: 300, percent: 100 }, abort: undefined } })];
  const h2 = await startProxy(makeConfig([{ name: 'reviews', endpoints: [{ backend: b }], routes: delayRoute }]), { faultDelay });
  t.teardown(async () => { for (const d of delays) d.end(); await h2.close(); await b.close(); });
  const hits = b.hits;
  const pending = send(h2.port);
  await eventually('the request to reach the fault delay', () => delays.length === 1);
  t.is(delays[0]?.ms, 300, 'the request waits the configured delay');
  t.is(b.hits, hits, 'and is not forwarded while it waits');
  delays[0]?.end();
  const r = await pending;
  t.is(r.status, 200);
  t.is(b.hits, hits + 1, 'forwarded once the delay is over');
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
      // A mirror that is slow and fails must not matter: it answers (500) only when the test says.
      held.push(res);
    });
  });
  const held: ServerResponse[] = [];
  const answerMirrors = () => { for (const res of held.splice(0)) if (!res.destroyed) { res.writeHead(500); res.end('shadow broke'); } };
  const routes = [route({ action: forward({ host }), mirrors: [{ destination: { host: hostOf('shadow'), subset: undefined, port: undefined, weight: 100 }, percent: 100 }] })];
  const h = await startProxy(makeConfig([
    { name: 'reviews', endpoints: [{ backend: main }], routes },
    { name: 'shadow', endpoints: [{ backend: shadow }] },
  ]));
  t.teardown(async () => { answerMirrors(); await h.close(); await main.close(); await shadow.close(); });
  const rs = await many(20, 4, (i) => send(h.port, { method: 'POST', body: `item-${i}` }));
  t.true(rs.every((r) => r.status === 200 && r.headers['x-backend'] === 'main'));
  await eventually('20 mirrored copies at the shadow', () => copies.length === 20, { detail: () => `${copies.length} copies` });
  t.is(held.length, 20, 'the mirror holds all 20 copies unanswered: the responses did not wait for it');
  answerMirrors();
  t.true(copies.every((c) => c.host === 'reviews.shop.svc.cluster.local-shadow'));
  t.deepEqual(copies.map((c) => c.body).sort(), Array.from({ length: 20 }, (_, i) => `item-${i}`).sort());
  await shadow.close();
  const after = await send(h.port);
  t.is(after.status, 200, 'a dead mirror target does not matter either');
});
