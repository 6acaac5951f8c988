/**
 * Source addresses preserved (docs/architecture.md#inbound): the destination agent connects to the
 * app with the client pod's own address as the source (as ztunnel does). `echo-2` reports its peer:
 * for a meshed request from `client` (HBONE, node-1 to node-2), for a permitted plaintext one from
 * `outside` (PERMISSIVE, on 15006) and for in-process delivery on one node (`client` to `echo-1`),
 * the peer is the client pod's address, and the agent says so in ambit_source_address_preserved.
 * Unlabelling removes the reply routing from the pod netns once its connections ended. An agent
 * that cannot (here: told not to, `--source-address node`, the same path as a kernel or privilege
 * that refuses) says so at start-up and counts every connection it delivers from the node.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { NEEDS, startMesh, curl, servedBy } from './helpers.js';

const run = promisify(execFile);
let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
const MESH_PODS = ['client', 'echo-1', 'echo-2', 'tcp-echo'];

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const m = await startMesh({ ambient: true });
    mesh = m.mesh;
    cleanup = m.cleanup;
    await mesh.waitCaptured(MESH_PODS, true);
  });
  test.after.always(async () => {
    await cleanup?.();
  });
}

/** The peer address the echo app saw (`client` field is "ip:port"). */
function peerOf(body: string): string {
  const client = (JSON.parse(body) as { client: string }).client;
  return client.replace(/^::ffff:/, '').replace(/:\d+$/, '');
}

async function rules(pod: string): Promise<string> {
  return (await run('ip', ['-n', mesh.cluster.pod(pod).netns, 'rule', 'show'])).stdout;
}

privilegedTest('echo-2 sees the client pod\'s address as the peer of a meshed request', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const body = await curl(mesh, 'client', `http://${echo2}:8080/`);
  t.is(servedBy(body), 'echo-2', body);
  t.is(peerOf(body), mesh.cluster.pod('client').ip, 'the app sees the client pod, not the node-2 pod gateway');
  const metrics = await mesh.agentMetrics('node-2');
  t.true(metrics.includes('ambit_source_address_preserved{pod="demo/echo-2"} 1'), 'node-2 reports echo-2 as preserved');
  t.false(/ambit_source_address_fallbacks_total\{pod="demo\/echo-2"/.test(metrics), 'no fallback for echo-2');
  t.regex(await rules('echo-2'), /fwmark 0xab17\/0xffff lookup 43799/, 'the reply path stays in the pod netns');
  const dump = await mesh.agentDump('node-2') as unknown as { localPods: { pod: string; sourceAddressPreserved?: boolean }[] };
  t.is(dump.localPods.find((p) => p.pod === 'demo/echo-2')?.sourceAddressPreserved, true, '/config_dump shows it');
}, NEEDS);

privilegedTest('echo-2 sees the client pod\'s address as the peer of a permitted plaintext request', async (t: ExecutionContext) => {
  const echo2 = mesh.cluster.pod('echo-2').ip;
  const body = await curl(mesh, 'outside', `http://${echo2}:8080/`);
  t.is(servedBy(body), 'echo-2', 'PERMISSIVE (the default) admits plaintext');
  t.is(peerOf(body), mesh.cluster.pod('outside').ip);
}, NEEDS);

privilegedTest('in-process delivery on one node keeps the client address too', async (t: ExecutionContext) => {
  const echo1 = mesh.cluster.pod('echo-1').ip;
  const body = await curl(mesh, 'client', `http://${echo1}:8080/`);
  t.is(servedBy(body), 'echo-1', body);
  t.is(peerOf(body), mesh.cluster.pod('client').ip);
}, NEEDS);

privilegedTest('unlabelling removes the reply routing from the released pod netns', async (t: ExecutionContext) => {
  mesh.setAmbient(false);
  await mesh.waitCaptured(MESH_PODS, false);
  // HBONE servers of released pods close once their last session ended (checked every 5 s).
  let left = '';
  await eventually('the reply routing (mark 0xab17) to leave the echo-2 netns', async () => !(left = await rules('echo-2')).includes('0xab17'), { timeoutMs: 20_000, intervalMs: 500, detail: () => left });
  const echo2 = mesh.cluster.pod('echo-2').ip;
  t.is(servedBy(await curl(mesh, 'client', `http://${echo2}:8080/`)), 'echo-2', 'plaintext works after release');
  mesh.setAmbient(true);
  await mesh.waitCaptured(MESH_PODS, true);
  const body = await curl(mesh, 'client', `http://${echo2}:8080/`);
  t.is(peerOf(body), mesh.cluster.pod('client').ip, 're-enrolled: preserved again');
}, NEEDS);

privilegedTest('an agent that does not preserve source addresses says so and counts each fallback', async (t: ExecutionContext) => {
  await cleanup?.();
  cleanup = undefined;
  const m = await startMesh({ ambient: true, agentArgs: ['--drain-ms', '1000', '--source-address', 'node'] });
  try {
    await m.mesh.waitCaptured(MESH_PODS, true);
    const echo2 = m.mesh.cluster.pod('echo-2').ip;
    const body = await curl(m.mesh, 'client', `http://${echo2}:8080/`);
    t.is(servedBy(body), 'echo-2', body);
    t.is(peerOf(body), '198.19.2.1', 'the app sees node-2\'s pod gateway');
    const metrics = await m.mesh.agentMetrics('node-2');
    t.true(metrics.includes('ambit_source_address_preserved{pod="demo/echo-2"} 0'), 'preserved is 0 for echo-2');
    const dump = await m.mesh.agentDump('node-2') as unknown as { localPods: { pod: string; sourceAddressPreserved?: boolean }[] };
    t.is(dump.localPods.find((p) => p.pod === 'demo/echo-2')?.sourceAddressPreserved, false, '/config_dump shows it');
    t.regex(metrics, /ambit_source_address_fallbacks_total\{pod="demo\/echo-2",reason="unsupported"\} [1-9]/);
    const log = readFileSync(join(m.stateDir, 'logs', 'agent-node-2.log'), 'utf8');
    t.regex(log, /source addresses NOT preserved/);
    t.true(log.includes('disabled by configuration'), 'the start-up line names the reason');
    t.false((await run('ip', ['-n', m.mesh.cluster.pod('echo-2').netns, 'rule', 'show'])).stdout.includes('0xab17'), 'no routing added');
  } finally {
    await m.cleanup();
  }
}, NEEDS);
