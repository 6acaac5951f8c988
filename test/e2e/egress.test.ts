/**
 * Egress through the demo's waypoint with TLS origination (Istio's egress waypoint): an HTTPS
 * server (node:https, certificate for api.external.test generated in the test) runs in the demo's
 * `outside` pod, which is not in the mesh; ServiceEntry demo/api-external (MESH_EXTERNAL, STATIC to
 * that pod's address, port 80 http -> targetPort 443) is bound to the waypoint with
 * istio.io/use-waypoint, and a DestinationRule asks for tls SIMPLE against the test's certificate.
 * The client pod resolves api.external.test through its agent's DNS proxy and `curl
 * http://api.external.test/` gets the server's answer over TLS the waypoint originated. With the
 * control plane restarted under --outbound-traffic-policy REGISTRY_ONLY, an unregistered address
 * (a second server on node-2's own address: the `outside` pod's address is a known, unenrolled
 * workload in ambit's registry, so it is not unregistered) is refused while the ServiceEntry
 * host still answers.
 */
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { privilegedTest, privilegeGap } from '../helpers/privileged.js';
import { eventually } from '../helpers/eventually.js';
import { AMBIT, NEEDS } from './helpers.js';
import { DEMO_EXAMPLES, DemoMesh, REPO_ROOT } from '../../src/demo/mesh.js';
import { spawnIn } from '../../src/demo/cluster.js';
import { selfSignedTlsCertificate } from '../../src/identity/self-signed.js';

const needs = { ...NEEDS, paths: [...NEEDS.paths, join(REPO_ROOT, 'bpf/.output/dns.bpf.o'), '/usr/bin/unshare', '/usr/bin/curl'] };

let mesh: DemoMesh;
let cleanup: (() => Promise<void>) | undefined;
let server: ChildProcess | undefined;
let hostServer: ChildProcess | undefined;
let hostAddress = '';
let dir = '';
let outsideIp = '';
const seen: string[] = [];

const SERVER = `
const https = require('node:https'); const fs = require('node:fs');
const s = https.createServer({ cert: fs.readFileSync(process.argv[1]), key: fs.readFileSync(process.argv[2]) }, (req, res) => {
  console.log(JSON.stringify({ tls: req.socket.encrypted === true, servername: req.socket.servername, path: req.url }));
  res.end('external api over tls');
});
s.listen(Number(process.argv[3]), '0.0.0.0', () => console.log('ready'));
`;

/** Resolves once the server printed `ready`; its other lines go to `lines`. */
function ready(p: ChildProcess, lines: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buf = '';
    p.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'ready') resolve();
        else lines.push(line);
      }
    });
    p.once('exit', (c) => reject(new Error(`TLS server exited ${c}`)));
  });
}

if (privilegeGap(needs) === undefined) {
  test.before(async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ambit-e2e-'));
    const prefix = `x${(process.pid % 46656).toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
    dir = mkdtempSync(join(tmpdir(), 'ambit-e2e-egress-'));
    cleanup = async () => {
      server?.kill('SIGKILL');
      hostServer?.kill('SIGKILL');
      await DemoMesh.attach({ prefix, stateDir }).down().catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    };
    mesh = await DemoMesh.up({ prefix, stateDir, command: AMBIT, ambient: true, waypoint: true, agentArgs: ['--drain-ms', '1000'] });
    await mesh.waitCaptured(['client'], true);
    const cert = await selfSignedTlsCertificate({ hostnames: ['api.external.test'] });
    writeFileSync(join(dir, 'cert.pem'), cert.certPem);
    writeFileSync(join(dir, 'key.pem'), cert.keyPem, { mode: 0o600 });
    const outside = mesh.cluster.pod('outside');
    outsideIp = outside.ip;
    server = spawnIn({ netns: outside.netns }, process.execPath, ['-e', SERVER, join(dir, 'cert.pem'), join(dir, 'key.pem'), '443'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await ready(server, seen);
    // A host no object of the mesh names (node-2's own address, outside every pod): what REGISTRY_ONLY refuses.
    const node2 = mesh.cluster.node('node-2');
    hostAddress = node2.address;
    hostServer = spawnIn({ netns: node2.netns }, process.execPath, ['-e', SERVER, join(dir, 'cert.pem'), join(dir, 'key.pem'), '9443'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await ready(hostServer, []);
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${mesh.cluster.node('node-2').address}\noptions timeout:2 attempts:1\n`);
    mesh.setResource('60-waypoint.yaml', readFileSync(join(DEMO_EXAMPLES, 'try', 'waypoint.yaml'), 'utf8'));
    mesh.setResource('70-egress.yaml', `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api-external
  namespace: demo
  labels: {istio.io/use-waypoint: waypoint}
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]
  endpoints: [{address: ${outsideIp}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api-external, namespace: demo}
spec:
  host: api.external.test
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: ${join(dir, 'cert.pem')}}}
`);
    await mesh.startWaypoint();
  });
  test.after.always(async () => {
    await cleanup?.();
  });
}

/** Runs `cmd` in the client pod with the test's resolv.conf bind-mounted in a private mount namespace. */
function inClient(cmd: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return mesh.exec('client', 'unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', join(dir, 'resolv.conf'), ...cmd], 20_000);
}

async function curlExternal(): Promise<string> {
  const r = await inClient(['curl', '-s', '-S', '-m', '4', 'http://api.external.test/hello']);
  return r.code === 0 ? r.stdout : `ERR ${r.code} ${r.stderr.trim()}`;
}

privilegedTest('the client pod reaches api.external.test by name through the waypoint, which originates TLS to the outside server', async (t: ExecutionContext) => {
  let last = '';
  await eventually('api.external.test to answer through the waypoint', async () => (last = await curlExternal()) === 'external api over tls', { timeoutMs: 30_000, intervalMs: 300, detail: () => `${last}; logs in ${mesh.stateDir}/logs` });
  const saw = seen.map((l) => JSON.parse(l) as { tls: boolean; servername: string; path: string });
  t.true(saw.length > 0);
  t.true(saw.every((s) => s.tls && s.servername === 'api.external.test' && s.path === '/hello'), JSON.stringify(saw));
  const metrics = await mesh.waypointMetrics();
  t.regex(metrics, /istio_requests_total\{[^}]*destination_service="api\.external\.test"[^}]*\}/);
}, needs);

privilegedTest('under REGISTRY_ONLY an address no mesh object names is refused, the ServiceEntry host still answers', async (t: ExecutionContext) => {
  const direct = async (): Promise<string> => {
    const r = await mesh.exec('client', 'curl', ['-s', '-S', '-m', '4', '-k', `https://${hostAddress}:9443/`], 10_000);
    return r.code === 0 ? r.stdout : `ERR ${r.code} ${r.stderr.trim()}`;
  };
  t.is(await direct(), 'external api over tls', 'reachable under ALLOW_ANY (the default)');
  await mesh.stop('control');
  await mesh.startControl(['--outbound-traffic-policy', 'REGISTRY_ONLY']);
  let last = '';
  await eventually('a connection to the unregistered address to be refused', async () => (last = await direct()).startsWith('ERR'), { timeoutMs: 30_000, intervalMs: 500, detail: () => last });
  let ext = '';
  await eventually('api.external.test to answer under REGISTRY_ONLY', async () => (ext = await curlExternal()) === 'external api over tls', { timeoutMs: 30_000, intervalMs: 300, detail: () => ext });
  t.is(ext, 'external api over tls');
  t.regex(last, /^ERR /);
}, needs);
