/**
 * `ambit analyze` shows the status ambit computes for Gateway API routes: every route's
 * parents with Accepted and ResolvedRefs in `--output json` (routeStatus), and a `status` line for
 * each parent with a False condition in text.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { node, ns, pod, service, tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function analyze(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import=tsx', 'src/cli/main.ts', 'analyze', ...args], { cwd: ROOT, timeout: 30_000 }, (err, stdout) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, stdout });
    });
  });
}

const MESH =
  ns('app') +
  ns('db') +
  node('node-1', '198.18.0.1') +
  pod('app', 'web-1', '198.19.1.1', { app: 'web' }) +
  pod('db', 'pg-1', '198.19.1.2', { app: 'pg' }) +
  service('app', 'web', '198.18.128.1', { app: 'web' }, '[{name: tcp, port: 5432}]') +
  service('db', 'pg', '198.18.128.2', { app: 'pg' }, '[{name: tcp, port: 5432}]') +
  `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: to-pg, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 5432}]
  rules: [{backendRefs: [{name: pg, namespace: db, port: 5432}]}]
`;

test('a cross-namespace backend without ReferenceGrant: ResolvedRefs=False RefNotPermitted in text and json; with the grant, both conditions True', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'mesh.yaml'), MESH);
  const text = await analyze(dir);
  t.is(text.code, 1, text.stdout);
  t.regex(text.stdout, /AMBIT_REF_NOT_PERMITTED TCPRoute app\/to-pg/);
  t.regex(text.stdout, /^status TCPRoute app\/to-pg parent Service app\/web:5432: ResolvedRefs=False RefNotPermitted: spec\.rules\[0\]\.backendRefs\[0\]: Service db\/pg is in another namespace and no ReferenceGrant in db lets TCPRoutes from app refer to it$/m);
  const json = JSON.parse((await analyze(dir, '--output', 'json')).stdout) as { routeStatus: { route: { name: string }; parents: { parentRef: { name: string }; controllerName: string; conditions: { type: string; status: string; reason: string }[] }[] }[] };
  t.deepEqual(json.routeStatus.map((r) => [r.route.name, r.parents.map((p) => [p.parentRef.name, p.controllerName, p.conditions.map((c) => `${c.type}=${c.status} ${c.reason}`)])]), [
    ['to-pg', [['web', 'ambit.dev/waypoint', ['Accepted=True Accepted', 'ResolvedRefs=False RefNotPermitted']]]],
  ]);

  writeFileSync(join(dir, 'grant.yaml'), 'apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: app-routes, namespace: db}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}]\n  to: [{group: "", kind: Service, name: pg}]\n');
  const ok = await analyze(dir);
  t.is(ok.code, 0, ok.stdout);
  t.notRegex(ok.stdout, /^status /m, 'no False condition, no status line');
  const okJson = JSON.parse((await analyze(dir, '--output', 'json')).stdout) as typeof json;
  t.deepEqual(okJson.routeStatus[0]?.parents[0]?.conditions.map((c) => `${c.type}=${c.status} ${c.reason}`), ['Accepted=True Accepted', 'ResolvedRefs=True ResolvedRefs']);
});
