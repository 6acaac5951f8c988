/**
 * GRPCRoute in the netns cluster: grpc-js servers in the demo's echo pods (echo-1 answers v1,
 * echo-2 answers v2), Services grpc (echo-2, bound to the demo waypoint), grpc-v1 and grpc-v2
 * (one pod each), and a GRPCRoute on grpc sending 80% of /echo.Echo/Say to grpc-v1 and 20% to
 * grpc-v2. A grpc-js client in the client pod calls the grpc VIP: its agent sends the calls over
 * HBONE to the waypoint, which splits them by the route and tunnels on to the chosen pod; the
 * answers (and the trailer each backend sets) come back through the same path.
 */
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { DemoMesh, REPO_ROOT } from '../../src/demo/mesh.js';
import { eventually } from '../helpers/eventually.js';
import { AMBIT, NEEDS } from './helpers.js';
import { routeEchoThroughWaypoint } from './demo-waypoint.js';

const GRPC_VIP = '198.18.128.110';
const GRPC_PORT = 9090;
const FIXTURE = join(REPO_ROOT, 'test/e2e/fixtures/grpc-echo.ts');
const NODE = [process.execPath, '--import=tsx', FIXTURE];

const service = (name: string, vip: string, selector: string, bound: boolean) => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: demo
${bound ? '  labels:\n    ambit.dev/use-waypoint: waypoint\n' : ''}spec:
  clusterIP: ${vip}
  selector: ${selector}
  ports:
    - name: grpc
      port: ${GRPC_PORT}
      targetPort: ${GRPC_PORT}
---
`;

const GRPC_MESH =
  // Without the route, calls to grpc reach echo-2 only, so any v1 answer shows the route applied.
  service('grpc', GRPC_VIP, '{app: echo, version: v2}', true) +
  service('grpc-v1', '198.18.128.111', '{app: echo, version: v1}', false) +
  service('grpc-v2', '198.18.128.112', '{app: echo, version: v2}', false) +
  `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: grpc-split
  namespace: demo
spec:
  parentRefs: [{group: "", kind: Service, name: grpc, port: ${GRPC_PORT}}]
  rules:
    - matches: [{method: {service: echo.Echo, method: Say}}]
      backendRefs:
        - {name: grpc-v1, port: ${GRPC_PORT}, weight: 80}
        - {name: grpc-v2, port: ${GRPC_PORT}, weight: 20}
`;

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
const servers: ChildProcess[] = [];

/** Calls Say `n` times from the client pod; the answers counted. */
async function calls(n: number): Promise<Record<string, number>> {
  const r = await mesh.exec('client', NODE[0] as string, [...NODE.slice(1), 'client', `${GRPC_VIP}:${GRPC_PORT}`, String(n)], 60_000);
  if (r.code !== 0) return { [`client exit ${r.code}: ${r.stderr.trim().slice(0, 200)}`]: n };
  return JSON.parse(r.stdout) as Record<string, number>;
}

if (privilegeGap(NEEDS) === undefined) {
  test.before(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-'));
    const prefix = `g${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    cleanup = async () => {
      for (const s of servers) if (s.exitCode === null) s.kill('SIGTERM');
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    };
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, waypoint: true, agentArgs: ['--drain-ms', '1000'] });
    await mesh.waitCaptured(['client', 'echo-1', 'echo-2'], true);
    for (const [pod, name] of [['echo-1', 'v1'], ['echo-2', 'v2']] as const) {
      const p = mesh.spawnInPod(pod, NODE[0] as string, [...NODE.slice(1), name, String(GRPC_PORT)]);
      servers.push(p);
      await new Promise<void>((resolve, reject) => {
        p.stdout?.on('data', (c: Buffer) => { if (c.toString().includes('ready')) resolve(); });
        p.once('exit', (code) => reject(new Error(`grpc-echo in ${pod} exited with ${code}`)));
      });
    }
    // The demo waypoint in the path of echo (as waypoint.test.ts does), then the gRPC Services and route.
    await routeEchoThroughWaypoint(mesh);
    mesh.setResource('70-grpc.yaml', GRPC_MESH);
  });
  test.after.always(async () => {
    await cleanup?.();
  });
}

privilegedTest('a GRPCRoute splits the client pod\'s gRPC calls 80/20 at the waypoint, answers and trailers coming back through it', async (t: ExecutionContext) => {
  let last: Record<string, number> = {};
  // Until the waypoint has the route, calls go to the grpc Service's own pod (echo-2: v2).
  await eventually('the GRPCRoute to take effect at the waypoint', async () => {
    last = await calls(20);
    return (last['v1'] ?? 0) > 0 && (last['v1'] ?? 0) + (last['v2'] ?? 0) === 20;
  }, { timeoutMs: 40_000, intervalMs: 500, detail: () => `last counts ${JSON.stringify(last)}; logs in ${mesh.stateDir}/logs` });
  const counts = await calls(200);
  t.is((counts['v1'] ?? 0) + (counts['v2'] ?? 0), 200, JSON.stringify(counts));
  // 80% of 200 is 160; binomial(200, 0.8) is within ±28 of it with probability > 0.9999.
  t.true((counts['v1'] ?? 0) >= 132 && (counts['v1'] ?? 0) <= 188, JSON.stringify(counts));
  t.true((counts['v2'] ?? 0) > 0, 'grpc-v2 gets its share');
  const metrics = await mesh.waypointMetrics();
  t.true(metrics.split('\n').some((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="waypoint"') && /destination_service_name="grpc(-v1|-v2)?"/.test(l) && l.includes('request_protocol="grpc"')), 'the waypoint counted the gRPC calls it routed');
});
