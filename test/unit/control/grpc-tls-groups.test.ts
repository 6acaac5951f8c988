import test from 'ava';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '../../../src/identity/ca.js';
import { ServingCertificate } from '../../../src/control/serving-cert.js';
import { discoveryServiceDefinition } from '../../../src/control/discovery-service.js';
import { DiscoveryClient } from '../../../src/discovery/discovery-client.js';
import { negotiatedGroup } from '../../../src/tunnel/tls-groups.js';
import { wireTap } from '../../helpers/tls-wire.js';
import { eventually } from '../../helpers/eventually.js';
import { MemorySource, startControlPlane, tempDir, TOKEN, workload } from '../../integration/control/fixtures.js';

const X25519MLKEM768 = 0x11ec;
const X25519 = 0x001d;

/** A control plane offering `serverGroups`, and an agent's discovery client offering `clientGroups`, joined through a wire tap. */
async function link(t: { teardown: (f: () => Promise<void> | void) => void }, serverGroups?: string[], clientGroups?: string[]) {
  const tmp = tempDir('grpc-groups');
  const cp = await startControlPlane(new MemorySource([workload('web-1', 'node-a')]), tmp.dir, serverGroups !== undefined ? { tlsGroups: serverGroups } : {});
  const tap = await wireTap({ host: '127.0.0.1', port: cp.ports.tls });
  const client = new DiscoveryClient({
    address: `127.0.0.1:${tap.port}`, trustBundlePem: cp.trustBundlePem, kind: 'agent', name: 'node-a', token: TOKEN,
    ...(clientGroups !== undefined ? { tlsGroups: clientGroups } : {}),
  });
  t.teardown(async () => { await client.close(); await cp.stop(); await tap.close(); tmp.cleanup(); });
  await client.start();
  await client.whenReady();
  return { client, tap };
}

test('the agent\'s control-plane link negotiates X25519MLKEM768 with the control plane', async (t) => {
  const { client, tap } = await link(t);
  t.true(client.view.all('WORKLOAD').has('default/web-1'), 'the view arrived over that link');
  const flight = tap.flight(0);
  t.deepEqual(flight.clientHellos.map((h) => h.supportedGroups), [[X25519MLKEM768, X25519]]);
  t.deepEqual(flight.serverHellos, [{ retry: false, group: X25519MLKEM768 }]);
});

test('a classical-only subscriber still gets its view, over X25519', async (t) => {
  const { client, tap } = await link(t, undefined, ['X25519']);
  t.true(client.view.all('WORKLOAD').has('default/web-1'));
  t.deepEqual(tap.flight(0).serverHellos, [{ retry: false, group: X25519 }]);
});

test('a control plane told --tls-groups X25519 serves ambit subscribers over X25519 at once (they sent an X25519 key share too)', async (t) => {
  const { client, tap } = await link(t, ['X25519']);
  t.true(client.view.all('WORKLOAD').has('default/web-1'));
  t.deepEqual(tap.flight(0).serverHellos, [{ retry: false, group: X25519 }]);
});

test('a renewed serving certificate keeps the configured groups on the gRPC port', async (t) => {
  const ca = await CertificateAuthority.open({ minLifetimeSeconds: 1 });
  const serving = new ServingCertificate({ signer: ca, identity: 'spiffe://cluster.local/ns/ambit-system/sa/ambit-control', lifetimeSeconds: 2, tlsGroups: ['X25519'] });
  await serving.start();
  const first = serving.chainPem[0];
  const server = new grpc.Server();
  server.addService(discoveryServiceDefinition(), {});
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', serving.serverCredentials(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => { serving.close(); server.forceShutdown(); });
  const groupNow = () => new Promise<{ group: string; serial: string }>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false, ecdhCurve: 'X25519MLKEM768:X25519' }, () => {
      resolve({ group: negotiatedGroup(s), serial: s.getPeerX509Certificate()?.serialNumber ?? '' });
      s.destroy();
    });
    s.once('error', reject);
  });
  const before = await groupNow();
  t.is(before.group, 'X25519');
  await eventually('the serving certificate to be renewed', () => serving.chainPem[0] !== first, { timeoutMs: 10_000, intervalMs: 50 });
  const after = await groupNow();
  t.not(after.serial, before.serial, 'new handshakes present the renewed certificate');
  t.is(after.group, 'X25519', 'and still offer only the configured group');
});
