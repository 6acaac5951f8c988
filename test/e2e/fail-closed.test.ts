/**
 * Fail closed and the narrow local bypass (docs/architecture.md#fail-closed) in the demo mesh, with
 * STRICT mTLS on namespace demo: plaintext into echo-2 (node-2) from the `outside` pod is refused
 * while node-2's agent runs, after it was SIGKILLed and while it restarts; a probe opened on node-2
 * itself (the kubelet's place) reaches echo-2 in every phase; traffic from an "external" netns that
 * node-2 forwards and masquerades to its own address is refused like any plaintext. The refusals
 * made while no agent ran are reported by the next agent (`ambit_capture_fail_closed_total`), and
 * `/config_dump` shows the bypass rule and where its recorder is attached.
 *
 *   ext netns 198.19.200.2/24 ──veth── node-2 198.19.200.1/24, masqueraded (nft) toward the pods
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { execIn } from '../../src/demo/cluster.js';
import { NEEDS, startMesh, curl, servedBy } from './helpers.js';

const NFT = ['/usr/sbin/nft', '/sbin/nft'].find((p) => existsSync(p)) ?? '/usr/sbin/nft';
const needs = { ...NEEDS, paths: [...NEEDS.paths, NFT] };
const EXT = `fc${(process.pid % 1296).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const EXT_NETNS = `ambit-${EXT}-ext`;

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
let echo2 = '';
let node2 = '';

async function sh(netns: string | undefined, cmd: string, args: string[]): Promise<string> {
  const r = await execIn(netns === undefined ? {} : { netns }, cmd, args, { timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function externalNetns(): Promise<void> {
  await sh(undefined, 'ip', ['netns', 'add', EXT_NETNS]);
  await sh(undefined, 'ip', ['-n', EXT_NETNS, 'link', 'set', 'lo', 'up']);
  await sh(undefined, 'ip', ['link', 'add', `${EXT}e`, 'netns', EXT_NETNS, 'type', 'veth', 'peer', 'name', `${EXT}n`, 'netns', node2]);
  await sh(undefined, 'ip', ['-n', EXT_NETNS, 'addr', 'add', '198.19.200.2/24', 'dev', `${EXT}e`]);
  await sh(undefined, 'ip', ['-n', node2, 'addr', 'add', '198.19.200.1/24', 'dev', `${EXT}n`]);
  await sh(undefined, 'ip', ['-n', EXT_NETNS, 'link', 'set', `${EXT}e`, 'up']);
  await sh(undefined, 'ip', ['-n', node2, 'link', 'set', `${EXT}n`, 'up']);
  await sh(undefined, 'ip', ['-n', EXT_NETNS, 'route', 'add', 'default', 'via', '198.19.200.1']);
  await sh(node2, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  await sh(node2, NFT, ['add', 'table', 'ip', 'ambit_fc_test']);
  await sh(node2, NFT, ['add', 'chain', 'ip', 'ambit_fc_test', 'post', '{ type nat hook postrouting priority 100; }']);
  await sh(node2, NFT, ['add', 'rule', 'ip', 'ambit_fc_test', 'post', 'ip', 'saddr', '198.19.200.0/24', 'masquerade']);
}

async function removeExternal(): Promise<void> {
  await execIn({}, 'ip', ['netns', 'del', EXT_NETNS]).catch(() => undefined);
  if (node2 !== '') await execIn({ netns: node2 }, NFT, ['delete', 'table', 'ip', 'ambit_fc_test']).catch(() => undefined);
}

/** curl from a netns (not a pod): the body, or `ERR <code>`. */
async function curlFrom(netns: string, url: string): Promise<string> {
  const r = await execIn({ netns }, 'curl', ['-s', '-S', '-m', '4', url], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : `ERR ${r.code}`;
}

if (privilegeGap(needs) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true });
    mesh = m.mesh;
    cleanup = m.cleanup;
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    echo2 = mesh.cluster.pod('echo-2').ip;
    node2 = mesh.cluster.node('node-2').netns;
    await externalNetns();
  });
  test.after.always(async () => {
    await removeExternal();
    await cleanup?.();
  });
}

privilegedTest('PERMISSIVE: traffic from the external netns, masqueraded through node-2, reaches echo-2 (the path works)', async (t: ExecutionContext) => {
  t.is(servedBy(await curlFrom(EXT_NETNS, `http://${echo2}:8080/`)), 'echo-2');
  mesh.setResource('60-strict.yaml', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: strict, namespace: demo }\nspec: { mtls: { mode: STRICT } }\n');
  await eventually('STRICT to take effect on echo-2', async () => (await curl(mesh, 'outside', `http://${echo2}:8080/`)).startsWith('ERR'), { timeoutMs: 10_000, intervalMs: 250 });
}, needs);

privilegedTest('agent alive, STRICT: plaintext from the outside pod and masqueraded external traffic are refused; a probe opened on node-2 reaches echo-2', async (t: ExecutionContext) => {
  t.true((await curl(mesh, 'outside', `http://${echo2}:8080/`)).startsWith('ERR'), 'plaintext from a pod outside the mesh is refused');
  t.true((await curlFrom(EXT_NETNS, `http://${echo2}:8080/`)).startsWith('ERR'), 'traffic masqueraded through node-2 to its address is captured, so STRICT refuses it');
  t.is(servedBy(await curlFrom(node2, `http://${echo2}:8080/`)), 'echo-2', 'the kubelet-like probe from node-2 reaches the app');
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'mesh traffic flows');
  const dump = JSON.parse((await mesh.httpGet(node2, 'http://127.0.0.1:15000/config_dump')).body) as {
    failClosed: { rule: string }; inboundBypass: { rule: string; devices: { device: string; pods: string[] }[]; pods: Record<string, { device: string | null }> };
  };
  t.regex(dump.failClosed.rule, /refused/);
  t.regex(dump.inboundBypass.rule, /masqueraded by the node is captured/);
  t.is(dump.inboundBypass.pods['demo/echo-2']?.device, 'pods', 'the recorder sits on node-2\'s pod bridge');
  t.true(dump.inboundBypass.devices.some((d) => d.device === 'pods' && d.pods.includes('demo/echo-2')));
}, needs);

privilegedTest('agent SIGKILLed: echo-2 refuses plaintext and masqueraded traffic at once (fail closed) while node-2 probes still reach it; the restarted agent counts the refusals', async (t: ExecutionContext) => {
  await mesh.stop('agent-node-2', 'SIGKILL');
  // curl exits 7 when the connection is refused and 28 when its 4 s limit runs out: 7 is "at once".
  const outside = await curl(mesh, 'outside', `http://${echo2}:8080/`);
  t.is(outside, 'ERR 7', 'plaintext from outside: connection refused (RST), not delivered around the agent, not a timeout');
  t.is(await curlFrom(EXT_NETNS, `http://${echo2}:8080/`), 'ERR 7', 'masqueraded external traffic: refused');
  t.is(servedBy(await curlFrom(node2, `http://${echo2}:8080/`)), 'echo-2', 'the probe opened on node-2 still reaches the app');
  t.is(await curl(mesh, 'echo-2', `http://${mesh.cluster.pod('echo-1').ip}:8080/`), 'ERR 7', 'outbound of the enrolled pod fails fast instead of leaving uncaptured');

  // During the restart (until and after ready) plaintext never gets through.
  await mesh.startAgent('node-2');
  let ready = false;
  const readyP = mesh.waitAgentReady('node-2').then(() => { ready = true; });
  const during: string[] = [];
  while (!ready) {
    during.push(await curl(mesh, 'outside', `http://${echo2}:8080/`));
    await new Promise((r) => setTimeout(r, 100));
  }
  await readyP;
  await mesh.waitCaptured(['echo-2', 'tcp-echo'], true);
  during.push(await curl(mesh, 'outside', `http://${echo2}:8080/`));
  t.true(during.length >= 2 && during.every((r) => r.startsWith('ERR')), `refused throughout the restart: ${during.join(', ')}`);
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'mesh traffic flows again');
  t.is(servedBy(await curlFrom(node2, `http://${echo2}:8080/`)), 'echo-2', 'probes still reach the app');

  const metrics = await mesh.agentMetrics('node-2');
  const count = (dir: string) => Number(/\s(\d+)$/.exec(metrics.split('\n').find((l) => l.startsWith('ambit_capture_fail_closed_total') && l.includes('pod="demo/echo-2"') && l.includes(`direction="${dir}"`)) ?? '')?.[1] ?? 0);
  t.true(count('inbound') >= 2, `inbound refusals while no agent ran are counted (${count('inbound')})`);
  t.true(count('outbound') >= 1, `the outbound refusal is counted (${count('outbound')})`);
}, needs);
