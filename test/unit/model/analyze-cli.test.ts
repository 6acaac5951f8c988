/**
 * `ambit analyze` as an operator runs it: a child process, real files, exit codes and output.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ambit(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import=tsx', 'src/cli/main.ts', 'analyze', ...args], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

test('examples/bookinfo/: clean, exit 0, summary line', async (t) => {
  const r = await ambit('examples/bookinfo/');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^0 errors, 0 warnings, 0 infos in 6 files \(34 resources\)\n$/);
});

test('errors: exit 1, file:line:col severity code message, sorted by file and line', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'b.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n    - port: 99999\n');
  writeFileSync(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  lables: {}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\nstatus: {podIP: nope}\n');
  const r = await ambit(dir);
  t.is(r.code, 1);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 4);
  t.regex(lines[0] ?? '', new RegExp(`^${dir}/a\\.yaml:5:3 error AMBIT_SCHEMA_UNKNOWN_FIELD Namespace n: unknown field "lables" \\(did you mean "labels"\\?\\): the API does not define it, so the resource is refused .*--allow-unknown-fields.* \\(at metadata\\.lables\\)$`));
  t.regex(lines[1] ?? '', /a\.yaml:11:17 error AMBIT_SCHEMA_FORMAT Pod default\/p: "nope" is not an IP address/);
  t.regex(lines[2] ?? '', /b\.yaml:6:13 error AMBIT_SCHEMA_RANGE Service default\/s: 99999 is out of range \(allowed 1\.\.65535\)/);
  t.is(lines[3], '3 errors, 0 warnings, 0 infos in 2 files (0 resources)');
  t.notRegex(r.stdout + r.stderr, /\n\s+at .*\.ts:\d+/, 'no stack trace');
});

test('warnings only: exit 0', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'x.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n');
  const r = await ambit(dir);
  t.is(r.code, 0);
  t.regex(r.stdout, /warning AMBIT_OBJECT_UNKNOWN_KIND/);
});

test('--output json carries positions, paths and a summary', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'x.yaml'), 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  mtls:\n    mode: Strict\n');
  const r = await ambit(dir, '--output', 'json');
  t.is(r.code, 1);
  const out = JSON.parse(r.stdout) as { diagnostics: { code: string; line: number; column: number; path: string; severity: string }[]; summary: { error: number; files: number } };
  t.like(out.diagnostics[0], { code: 'AMBIT_SCHEMA_ENUM', line: 6, column: 11, path: 'spec.mtls.mode', severity: 'error' });
  t.like(out.summary, { error: 1, files: 1 });
});

test('unreadable input: exit 2 with a one-line reason', async (t) => {
  const r = await ambit('examples/', '/no/such/dir');
  t.is(r.code, 2);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^ambit analyze: cannot read \/no\/such\/dir: no such file or directory\n$/);
});

test('usage: --help exits 0, no path or a bad option exits 2', async (t) => {
  const help = await ambit('--help');
  t.is(help.code, 0);
  t.regex(help.stdout, /usage: ambit analyze PATH\.\.\./);
  t.regex(help.stdout, /--trust-domain/);
  const none = await ambit();
  t.is(none.code, 2);
  t.regex(none.stderr, /no PATH given/);
  const bad = await ambit('--frobnicate', 'examples/');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown option --frobnicate/);
  const badOut = await ambit('--output', 'xml', 'examples/');
  t.is(badOut.code, 2);
});

test('--codes lists every diagnostic code', async (t) => {
  const r = await ambit('--codes');
  t.is(r.code, 0);
  t.regex(r.stdout, /AMBIT_REF_UNKNOWN_WAYPOINT\s+error/);
  t.regex(r.stdout, /AMBIT_YAML_ALIAS_LIMIT/);
});

test('--trust-domain and --root-namespace are accepted', async (t) => {
  const r = await ambit('--trust-domain', 'example.org', '--root-namespace=istio-system', 'examples/');
  t.is(r.code, 0, r.stderr);
});

const CIRCUIT_BREAKER_TYPO = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    circuitBreaker: {maxConnections: 10}
---
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {clusterIP: 198.18.128.12, ports: [{name: http, port: 9080}]}
`;

test('an unknown field is an error (exit 1) naming file, line and field; --allow-unknown-fields makes it a warning (exit 0)', async (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'dr.yaml');
  writeFileSync(f, CIRCUIT_BREAKER_TYPO);
  const strict = await ambit(f);
  t.is(strict.code, 1);
  t.regex(strict.stdout, new RegExp(`^${f}:7:5 error AMBIT_SCHEMA_UNKNOWN_FIELD DestinationRule bookinfo/reviews: unknown field "circuitBreaker".* \\(at spec\\.trafficPolicy\\.circuitBreaker\\)\\n1 error, 0 warnings, 0 infos in 1 file \\(2 resources\\)\\n$`));
  const lax = await ambit('--allow-unknown-fields', f);
  t.is(lax.code, 0, lax.stdout);
  t.regex(lax.stdout, new RegExp(`^${f}:7:5 warning AMBIT_SCHEMA_UNKNOWN_FIELD .*unknown field "circuitBreaker"; it is ignored \\(at spec\\.trafficPolicy\\.circuitBreaker\\)\\n`));
  t.regex(lax.stdout, /0 errors, 1 warning, 0 infos in 1 file \(3 resources\)\n$/);
});

test('Istio YAML with kinds ambit does not model: one warning per kind, exit 0', async (t) => {
  const dir = tempDir(t);
  const se = (n: string): string => `apiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\nmetadata: {name: ${n}}\nspec: {address: ${n}.example.com}\n---\n`;
  writeFileSync(join(dir, 'external.yaml'), se('a') + se('b') + se('c') + 'apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: ingress}\nspec: {concurrency: 2}\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: mesh-default}\nspec: {}\n');
  const r = await ambit(dir);
  t.is(r.code, 0, r.stdout);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 4);
  t.regex(lines[0] ?? '', /external\.yaml:2:7 warning AMBIT_OBJECT_UNKNOWN_KIND WorkloadEntry \(networking\.istio\.io\) is not modelled by ambit, so these objects are ignored: .* \(3 objects; this is the first\) \(at kind\)$/);
  t.regex(lines[1] ?? '', /external\.yaml:17:7 warning AMBIT_OBJECT_UNKNOWN_KIND ProxyConfig \(networking\.istio\.io\) .*Envoy/);
  t.regex(lines[2] ?? '', /external\.yaml:22:7 warning AMBIT_OBJECT_UNKNOWN_KIND WasmPlugin/);
  t.is(lines[3], '0 errors, 3 warnings, 0 infos in 1 file (0 resources)');
});

test('accepted Istio fields analyze clean: relative weights, bare serviceAccounts, trustDomains, a delegate VirtualService', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'istio.yaml'), `apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {clusterIP: 198.18.128.12, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /v2}}]
    delegate: {name: reviews-v2}
  - route:
    - {destination: {host: reviews}, weight: 1}
    - {destination: {host: reviews}, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-v2, namespace: bookinfo}
spec:
  http:
  - route: [{destination: {host: reviews}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: bookinfo}
spec:
  rules:
  - from: [{source: {serviceAccounts: [productpage]}}]
  - from: [{source: {trustDomains: [partner.example]}}]
`);
  const r = await ambit(dir);
  t.is(r.code, 0, r.stdout);
  t.notRegex(r.stdout, /UNKNOWN_FIELD|WEIGHT_SUM|REQUIRED|EMPTY_SOURCE|INVALID_SERVICE_ACCOUNT/);
  t.regex(r.stdout, /warning AMBIT_SCHEMA_UNIMPLEMENTED VirtualService bookinfo\/reviews: "delegate" is not implemented/);
});

test('--compat-table prints docs/compatibility.md', async (t) => {
  const r = await ambit('--compat-table');
  t.is(r.code, 0);
  t.is(r.stdout, readFileSync(join(ROOT, 'docs/compatibility.md'), 'utf8'));
});
