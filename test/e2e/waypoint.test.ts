/**
 * Waypoints (docs/architecture.md#waypoints) in the netns cluster: the demo mesh with its waypoint
 * pod. The waypoint Gateway, routes and an L7 policy come from examples/demo/try/waypoint.yaml
 * (what a user copies); `ambit waypoint` runs in its own pod on node-2 with the identity of its
 * service account; the echo Service is bound with ambit.dev/use-waypoint. The client pod (node-1)
 * then talks to the echo VIP as before, and the proof that the waypoint is in the path is L7
 * behaviour no agent has: a header match pins a replica, a path is denied with 403, and the
 * waypoint counts istio_requests_total{reporter="waypoint"}. The agents' metrics show both HBONE
 * legs: client agent -> waypoint, waypoint -> endpoint agent (peer = the waypoint).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { DemoMesh, ECHO_VIP } from '../../src/demo/mesh.js';
import { execIn } from '../../src/demo/cluster.js';
import { AMBIT, NEEDS } from './helpers.js';
import { routeEchoThroughWaypoint } from './demo-waypoint.js';

const WAYPOINT_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;

interface Answer { status: number; headers: Record<string, string>; body: string }

/** One HTTP request from the client pod with curl, with the response head. */
async function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const r = await mesh.exec('client', 'curl', ['-s', '-S', '-m', '4', '-i', ...h, `http://${ECHO_VIP}${path}`], 10_000);
  if (r.code !== 0) return { status: 0, headers: {}, body: `curl exit ${r.code}: ${r.stderr.trim()}` };
  const sep = r.stdout.indexOf('\r\n\r\n');
  const head = r.stdout.slice(0, sep).split('\r\n');
  const out: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(/^HTTP\/\S+ (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0), headers: out, body: r.stdout.slice(sep + 4) };
}

function pod(a: Answer): string {
  try {
    return (JSON.parse(a.body) as { pod: string }).pod;
  } catch {
    return `? ${a.status} ${a.body.slice(0, 80)}`;
  }
}

/** Lines of `metric` in a metrics text that carry every one of `labels`. */
function series(text: string, metric: string, labels: string[]): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`) && labels.every((x) => l.includes(x)));
}

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-'));
    const prefix = `w${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    cleanup = async () => {
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    };
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, waypoint: true, agentArgs: ['--drain-ms', '1000'] });
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2'], true);
    // What a user does: declare the waypoint (and its routes and policy), run it, bind the Service.
    await routeEchoThroughWaypoint(mesh);
  });
  test.after.always(async () => {
    await cleanup?.();
  });
}

privilegedTest('the client pod\'s requests to the echo VIP are routed by the waypoint (header match pins v2)', async (t: ExecutionContext) => {
  const stable: string[] = [];
  const canary: string[] = [];
  for (let i = 0; i < 6; i++) {
    const a = await get('/hello');
    t.is(a.status, 200);
    t.is(a.headers['x-ambit-route'], 'stable');
    stable.push(pod(a));
    const b = await get('/hello', { 'x-canary': 'yes' });
    t.is(b.status, 200);
    t.is(b.headers['x-ambit-route'], 'canary');
    canary.push(pod(b));
  }
  // Without the waypoint the agent balances the VIP over both replicas; the routes pin them.
  t.deepEqual([...new Set(stable)], ['echo-1'], 'the default route goes to subset v1 only');
  t.deepEqual([...new Set(canary)], ['echo-2'], 'x-canary: yes goes to subset v2 only');
  const seen = JSON.parse((await get('/hello')).body) as { headers: Record<string, string> };
  t.regex(seen.headers['traceparent'] ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'the waypoint started a trace');
  t.truthy(seen.headers['x-request-id'], 'the waypoint set a request id');
}, NEEDS);

privilegedTest('an L7 AuthorizationPolicy denies a path with 403; other paths pass', async (t: ExecutionContext) => {
  const denied = await get('/admin/stats');
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');
  const allowed = await get('/public');
  t.is(allowed.status, 200);
  t.is(pod(allowed), 'echo-1');
}, NEEDS);

privilegedTest('the waypoint reports istio_requests_total; both HBONE legs show in the agents\' metrics', async (t: ExecutionContext) => {
  await get('/admin/stats');
  await get('/hello', { 'x-canary': 'yes' });
  const wm = await mesh.waypointMetrics();
  const ok = series(wm, 'istio_requests_total', ['reporter="waypoint"', 'response_code="200"', 'destination_service="echo.demo.svc.cluster.local"', 'source_principal="spiffe://cluster.local/ns/demo/sa/client"', 'connection_security_policy="mutual_tls"']);
  t.true(ok.length >= 1, `200s counted by the waypoint:\n${wm.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n')}`);
  t.true(series(wm, 'istio_requests_total', ['reporter="waypoint"', 'response_code="403"', 'response_flags="RBAC"']).length === 1, 'the denial is counted with flag RBAC');
  t.true(series(wm, 'istio_requests_total', ['destination_workload="echo"', 'destination_version="v2"', 'destination_principal="spiffe://cluster.local/ns/demo/sa/echo"']).length >= 1, 'upstream workload, version and identity labelled');
  t.true(series(wm, 'istio_requests_total', ['source_workload="client"', 'source_workload_namespace="demo"']).length >= 1, 'the source workload is named from the verified peer and its forwarded address');
  // Leg 1: the client's agent tunnels to the waypoint (expected peer: the waypoint's identity).
  const m1 = await mesh.agentMetrics('node-1');
  t.true(series(m1, 'istio_tcp_connections_opened_total', ['reporter="source"', `destination_principal="${WAYPOINT_ID}"`]).length >= 1, 'client agent -> waypoint over HBONE');
  // Leg 2: the endpoint's agent accepted HBONE from the waypoint (echo-2 lives on node-2).
  const m2 = await mesh.agentMetrics('node-2');
  t.true(series(m2, 'istio_tcp_connections_opened_total', ['reporter="destination"', `source_principal="${WAYPOINT_ID}"`]).length >= 1, 'waypoint -> endpoint agent over HBONE, peer = the waypoint');
}, NEEDS);

interface Why { verdict: string; layer: string; decidedBy?: string; mtls: boolean; steps: string[] }

/** `ambit why` against the mesh folder the control plane serves, as JSON. */
async function why(args: string[]): Promise<Why> {
  const [cmd, ...pre] = AMBIT;
  const r = await execIn({ netns: mesh.cluster.controlNetns }, cmd as string, [...pre, 'why', '--config', mesh.meshDir, '--output', 'json', ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ambit why ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Why;
}

// The L7 half of why.test.ts: `ambit why` agrees with what the waypoint actually does.
privilegedTest('ambit why agrees with the waypoint at L7: the denied path and an allowed one', async (t: ExecutionContext) => {
  const deny = await why(['demo/client', `${ECHO_VIP}:80`, '--method', 'GET', '--path', '/admin/stats']);
  t.log(deny.steps.join('\n'));
  t.like(deny, { verdict: 'deny', layer: 'L7', decidedBy: 'demo/echo-no-admin', mtls: true });
  t.is((await get('/admin/stats')).status, 403, 'the waypoint denies it too');
  const allow = await why(['demo/client', `${ECHO_VIP}:80`, '--method', 'GET', '--path', '/public']);
  t.like(allow, { verdict: 'allow', layer: 'L7', mtls: true });
  t.is((await get('/public')).status, 200, 'the waypoint lets it through too');
}, NEEDS);
