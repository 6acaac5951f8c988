/**
 * Source address preservation's fallbacks (src/agent/source-address.ts), over real loopback
 * sockets: an agent that cannot or may not preserve client addresses still delivers every
 * connection, from its own netns, and says so (a log line, ambit_source_address_preserved 0,
 * ambit_source_address_fallbacks_total); a listener in the agent's own netns never gets routing.
 */
import test, { type ExecutionContext } from 'ava';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Registry } from 'prom-client';
import { SourceAddress } from '../../../src/agent/source-address.js';
import { ADDON_PATH } from '../../../src/ebpf/native.js';
import { handleFd } from '../../../src/ebpf/fd-passing.js';
import { privilegedTest } from '../../helpers/privileged.js';
import { logSink, type LogSink } from '../../helpers/log-sink.js';

function logged(): { log: LogSink['logger']; lines: LogSink['lines'] } {
  const { logger, lines } = logSink('info');
  return { log: logger, lines };
}

async function echoServer(): Promise<{ server: Server; port: number; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer((s) => { peers.push(s.remoteAddress ?? ''); s.pipe(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as AddressInfo).port, peers };
}

async function roundTrip(sock: import('node:net').Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    sock.once('data', (d) => { resolve(d.toString()); sock.destroy(); });
    sock.once('error', reject);
    sock.write('ping');
  });
}

test('disabled: every connection comes from the agent, logged at start-up and counted', async (t) => {
  const { log, lines } = logged();
  const registry = new Registry();
  const sa = new SourceAddress({ log, registry, enabled: false });
  sa.start();
  t.true(lines().some((l) => String(l['msg']).includes('NOT preserved') && l['reason'] === 'disabled by configuration'));
  const app = await echoServer();
  const use = await sa.attach('demo/echo', { fd: 12345 });
  t.deepEqual(sa.status(), { 'demo/echo': false });
  t.is(await roundTrip(await sa.connect('demo/echo', { address: '198.19.1.10', port: 4000 }, { address: '127.0.0.1', port: app.port }, 2000)), 'ping');
  const metrics = await registry.metrics();
  t.true(metrics.includes('ambit_source_address_preserved{pod="demo/echo"} 0'));
  t.true(metrics.includes('ambit_source_address_fallbacks_total{pod="demo/echo",reason="unsupported"} 1'));
  t.true(lines().some((l) => l['pod'] === 'demo/echo' && String(l['msg']).includes('node\'s address')), 'one line names the pod');
  use.release();
  t.deepEqual(sa.status(), {});
  t.false((await registry.metrics()).includes('ambit_source_address_preserved{pod="demo/echo"}'), 'a released pod leaves the gauge');
  app.server.close();
});

test('a listener on an address (not a pod netns fd) falls back, visibly', async (t) => {
  const { log } = logged();
  const registry = new Registry();
  const sa = new SourceAddress({ log, registry });
  sa.start();
  const app = await echoServer();
  await sa.attach('demo/echo', { port: 0, host: '127.0.0.1' });
  t.deepEqual(sa.status(), { 'demo/echo': false });
  t.is(await roundTrip(await sa.connect('demo/echo', { address: '198.19.1.10', port: 4000 }, { address: '127.0.0.1', port: app.port }, 2000)), 'ping');
  t.true((await registry.metrics()).includes('ambit_source_address_fallbacks_total{pod="demo/echo",reason="unsupported"} 1'));
  app.server.close();
});

test('a connect the app refuses is an error, never retried from the node', async (t) => {
  const { log } = logged();
  const sa = new SourceAddress({ log, enabled: false });
  sa.start();
  const app = await echoServer();
  const port = app.port;
  await new Promise((r) => app.server.close(r));
  await t.throwsAsync(sa.connect('demo/echo', { address: '127.0.0.1', port: 1 }, { address: '127.0.0.1', port }, 2000));
});

privilegedTest('a listener in the agent\'s own netns never gets routing', async (t: ExecutionContext) => {
  const { log } = logged();
  const registry = new Registry();
  const sa = new SourceAddress({ log, registry });
  sa.start();
  const listener = createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  await sa.attach('demo/echo', { fd: handleFd(listener) });
  t.deepEqual(sa.status(), { 'demo/echo': false }, 'same netns as the agent: not a pod, nothing changed');
  listener.close();
}, { root: false, paths: [ADDON_PATH] });
