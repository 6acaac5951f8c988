/**
 * The demo's waypoint in the path of Service echo, as a user sets it up: declare the waypoint
 * (and its routes and L7 policy) from examples/demo/try/waypoint.yaml, run `ambit waypoint` in its
 * pod, bind the Service with ambit.dev/use-waypoint, and wait until the client's requests to the
 * echo VIP come back through it (the waypoint's routes set `x-ambit-route`). Needs a DemoMesh
 * started with `waypoint: true`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_EXAMPLES, ECHO_VIP, type DemoMesh } from '../../src/demo/mesh.js';
import { eventually } from '../helpers/eventually.js';

export async function routeEchoThroughWaypoint(mesh: DemoMesh, timeoutMs = 30_000): Promise<void> {
  mesh.setResource('60-waypoint.yaml', readFileSync(join(DEMO_EXAMPLES, 'try', 'waypoint.yaml'), 'utf8'));
  await mesh.startWaypoint();
  mesh.bindWaypoint('echo', 'waypoint');
  // The agents and the waypoint pick the binding up from their next push.
  let last = '';
  await eventually('requests to the echo VIP to go through the waypoint', async () => {
    const r = await mesh.exec('client', 'curl', ['-s', '-S', '-m', '4', '-i', `http://${ECHO_VIP}/`], 10_000);
    last = r.code === 0 ? r.stdout.slice(0, r.stdout.indexOf('\r\n\r\n')) : `curl exit ${r.code}: ${r.stderr.trim()}`;
    return /^x-ambit-route:/im.test(last);
  }, { timeoutMs, intervalMs: 300, detail: () => `${last}; logs in ${mesh.stateDir}/logs` });
}
