/**
 * `ambit status` and the target discovery it shares with config-dump and top: agents found from
 * the control plane's subscriber peers and overridden by --agent; an unreachable control plane
 * is one clear line and exit 1. (The full healthy report is checked against the demo cluster in
 * test/e2e/prometheus.test.ts.)
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { agentTargets, parseAgentFlags, peerHost, type ControlDump } from '../../../src/cli/lib/targets.js';
import { renderStatus, type StatusReport } from '../../../src/cli/status.js';

const execFileP = promisify(execFile);

test('agents come from the control plane\'s subscriber peers; --agent overrides one', (t) => {
  t.is(peerHost('ipv4:198.18.0.1:40312'), '198.18.0.1');
  t.is(peerHost('ipv6:[fd00::2]:5000'), 'fd00::2');
  const dump = { subscribers: [
    { kind: 'agent', name: 'node-1', peer: 'ipv4:198.18.0.1:40312', version: 3, acked: 3, connectedAt: '' },
    { kind: 'agent', name: 'node-2', peer: 'ipv4:198.18.0.2:40999', version: 3, acked: 2, connectedAt: '' },
    { kind: 'waypoint', name: 'demo/wp', peer: 'ipv4:198.19.1.20:1', version: 3, acked: 3, connectedAt: '' },
  ] } as unknown as ControlDump;
  const ts = agentTargets(dump, parseAgentFlags(['node-2=127.0.0.1:25000']), { admin: 15000, metrics: 15020 });
  t.deepEqual(ts.map((x) => [x.node, x.admin, x.metrics, x.subscriber?.acked]), [
    ['node-1', 'http://198.18.0.1:15000', 'http://198.18.0.1:15020', 3],
    ['node-2', 'http://127.0.0.1:25000', 'http://127.0.0.1:15020', 2],
  ]);
  const top = agentTargets(undefined, parseAgentFlags(['n=198.18.2.3']), { admin: 15000, metrics: 15020 }, 'metrics');
  t.is(top[0]?.metrics, 'http://198.18.2.3:15020');
  t.throws(() => parseAgentFlags(['=x']), { code: 'AMBIT_ERR_CLI_USAGE' } as never);
});

test('the text report fits 80 columns and lists the problems', (t) => {
  const r: StatusReport = {
    control: { url: 'http://127.0.0.1:15014', reachable: true, ready: true, version: 7, epoch: 'e', source: 'kubernetes https://198.18.200.1', problems: 0, servingCertificate: { identity: 'spiffe://cluster.local/ns/ambit-system/sa/ambit-control', notAfter: '', expiresInSeconds: 86000 } },
    agents: [
      { node: 'a-very-long-node-name-in-some-cloud-provider-zone-1', admin: 'x', reachable: true, connected: true, ready: 'ready', viewVersion: 7, ackedVersion: 7, pods: { enrolled: 4, total: 5, notCaptured: [] }, certificates: [{ identity: 'i', expiresInSeconds: 80000 }] },
      { node: 'node-2', admin: 'x', reachable: false, error: 'cannot reach the agent of node-2 at http://x: connection refused' },
    ],
    waypoints: [{ name: 'demo/waypoint', peer: '198.19.1.20', version: 7, acked: 7 }],
    healthy: false,
    problems: ['cannot reach the agent of node-2 at http://x: connection refused'],
  };
  const text = renderStatus(r, 80);
  for (const l of text.split('\n').filter((x) => !x.startsWith('  - ') && !x.startsWith('               '))) t.true(l.length <= 80, l);
  t.regex(text, /node-2\s+UNREACHABLE/);
  t.regex(text, /1 problem\(s\):\n  - cannot reach the agent of node-2/);
});

test('an unreachable control plane is one clear line and exit 1', async (t) => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  const r = await execFileP(process.execPath, ['--import=tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'status', '--control', `127.0.0.1:${port}`], { cwd: REPO_ROOT, timeout: 60_000 }).then(() => ({ code: 0, stdout: '' }), (e: { code: number; stdout: string }) => e);
  t.is(r.code, 1);
  t.regex(r.stdout, new RegExp(`control plane  http://127.0.0.1:${port}  UNREACHABLE: cannot reach the control plane at http://127.0.0.1:${port}/config_dump: connection refused`));
});
