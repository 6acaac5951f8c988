/**
 * The upgrade hand-over (src/agent/handover.ts over native/src/fd_passing.cc) on real sockets:
 * a "running agent" offers loopback listeners through a unix socket in a temp state dir, a
 * "new agent" takes them with SCM_RIGHTS and serves the very same sockets; the old one closing
 * its copies refuses no connect. Needs the native addon (no root).
 */
import type { ExecutionContext } from 'ava';
import { connect, createServer, type Server } from 'node:net';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createUnixServer } from 'node:net';
import { ADDON_PATH } from '../../../src/ebpf/native.js';
import { HandoverServer, listenOnFd, takeOver, HANDOVER_SOCKET } from '../../../src/agent/handover.js';
import { childLogger } from '../../../src/util/log.js';
import { privilegedTest } from '../../helpers/privileged.js';

const log = childLogger('test.handover');
/** Needs the addon built (npm run build); gated so that CI fails instead of skipping without it. */
const t2 = (title: string, fn: (t: ExecutionContext) => Promise<void>) => privilegedTest(title, fn, { root: false, paths: [ADDON_PATH] });

function listen(name: string): Promise<Server> {
  const s = createServer((sock) => { sock.end(`${name}\n`); });
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s)));
}

function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    let out = '';
    c.on('data', (d) => { out += d.toString(); });
    c.on('end', () => resolve(out.trim()));
    c.on('error', reject);
  });
}

const port = (s: Server) => (s.address() as { port: number }).port;
const fdOf = (s: Server) => (s as unknown as { _handle: { fd: number } })._handle.fd;

t2('listeners cross to the new agent and keep their port and accept queue', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-handover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, HANDOVER_SOCKET);
  const pod = await Promise.all(['out', 'plain', 'hbone'].map(listen));
  const admin = await listen('old-admin');
  let handedTo = 0;
  const old = new HandoverServer({
    path, node: 'node-1', log,
    offer: () => ({ pods: [{ id: 'demo/a', fds: { outbound: fdOf(pod[0]!), inboundPlain: fdOf(pod[1]!), inboundHbone: fdOf(pod[2]!) } }], node: { admin } }),
    onHandedOver: (pid) => { handedTo = pid; },
  });
  await old.listen();
  const got = await takeOver(path, 'node-1', log);
  t.truthy(got);
  t.is(handedTo, process.pid);
  t.false(existsSync(path), 'the old agent gave the path up for the successor');
  const l = got!.takePod('demo/a');
  t.truthy(l);
  t.is(got!.takePod('demo/a'), undefined, 'taken once');
  const fresh = createServer((sock) => { sock.end('new-plain\n'); });
  const p = await listenOnFd(fresh, l!.inboundPlain);
  t.is(p, port(pod[1]!), 'same socket, same port');
  const freshAdmin = createServer((sock) => { sock.end('new-admin\n'); });
  t.is(await listenOnFd(freshAdmin, got!.takeNode('admin')!), port(admin));
  // The old agent stops accepting: every connect still finds the shared socket.
  await new Promise((r) => pod[1]!.close(r));
  await new Promise((r) => admin.close(r));
  for (let i = 0; i < 20; i++) t.is(await ask(p), 'new-plain');
  t.is(await ask(port(freshAdmin)), 'new-admin');
  t.deepEqual(got!.closeRest(), []);
  for (const s of [fresh, freshAdmin, pod[0]!, pod[2]!]) s.close();
  for (const fd of [l!.outbound, l!.inboundHbone]) { try { (await import('../../../src/ebpf/fd-passing.js')).closeFd(fd); } catch { /* closed */ } }
});

t2('a stale socket (crashed agent) is removed and start-up goes on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-handover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, HANDOVER_SOCKET);
  const u = createUnixServer();
  await new Promise<void>((r) => u.listen(path, () => r()));
  // Simulate a crash: the file stays, nobody listens.
  (u as unknown as { _handle: { close: () => void } })._handle.close();
  if (!existsSync(path)) writeFileSync(path, '');
  t.is(await takeOver(path, 'node-1', log), undefined);
  t.false(existsSync(path), 'stale socket removed');
});

t2('a request for another node is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-handover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, HANDOVER_SOCKET);
  let handed = false;
  const old = new HandoverServer({ path, node: 'node-1', log, offer: () => ({ pods: [], node: {} }), onHandedOver: () => { handed = true; } });
  await old.listen();
  t.is(await takeOver(path, 'node-2', log, 2000), undefined);
  t.false(handed);
  old.close();
});
