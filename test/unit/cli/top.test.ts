/**
 * `ambit top`: rates from two scrapes of real agent metrics (the agent's own prom-client
 * registry served over loopback HTTP), a frame that fits 80 columns, a clear line for an agent
 * that does not answer, and counter resets never shown as negative rates.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { createAgentMetrics, type TcpLabels } from '../../../src/agent/metrics.js';
import { computeFrame, renderFrame, scrapeOf } from '../../../src/cli/lib/top-frame.js';

const execFileP = promisify(execFile);

const labels = (src: string, dst: string): TcpLabels => ({
  reporter: 'source', source_workload: src, source_workload_namespace: 'demo', source_principal: `spiffe://cluster.local/ns/demo/sa/${src}`,
  source_app: src, source_version: 'unknown', source_canonical_service: src, source_canonical_revision: 'latest', source_cluster: 'Kubernetes',
  destination_workload: dst, destination_workload_namespace: 'demo', destination_principal: `spiffe://cluster.local/ns/demo/sa/${dst}`,
  destination_app: dst, destination_version: 'unknown', destination_canonical_service: dst, destination_canonical_revision: 'latest', destination_cluster: 'Kubernetes',
  destination_service: `${dst}.demo.svc.cluster.local`, destination_service_name: dst, destination_service_namespace: 'demo',
  request_protocol: 'tcp', connection_security_policy: 'mutual_tls', response_flags: '-',
});

test('rates, talkers and denials from two scrapes; counter resets are not negative', async (t) => {
  const reg = new Registry();
  const m = createAgentMetrics(reg, { processMetrics: false });
  m.enrolledPods.set(3);
  m.controlPlaneConnected.set(1);
  const a = scrapeOf('node-1', 0, await reg.metrics());
  m.opened.inc(labels('client', 'echo'), 10);
  m.sent.inc(labels('client', 'echo'), 4000);
  m.received.inc(labels('client', 'echo'), 6000);
  m.sent.inc(labels('client', 'db'), 100);
  m.denials.inc({ reason: 'authorization', policy: 'demo/deny', direction: 'inbound' }, 4);
  m.activeConnections.inc({ direction: 'outbound' }, 2);
  const b = scrapeOf('node-1', 2000, await reg.metrics());
  const f = computeFrame([a], [b]);
  t.like(f.nodes[0], { node: 'node-1', enrolledPods: 3, activeConnections: 2, openedPerSecond: 5, bytesPerSecond: 5050, denialsPerSecond: 2, denialsTotal: 4, controlPlaneConnected: true });
  t.like(f.talkers[0], { source: 'demo/client', destination: 'echo.demo', bytesPerSecond: 5000, connections: 10 });
  const reset = computeFrame([b], [a]);
  t.true((reset.nodes[0]?.bytesPerSecond ?? -1) >= 0, 'a restarted agent counts from zero');
  const text = renderFrame(f, 80);
  for (const l of text.split('\n')) t.true(l.length <= 80, l);
  t.regex(text, /demo\/client\s+echo\.demo\s+5\.0 kB\/s/);
});

test('`ambit top --once` against a live agent metrics endpoint and an unreachable one', async (t) => {
  const reg = new Registry();
  const m = createAgentMetrics(reg, { processMetrics: false });
  m.enrolledPods.set(2);
  const server: Server = createServer((_req, res) => { reg.metrics().then((s) => { res.writeHead(200, { 'content-type': reg.contentType }); res.end(s); }); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  const port = (server.address() as AddressInfo).port;
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const timer = setInterval(() => m.sent.inc(labels('client', 'echo'), 1000), 50);
  t.teardown(() => clearInterval(timer));
  const r = await execFileP(process.execPath, ['--import=tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'top', '--once', '--interval', '1000', '--width', '80',
    '--agent', `node-a=127.0.0.1:${port}`, '--agent', `node-b=127.0.0.1:${deadPort}`], { cwd: REPO_ROOT, timeout: 60_000 });
  const lines = r.stdout.trimEnd().split('\n');
  for (const l of lines) t.true(l.length <= 80, l);
  t.true(lines.some((l) => /^node-a\s+2\s/.test(l)), r.stdout);
  t.true(lines.some((l) => l.startsWith('node-b') && l.includes('UNREACHABLE') && l.includes('connection refused')), r.stdout);
  t.regex(r.stdout, /demo\/client\s+echo\.demo\s+\S+ kB\/s/);
});
