/**
 * An HBONE peer may name a connection's original source (`forwarded: for=`) only for an address
 * it is entitled to: its own workload's (same identity) or any client's when it is a waypoint.
 * A mesh workload claiming another workload's address, or one no workload has, is refused with
 * 401 and a denial naming the cause, so it cannot borrow an ipBlocks ALLOW, dodge an ipBlocks
 * DENY, or make the app see another pod's address.
 */
import test from 'ava';
import type { Server } from 'node:net';
import { InboundHbone, type PodHboneServer } from '../../../src/agent/inbound.js';
import type { WorkloadView } from '../../../src/agent/mesh-state.js';
import { HbonePool } from '../../../src/tunnel/pool.js';
import type { TunnelError } from '../../../src/tunnel/errors.js';
import { clusterYaml, echoApp, freePort, makeIdentities, metricText, podYaml, stateFromYaml, testNode, waitIdle, type TestNode } from './helpers.js';

const SERVER = '127.0.0.13';
const CLIENT = '127.0.0.12';
const OTHER = '127.0.0.14';
const NOBODY = '127.0.0.15';
const td = 'cluster.local';
const id = (ns: string, sa: string) => `spiffe://${td}/ns/${ns}/sa/${sa}`;

const yaml = (app: number) => [
  clusterYaml(['node-1', 'node-2'], ['shop']),
  podYaml({ name: 'client', namespace: 'shop', node: 'node-1', serviceAccount: 'client', ip: CLIENT }),
  podYaml({ name: 'admin', namespace: 'shop', node: 'node-1', serviceAccount: 'admin', ip: OTHER }),
  podYaml({ name: 'echo', namespace: 'shop', node: 'node-2', serviceAccount: 'echo', ip: SERVER, containerPort: app }),
  `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: admin-only, namespace: shop }
spec:
  selector: { matchLabels: { app: echo } }
  rules: [{ from: [{ source: { ipBlocks: ["${OTHER}/32"] } }] }]
`,
].join('---\n');

let node: TestNode;
let pool: HbonePool;
let hb: number;
let app: number;
const closers: (() => unknown)[] = [];

test.before(async () => {
  const ids = await makeIdentities();
  closers.push(() => ids.close());
  app = await freePort([SERVER]);
  hb = await freePort([SERVER]);
  node = testNode(ids.identities, hb, stateFromYaml(yaml(app), 'node-2'));
  closers.push(() => node.close());
  const echo: Server = await echoApp('echo', SERVER, app);
  const server: PodHboneServer = await new InboundHbone(node.ctx).listen(node.ctx.state().workloads.get('shop/echo') as WorkloadView, { host: SERVER, port: hb });
  pool = new HbonePool({ credentials: ids.identities });
  closers.push(() => pool.destroy(), () => echo.close(), () => server.close(100));
});

test.after.always(async () => {
  for (const f of closers.reverse()) await f();
});

/** A CONNECT to echo under `source`'s identity, claiming `forwardedFor`; the echo reply or the refusal's code. */
async function connectAs(source: string, forwardedFor: string | undefined): Promise<string> {
  try {
    const stream = await pool.connect({
      source, address: { host: SERVER, port: hb }, destinationIdentity: id('shop', 'echo'), authority: `${SERVER}:${app}`,
      ...(forwardedFor !== undefined ? { forwardedFor: { host: forwardedFor, port: 40000 } } : {}),
    });
    stream.end('hi');
    const reply = await new Promise<string>((resolve, reject) => { stream.once('data', (d: Buffer) => resolve(d.toString())); stream.once('error', reject); });
    stream.destroy();
    return reply;
  } catch (err) {
    return (err as TunnelError).code;
  }
}

test.serial('a workload may name its own address: the policy sees it and decides by it', async (t) => {
  // admin's own address is the one the policy allows.
  t.is(await connectAs(id('shop', 'admin'), OTHER), 'echo:hi');
  // client's own address is not allowed by the policy: denied by the policy, not as a spoof.
  t.is(await connectAs(id('shop', 'client'), CLIENT), 'AMBIT_ERR_TUNNEL_DENIED');
  await waitIdle(node);
  const reasons = (await metricText(node.registry, 'ambit_agent_denials_total')).join('\n');
  t.regex(reasons, /reason="authorization"/);
  t.notRegex(reasons, /forwarded_source/);
});

test.serial('a workload claiming another workload\'s address is refused as a spoof, not let in by that address\'s ALLOW', async (t) => {
  t.is(await connectAs(id('shop', 'client'), OTHER), 'AMBIT_ERR_TUNNEL_DENIED');
  t.is(await connectAs(id('shop', 'client'), NOBODY), 'AMBIT_ERR_TUNNEL_DENIED');
  await waitIdle(node);
  const denials = (await metricText(node.registry, 'ambit_agent_denials_total')).filter((l) => l.includes('reason="forwarded_source"'));
  t.is(denials.reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0), 2);
  const refused = node.lines().filter((l) => l['msg'] === 'inbound HBONE connection denied' && String(l['reason']).includes('may not speak for source address'));
  t.is(refused.length, 2);
  t.regex(String(refused[0]?.['reason']), new RegExp(`${OTHER.replace(/\./g, '\\.')} \\(it belongs to shop/admin`));
  t.regex(String(refused[1]?.['reason']), /no workload has that address/);
  // The refusal is recorded with the tunnel peer's address, never the claimed one.
  t.false(refused.some((l) => String(l['source']) === OTHER));
});
