/**
 * `ambit why` against the bookinfo example mesh (examples/bookinfo: two namespaces, a waypoint,
 * VirtualServices, L4 and L7 AuthorizationPolicies), compiled and projected as the control plane
 * serves it: L7 allow and deny at the waypoint with the deciding policy and rule, the route that
 * matches, the waypoint's hop to the endpoints, L4 decisions, and clear errors for unknown names.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { viewFromFolder } from '../../../src/cli/lib/mesh-view.js';
import { explain } from '../../../src/cli/lib/why.js';
import { splitDestination } from '../../../src/cli/why.js';

const execFileP = promisify(execFile);
const BOOKINFO = join(REPO_ROOT, 'examples', 'bookinfo');
const view = await viewFromFolder(BOOKINFO);

test('L7 allow at the waypoint: the deciding policy and rule, then the route that matches', (t) => {
  const r = explain(view, { source: 'frontend/productpage-v1', destination: 'reviews.bookinfo', port: 9080, path: '/reviews/1' });
  t.like(r, { verdict: 'allow', layer: 'L7', decidedBy: 'bookinfo/reviews-read-only', mtls: true });
  t.true(r.steps.some((s) => s.includes('tunnels to waypoint bookinfo/waypoint')));
  t.true(r.steps.some((s) => s.startsWith('route: VirtualService bookinfo/reviews')));
});

test('L7 deny at the waypoint: a method the ALLOW policy does not grant', (t) => {
  const r = explain(view, { source: 'frontend/productpage-v1', destination: 'reviews.bookinfo.svc.cluster.local', port: 9080, method: 'DELETE', path: '/reviews/1' });
  t.like(r, { verdict: 'deny', layer: 'L7', mtls: true });
  t.true(r.steps.some((s) => s.includes('L7 authorization at waypoint bookinfo/waypoint for DELETE /reviews/1: DENY')), r.steps.join('\n'));
});

test('the waypoint\'s own hop to the endpoints is checked at L4 with the waypoint\'s identity', (t) => {
  const r = explain(view, { source: 'frontend/productpage-v1', destination: 'ratings.bookinfo', port: 9080, path: '/ratings/1' });
  t.true(r.steps.some((s) => s.includes('over HBONE as spiffe://cluster.local/ns/bookinfo/sa/waypoint')));
});

test('errors name the cause: unknown pod, ambiguous port', (t) => {
  const e1 = t.throws(() => explain(view, { source: 'nope', destination: 'reviews.bookinfo', port: 9080 }));
  t.is((e1 as { code?: string }).code, 'AMBIT_ERR_CLI_NOT_FOUND');
  t.regex(e1?.message ?? '', /no pod 'nope'.*frontend\/productpage-v1/);
  const e2 = t.throws(() => explain(view, { source: 'frontend/productpage-v1', destination: 'nowhere.bookinfo', port: 1 }));
  t.is((e2 as { code?: string }).code, 'AMBIT_ERR_CLI_NOT_FOUND');
});

test('DST[:PORT] parsing', (t) => {
  t.deepEqual(splitDestination('reviews.bookinfo:9080'), { destination: 'reviews.bookinfo', port: 9080 });
  t.deepEqual(splitDestination('demo/echo-2'), { destination: 'demo/echo-2', port: undefined });
  t.deepEqual(splitDestination('[fd00::1]:80'), { destination: 'fd00::1', port: 80 });
  t.throws(() => splitDestination('x:70000'));
});

test('the command prints numbered steps, and a folder with errors is refused with file:line', async (t) => {
  const run = (args: string[]) => execFileP(process.execPath, ['--import=tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'why', ...args], { cwd: REPO_ROOT, timeout: 60_000 }).then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => e);
  const ok = await run(['--config', BOOKINFO, 'frontend/productpage-v1', 'reviews.bookinfo:9080', '--path', '/reviews/1']);
  t.is(ok.code, 0);
  t.regex(ok.stdout, /^ 1\. source frontend\/productpage-v1/m);
  t.regex(ok.stdout, /verdict: ALLOW \(decided by bookinfo\/reviews-read-only, L7\)/);
  const bad = await run(['--config', join(REPO_ROOT, 'test', 'fixtures', 'model'), 'a', 'b:1']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /AMBIT_ERR_CLI_CONFIG: .*error\(s\); the control plane would refuse it/);
  const usage = await run(['only-one']);
  t.is(usage.code, 2);
});
