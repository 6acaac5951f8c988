/**
 * The ingress gateway in the netns cluster: the demo mesh with its ingress pod (node-1, not
 * captured). The Gateway demo/ingress (class ambit), its HTTPRoute and a policy come from
 * examples/demo/try/ingress.yaml (what a user copies), the certificate from a kubernetes.io/tls
 * Secret the demo generates; `ambit waypoint --ingress` runs in the ingress pod. A client in the
 * `outside` pod (namespace legacy, not in the mesh) then calls https://echo.demo.example/ at the
 * ingress's address with curl: TLS is terminated with that certificate, the request is routed by
 * host to Service echo and carried over HBONE with the ingress's identity. The proof is on the
 * echo side: the agents count the connection with the ingress as source principal, and echo
 * answers; an L4 AuthorizationPolicy on echo that denies the ingress's principal stops it at
 * echo's agent.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import { DemoMesh, DEMO_INGRESS } from '../../src/demo/mesh.js';
import { AMBIT, NEEDS } from './helpers.js';

const INGRESS_ID = 'spiffe://cluster.local/ns/demo/sa/ingress';

let mesh: DemoMesh;
let ingress: { address: string; certPem: string };
let stateDir = '';
let cleanup: (() => Promise<void>) | undefined;

/** curl from the outside pod: status, then the body. */
async function outside(args: string[]): Promise<{ status: number; body: string; err: string }> {
  const r = await mesh.exec('outside', 'curl', ['-s', '-S', '-m', '4', '-w', '\n%{http_code}', ...args], 10_000);
  const nl = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(nl + 1)) || 0, body: r.stdout.slice(0, Math.max(nl, 0)), err: r.stderr.trim() };
}

const https = (path: string) => outside(['--cacert', join(stateDir, 'ingress-cert.pem'), '--resolve', `${DEMO_INGRESS.hostname}:443:${ingress.address}`, `https://${DEMO_INGRESS.hostname}${path}`]);

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-'));
    const prefix = `i${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    const dir = stateDir;
    cleanup = async () => {
      await DemoMesh.attach({ prefix, stateDir: dir }).down().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    };
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, ingress: true, agentArgs: ['--drain-ms', '1000'] });
    await mesh.waitCaptured(['echo-1', 'echo-2'], true);
    ingress = await mesh.startIngress();
  });
  test.after.always(async () => {
    await cleanup?.();
  });
}

privilegedTest('echo\'s agents apply L4 policy to the ingress identity: a DENY on its principal stops requests from outside', async (t: ExecutionContext) => {
  mesh.setResource('70-deny-ingress.yaml', `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-ingress
  namespace: demo
spec:
  selector:
    matchLabels:
      app: echo
  action: DENY
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/demo/sa/ingress"]
`);
  try {
    // Before any request: the ingress must not hold a pooled upstream connection opened earlier
    // (L4 policy decides when a connection is opened, not for connections already open).
    await eventually('both agents to hold the policy', async () => {
      for (const node of ['node-1', 'node-2']) {
        const r = await mesh.httpGet(mesh.cluster.node(node).netns, 'http://127.0.0.1:15000/config_dump');
        if (!r.body.includes('deny-ingress')) return false;
      }
      return true;
    }, { timeoutMs: 20_000, intervalMs: 300 });
    let last = { status: 0, body: '', err: '' };
    await eventually('the ingress to be refused by echo\'s agents', async () => {
      last = await https('/denied');
      return last.status >= 500;
    }, { timeoutMs: 20_000, intervalMs: 300, detail: () => `${last.status} ${last.body.slice(0, 200)}` });
    const denials: string[] = [];
    for (const node of ['node-1', 'node-2']) {
      for (const l of (await mesh.agentMetrics(node)).split('\n')) if (l.startsWith('ambit_agent_denials_total{') && l.includes('deny-ingress')) denials.push(l);
    }
    t.true(denials.length > 0, 'an agent counted the denial by demo/deny-ingress');
  } finally {
    mesh.setResource('70-deny-ingress.yaml', undefined);
  }
  let again = 0;
  await eventually('requests to flow again once the policy is gone', async () => (again = (await https('/again')).status) === 200, { timeoutMs: 20_000, intervalMs: 300 });
  t.is(again, 200);
}, NEEDS);

privilegedTest('a request from outside the mesh reaches echo through the ingress: TLS terminated, routed by host, over HBONE as the gateway identity', async (t: ExecutionContext) => {
  let last = { status: 0, body: '', err: '' };
  await eventually('the ingress to answer https://echo.demo.example/ with 200', async () => {
    last = await https('/from-outside');
    return last.status === 200;
  }, { timeoutMs: 30_000, intervalMs: 300, detail: () => `${last.status} ${last.err} ${last.body.slice(0, 200)}` });
  const seen = JSON.parse(last.body) as { pod: string; path?: string; url?: string };
  t.true(['echo-1', 'echo-2'].includes(seen.pod), `answered by ${seen.pod}`);

  // Each echo pod's agent saw the ingress's identity on the HBONE connection it accepted.
  for (let i = 0; i < 4; i++) t.is((await https(`/n${i}`)).status, 200);
  const principals: string[] = [];
  await eventually('an agent to count an inbound HBONE connection from the ingress identity', async () => {
    principals.length = 0;
    for (const node of ['node-1', 'node-2']) {
      const m = await mesh.agentMetrics(node);
      for (const l of m.split('\n')) {
        if (l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="destination"')) {
          principals.push(`${/source_principal="([^"]*)"/.exec(l)?.[1] ?? '?'} -> ${/destination_workload="([^"]*)"/.exec(l)?.[1] ?? '?'}`);
        }
      }
    }
    return principals.some((p) => p.startsWith(`${INGRESS_ID} -> echo`));
  }, { timeoutMs: 10_000, intervalMs: 300, detail: () => principals.join(', ') });
  t.true(principals.some((p) => p.startsWith(`${INGRESS_ID} -> echo`)));
}, NEEDS);

privilegedTest('the ingress routes plain HTTP by Host, refuses unknown hosts, and applies its AuthorizationPolicy', async (t: ExecutionContext) => {
  const plain = await outside(['-H', `host: ${DEMO_INGRESS.hostname}`, `http://${ingress.address}/plain`]);
  t.is(plain.status, 200, plain.err);
  const unknown = await outside(['-H', 'host: nobody.example', `http://${ingress.address}/`]);
  t.is(unknown.status, 404);
  const denied = await https('/admin/users');
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');
}, NEEDS);
