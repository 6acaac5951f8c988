import { pino } from 'pino';
import { Registry } from 'prom-client';
import { WaypointConfig } from '/work/main/src/waypoint/config.js';
import { WaypointProxy } from '/work/main/src/waypoint/proxy.js';
import { StreamDispatcher } from '/work/main/src/waypoint/dispatch.js';
import { AccessLog } from '/work/main/src/waypoint/access-log.js';
import { duplexPair } from '/work/main/src/waypoint/duplex-pair.js';
import type { Duplex } from 'node:stream';
const VIP = '198.18.128.10';
const config = new WaypointConfig({
  bound: [{ service: { key: 'bench/backend', name: 'backend', namespace: 'bench', hostname: 'backend.bench.svc.cluster.local', vips: [VIP], labels: {},
      ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP', appProtocol: undefined }],
      endpoints: [{ workload: 'bench/backend-0', ip: '127.0.0.1', node: 'n1', ready: true, enrolled: false, ports: { 80: 8080 }, labels: {} }] } as any,
    routes: [], destinationPolicy: undefined, authorization: [], requestAuthentication: [], rateLimits: [] }],
  workloads: [{ key: 'bench/backend-0', name: 'backend-0', namespace: 'bench', identity: 'spiffe://x', labels: {}, enrolled: false }],
});
const RESP = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
const connector = { async connect(): Promise<Duplex> { const [a, b] = duplexPair(); b.on('data', (c: Buffer) => { if (c.includes('\r\n\r\n')) b.write(RESP); }); return a; } };
const logger = pino({ level: 'warn' });
const proxy = new WaypointProxy({ config, connector, logger, registry: process.env.NOMETRICS ? undefined : new Registry(), accessLog: new AccessLog({ disabled: true }) });
const dispatcher = new StreamDispatcher(proxy, logger, {});
const N = Number(process.env.N ?? 50000);
const CONC = 32;
const REQ = Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n');
let done = 0;
const t0 = process.hrtime.bigint();
await new Promise<void>((resolve) => {
  for (let i = 0; i < CONC; i++) {
    const [client, server] = duplexPair();
    dispatcher.serve(server, { peerIdentity: 'spiffe://cluster.local/ns/bench/sa/client', sourceIp: '127.0.0.1', sourcePort: 1000 + i, destinationIp: VIP, destinationPort: 80 });
    let buf = '';
    client.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const i2 = buf.indexOf('\r\n\r\n');
      if (i2 !== -1 && buf.length >= i2 + 6) {
        buf = '';
        if (++done >= N) { resolve(); return; }
        client.write(REQ);
      }
    });
    client.write(REQ);
  }
});
const dt = Number(process.hrtime.bigint() - t0) / 1e3;
console.log(`${N} requests, ${(dt / N).toFixed(1)} us/req, ${(N / dt * 1e6).toFixed(0)} req/s`);
process.exit(0);
