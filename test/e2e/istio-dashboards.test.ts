/**
 * Istio's own Grafana dashboards (mesh, service, workload; unmodified copies in
 * test/e2e/istio-dashboards/) as a compatibility test of ambit's metrics. The demo mesh runs in
 * ambient mode with its waypoint bound to Service echo; a real Prometheus scrapes both agents and
 * the waypoint; traffic goes through L4 (client -> tcp-echo VIP, mTLS), through the waypoint
 * (client -> echo VIP over HTTP, including a 403), and in plaintext both ways across the mesh's
 * edge (the `outside` pod -> tcp-echo, client -> a TCP echo in the `outside` pod). Then every
 * panel query of the three dashboards runs against Prometheus with the template variables filled
 * in as Grafana would (the variables' own queries included), for each dashboard view an operator
 * would open: the service dashboard for echo and for tcp-echo, the workload dashboard for client,
 * echo and tcp-echo in namespace demo. Each query must return at least one series in some view,
 * except those listed in istio-dashboards/unsupported.json with the reason ambit cannot serve
 * them; an entry that no longer matches a panel query, or whose query now returns data, fails.
 * Most entries are request panels that select reporter source/destination only, while ambit's
 * waypoint, like Istio ambient's, reports reporter="waypoint" (istio/istio#61815): the test runs
 * the dashboards a second time selecting the waypoint too, as that issue proposes, and checks
 * what each such entry says it returns then (`with_waypoint_reporter`), so the waypoint's request
 * labels are proven against the very panels that cannot show them yet.
 */
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { DemoMesh, ECHO_VIP, REPO_ROOT, TCP_ECHO_VIP, WAYPOINT_POD } from '../../src/demo/mesh.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { AMBIT, NEEDS as MESH_NEEDS, curl } from './helpers.js';
import { routeEchoThroughWaypoint } from './demo-waypoint.js';
import { PROMETHEUS_BIN, Prometheus, agentJob } from './prometheus-server.js';
import { GrafanaDashboard, interpolate, type DashboardQuery } from '../helpers/grafana-dashboard.js';

const NEEDS = { ...MESH_NEEDS, paths: [...MESH_NEEDS.paths, PROMETHEUS_BIN] };
const DIR = join(REPO_ROOT, 'test', 'e2e', 'istio-dashboards');

interface Unsupported extends DashboardQuery {
  reason: string;
  /** For a query empty because it selects reporter source/destination only: what it returns once it also selects reporter="waypoint". */
  with_waypoint_reporter?: 'data' | 'empty';
}

/**
 * Istio's dashboards as istio/istio#61815 proposes to fix them for ambient: every reporter
 * selector also takes reporter="waypoint" (same panels, same order).
 */
const withWaypointReporter = (q: string) => q
  .replace(/reporter="(source|destination)"/g, 'reporter=~"$1|waypoint"')
  .replace(/reporter=~"\$qrep"/g, 'reporter=~"$qrep|waypoint"');

/** A dashboard as an operator opens it: the single-value variables they pick. */
interface View { dashboard: GrafanaDashboard; pick: Record<string, string> }

const dashboards = ['istio-mesh-dashboard.gen.json', 'istio-service-dashboard.json', 'istio-workload-dashboard.json'].map((f) => new GrafanaDashboard(f, join(DIR, f)));
const patched = new Map(dashboards.map((d) => [d, new GrafanaDashboard(d.file, join(DIR, d.file), withWaypointReporter)]));
const [meshDash, serviceDash, workloadDash] = dashboards as [GrafanaDashboard, GrafanaDashboard, GrafanaDashboard];
const VIEWS: View[] = [
  { dashboard: meshDash, pick: {} },
  { dashboard: serviceDash, pick: { service: 'echo.demo.svc.cluster.local' } },
  { dashboard: serviceDash, pick: { service: 'tcp-echo.demo.svc.cluster.local' } },
  { dashboard: workloadDash, pick: { namespace: 'demo', workload: 'client' } },
  { dashboard: workloadDash, pick: { namespace: 'demo', workload: 'echo' } },
  { dashboard: workloadDash, pick: { namespace: 'demo', workload: 'tcp-echo' } },
];
const unsupported = JSON.parse(readFileSync(join(DIR, 'unsupported.json'), 'utf8')) as Unsupported[];

const key = (q: DashboardQuery) => `${q.dashboard}\u0000${q.panel}\u0000${q.expr}`;

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
let prom: Prometheus | undefined;
let outsideEcho: ChildProcess | undefined;

/** The `ambit demo app client --tcp` exchange of `count` lines from a pod; its output. */
async function tcpClient(pod: string, target: string, count: number): Promise<string> {
  const [cmd, ...pre] = AMBIT;
  const r = await mesh.exec(pod, cmd as string, [...pre, 'demo', 'app', 'client', '--tcp', target, '--count', String(count), '--interval', '50'], 20_000);
  return r.stdout + r.stderr;
}

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-dash-'));
    const prefix = `g${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    cleanup = async () => {
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    };
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, waypoint: true, agentArgs: ['--drain-ms', '1000'] });
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2', 'tcp-echo'], true);
    await routeEchoThroughWaypoint(mesh);
    const wp = mesh.cluster.pod(WAYPOINT_POD.name);
    prom = Prometheus.start(mesh, [agentJob(mesh), { job: 'ambit-waypoint', targets: [{ address: `${wp.ip}:15020`, labels: { node: WAYPOINT_POD.node } }] }]);
    // A TCP echo outside the mesh, for plaintext passthrough from the client.
    const [cmd, ...pre] = AMBIT;
    outsideEcho = mesh.spawnInPod('outside', cmd as string, [...pre, 'demo', 'app', 'tcp-echo', '--name', 'outside', '--port', '9000']);
  });
  test.after.always(async () => {
    outsideEcho?.kill('SIGKILL');
    await prom?.stop();
    await cleanup?.();
  });
}

privilegedTest('every panel query of Istio\'s mesh, service and workload dashboards returns data, except the listed unsupported ones', async (t: ExecutionContext) => {
  t.timeout(5 * 60_000); // a mesh's worth of traffic, then two passes over 159 queries in six views
  const p = prom as Prometheus;
  await p.until('up', (v) => v.length === 3 && v.every((x) => x.value[1] === '1'));
  // L7 through the waypoint: routed 200s to both subsets and a 403 from an L7 policy.
  for (let i = 0; i < 5; i++) {
    t.notRegex(await curl(mesh, 'client', `http://${ECHO_VIP}/hello`, 'x'.repeat(300)), /^ERR/);
    await mesh.exec('client', 'curl', ['-s', '-m', '4', '-H', 'x-canary: yes', `http://${ECHO_VIP}/hello`], 10_000);
  }
  await mesh.exec('client', 'curl', ['-s', '-m', '4', `http://${ECHO_VIP}/admin/stats`], 10_000);
  // L4 over mTLS, and plaintext across the mesh's edge in both directions.
  t.regex(await tcpClient('client', `${TCP_ECHO_VIP}:9000`, 3), /tcp-echo/);
  const tcpEcho = mesh.cluster.pod('tcp-echo').ip;
  t.regex(await tcpClient('outside', `${tcpEcho}:9000`, 3), /tcp-echo/);
  t.regex(await tcpClient('client', `${mesh.cluster.pod('outside').ip}:9000`, 3), /outside/);
  await p.until('sum by (reporter) (istio_requests_total)', (v) => v.length > 0);
  await p.until('count(istio_tcp_sent_bytes_total{connection_security_policy="none"})', (v) => v.length > 0);
  // irate() needs two samples of each series in the window.
  await new Promise((r) => setTimeout(r, 3000));

  const errors: string[] = [];
  /** The queries (keyed by the original dashboards' text) that return data in some view. */
  const answering = async (patch: boolean): Promise<Set<string>> => {
    const answered = new Set<string>();
    for (const view of VIEWS) {
      const dash = patch ? patched.get(view.dashboard) as GrafanaDashboard : view.dashboard;
      const values = await dash.resolve((q) => p.query(q), view.pick);
      if (!patch) t.log(`${view.dashboard.file} ${JSON.stringify(view.pick)}: ${[...values].map(([k, v]) => `${k}=${JSON.stringify(v.values)}`).join(' ')}`);
      const pending = view.dashboard.queries.map((q, i) => ({ q, promql: interpolate((dash.queries[i] as DashboardQuery).expr, values) })).filter((x) => !answered.has(key(x.q)));
      for (const [i, r] of (await p.queryAll(pending.map((x) => x.promql))).entries()) {
        const q = (pending[i] as { q: DashboardQuery }).q;
        if (r instanceof Error) errors.push(`${q.dashboard} "${q.panel}": ${r.message}`);
        else if (r.length > 0) answered.add(key(q));
      }
    }
    return answered;
  };
  const answered = await answering(false);
  const answeredWithWaypoint = await answering(true);
  t.deepEqual(errors, [], 'Prometheus accepts every query');

  const all = dashboards.flatMap((d) => d.queries);
  const listed = new Map(unsupported.map((u) => [key(u), u]));
  const missing = all.filter((q) => !answered.has(key(q)) && !listed.has(key(q)));
  t.deepEqual(missing.map((q) => `${q.dashboard} "${q.panel}": ${q.expr}`), [], 'queries without data that unsupported.json does not list');
  const known = new Set(all.map(key));
  t.deepEqual(unsupported.filter((u) => !known.has(key(u))).map((u) => `${u.dashboard} "${u.panel}": ${u.expr}`), [], 'unsupported.json entries that match no panel query');
  t.deepEqual(unsupported.filter((u) => answered.has(key(u))).map((u) => `${u.dashboard} "${u.panel}": ${u.expr}`), [], 'unsupported.json entries whose query now returns data');
  for (const u of unsupported) t.true(u.reason.trim().length > 20, `a reason for ${u.dashboard} "${u.panel}"`);
  // What the waypoint's request series serve once the dashboards select reporter="waypoint".
  const expect = (u: Unsupported) => u.with_waypoint_reporter ?? 'empty';
  t.deepEqual(unsupported.filter((u) => (answeredWithWaypoint.has(key(u)) ? 'data' : 'empty') !== expect(u)).map((u) => `${u.dashboard} "${u.panel}" (expected ${expect(u)} with reporter="waypoint"): ${u.expr}`), [], 'with_waypoint_reporter holds');
  t.deepEqual(all.filter((q) => answered.has(key(q)) && !answeredWithWaypoint.has(key(q))).map((q) => q.expr), [], 'selecting the waypoint too loses nothing');

  for (const d of dashboards) {
    const ok = d.queries.filter((q) => answered.has(key(q))).length;
    const panels = d.panels();
    const full = panels.filter((qs) => qs.every((q) => answered.has(key(q)))).length;
    const some = panels.filter((qs) => qs.some((q) => answered.has(key(q)))).length;
    t.log(`${d.file}: ${ok}/${d.queries.length} queries return data; panels with every query answered ${full}/${panels.length}, with data at all ${some}/${panels.length}`);
    const okW = d.queries.filter((q) => answeredWithWaypoint.has(key(q))).length;
    const someW = panels.filter((qs) => qs.some((q) => answeredWithWaypoint.has(key(q)))).length;
    t.log(`${d.file} selecting reporter="waypoint" too (istio/istio#61815): ${okW}/${d.queries.length} queries, panels with data ${someW}/${panels.length}`);
  }
}, NEEDS);
