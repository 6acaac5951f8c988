/**
 * The DNS proxy's answering logic over real UDP sockets on loopback: a client socket sends
 * dns-packet encoded queries to the proxy's socket, and a fake upstream resolver (a real UDP
 * server) answers what the proxy forwards. The eBPF capture in front of it is covered by
 * test/integration/ebpf/dns.test.ts.
 */
import test from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket } from 'dns-packet';
import { Registry } from 'prom-client';
import { DnsProxy, type DnsUpstream } from '../../../src/agent/dns-proxy.js';
import { DnsNameTable } from '../../../src/agent/dns-names.js';
import { createDnsMetrics } from '../../../src/agent/dns-metrics.js';

/** dns-packet decodes rcode (and per-answer ttl) though its types omit them. */
type Reply = Omit<DecodedPacket, 'answers'> & { rcode: string; answers?: { type: string; name: string; ttl: number; data: unknown }[] };
const decode = (b: Buffer) => dnsPacket.decode(b) as Reply;

const VIP_WEB = '198.18.128.10';

const SERVICES = [
  { name: 'web', namespace: 'shop', hostname: 'web.shop.svc.cluster.local', vip: '198.18.128.10', vips: ['198.18.128.10'] },
  { name: 'dual', namespace: 'shop', hostname: 'dual.shop.svc.cluster.local', vip: '198.18.128.11', vips: ['198.18.128.11', 'fd00::11'] },
  { name: 'headless', namespace: 'shop', hostname: 'headless.shop.svc.cluster.local', vip: undefined, vips: [] },
];

interface Rig {
  proxy: DnsProxy;
  registry: Registry;
  query(packet: Buffer): Promise<Buffer | null>;
  ask(name: string, type: 'A' | 'AAAA' | 'TXT'): Promise<Reply>;
  upstreamQueries: Buffer[];
  setUpstream(u: DnsUpstream | null): void;
  close(): Promise<void>;
}

/** Proxy + fake upstream on 127.0.0.1; the upstream answers `example.org A 198.18.5.5` and TXT, and ignores `silent.example`. */
async function rig(opts: { forwardTimeoutMs?: number } = {}): Promise<Rig> {
  const registry = new Registry();
  const proxy = new DnsProxy({ table: DnsNameTable.fromServices(SERVICES), metrics: createDnsMetrics(registry), forwardTimeoutMs: opts.forwardTimeoutMs ?? 1000 });
  const upstreamQueries: Buffer[] = [];
  const upstream = dgram.createSocket('udp4');
  upstream.on('message', (msg, rinfo) => {
    upstreamQueries.push(msg);
    const q = dnsPacket.decode(msg);
    const question = q.questions![0]!;
    if (question.name === 'silent.example') return;
    const answers = question.type === 'TXT'
      ? [{ type: 'TXT' as const, name: question.name, ttl: 77, data: 'from-upstream' }]
      : question.type === 'A' && question.name === 'example.org' ? [{ type: 'A' as const, name: question.name, ttl: 77, data: '198.18.5.5' }] : [];
    upstream.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (answers.length === 0 ? 3 : 0), questions: [question], answers }), rinfo.port, rinfo.address);
  });
  upstream.bind(0, '127.0.0.1');
  await once(upstream, 'listening');
  let up: DnsUpstream | null = { address: '127.0.0.1', port: (upstream.address() as AddressInfo).port };
  const server = dgram.createSocket('udp4');
  server.bind(0, '127.0.0.1');
  await once(server, 'listening');
  proxy.serve(server, { id: 'shop/client', namespace: 'shop', upstream: () => up });
  const client = dgram.createSocket('udp4');
  client.bind(0, '127.0.0.1');
  await once(client, 'listening');
  const serverPort = (server.address() as AddressInfo).port;
  const query = (packet: Buffer) => new Promise<Buffer | null>((resolve) => {
    const timer = setTimeout(() => { client.off('message', onMessage); resolve(null); }, 1500);
    const onMessage = (msg: Buffer) => { clearTimeout(timer); client.off('message', onMessage); resolve(msg); };
    client.on('message', onMessage);
    client.send(packet, serverPort, '127.0.0.1');
  });
  let nextId = 1;
  const ask = async (name: string, type: 'A' | 'AAAA' | 'TXT') => {
    const reply = await query(dnsPacket.encode({ type: 'query', id: nextId++, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] }));
    if (reply === null) throw new Error(`no reply to ${name} ${type}`);
    return decode(reply);
  };
  return {
    proxy, registry, query, ask, upstreamQueries,
    setUpstream: (u) => { up = u; },
    close: async () => { proxy.close(); for (const s of [client, server, upstream]) s.close(); },
  };
}

async function results(registry: Registry): Promise<Record<string, number>> {
  const m = await registry.getSingleMetric('ambit_dns_requests_total')!.get();
  return Object.fromEntries(m.values.map((v) => [String(v.labels['result']), v.value]));
}

test('A for a service FQDN is answered with its VIP, TTL 30 s, authoritative, echoing the question', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const p = await r.ask('web.shop.svc.cluster.local', 'A');
  t.is(p.rcode, 'NOERROR');
  t.true(p.flag_aa);
  t.true(p.flag_rd);
  t.deepEqual(p.questions, [{ name: 'web.shop.svc.cluster.local', type: 'A', class: 'IN' }]);
  t.deepEqual(p.answers?.map((a) => [a.type, a.name, a.ttl, (a as { data: string }).data]), [['A', 'web.shop.svc.cluster.local', 30, '198.18.128.10']]);
  t.is(r.upstreamQueries.length, 0);
});

test('short forms, mixed case and the trailing dot resolve to the same service', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  for (const name of ['web.shop.svc', 'web.shop', 'web', 'WEB.Shop.SVC.cluster.LOCAL', 'web.shop.svc.cluster.local.']) {
    const p = await r.ask(name, 'A');
    t.deepEqual(p.answers?.map((a) => (a as { data: string }).data), ['198.18.128.10'], name);
  }
  t.is(r.upstreamQueries.length, 0);
});

test('AAAA of an IPv4-only service is an empty NOERROR; a dual-stack one gets its IPv6 VIP', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const v4only = await r.ask('web.shop.svc.cluster.local', 'AAAA');
  t.is(v4only.rcode, 'NOERROR');
  t.deepEqual(v4only.answers, []);
  const dual = await r.ask('dual.shop.svc.cluster.local', 'AAAA');
  t.deepEqual(dual.answers?.map((a) => (a as { data: string }).data), ['fd00::11']);
  t.is(r.upstreamQueries.length, 0);
  t.deepEqual(await results(r.registry), { answered: 2 });
});

test('unknown names, other types and headless services are forwarded and the upstream answer relayed unchanged', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const query = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'example.org', class: 'IN' }] });
  const reply = await r.query(query);
  t.truthy(reply);
  const p = decode(reply!);
  t.is(p.id, 4242);
  t.deepEqual(p.answers?.map((a) => [a.ttl, (a as { data: string }).data]), [[77, '198.18.5.5']]);
  t.deepEqual(r.upstreamQueries[0], query, 'the query reaches the upstream byte for byte');
  const txt = await r.ask('web.shop.svc.cluster.local', 'TXT');
  t.deepEqual(txt.answers?.map((a) => (a as { data: Buffer[] }).data.map(String)), [['from-upstream']]);
  const headless = await r.ask('headless.shop.svc.cluster.local', 'A');
  t.is(headless.rcode, 'NXDOMAIN', 'the upstream\'s answer');
  const other = await r.ask('web.other', 'A');
  t.is(other.rcode, 'NXDOMAIN', 'a service of another namespace needs its namespace');
  t.is(r.upstreamQueries.length, 4);
  t.deepEqual(await results(r.registry), { forwarded: 4 });
});

test('a forward timeout answers SERVFAIL, as does an unknown upstream', async (t) => {
  const r = await rig({ forwardTimeoutMs: 200 });
  t.teardown(r.close);
  const p = await r.ask('silent.example', 'A');
  t.is(p.rcode, 'SERVFAIL');
  t.deepEqual(p.questions?.map((q) => q.name), ['silent.example']);
  r.setUpstream(null);
  t.is((await r.ask('example.org', 'A')).rcode, 'SERVFAIL');
  t.deepEqual(await results(r.registry), { failed: 2 });
});

test('a pod socket closed while its query is forwarded (pod released) drops the late reply quietly', async (t) => {
  const r = await rig({ forwardTimeoutMs: 200 });
  t.teardown(r.close);
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  r.proxy.serve(socket, { id: 'shop/released', upstream: () => ({ address: '127.0.0.1', port: 9 }) });
  const client = dgram.createSocket('udp4');
  t.teardown(() => client.close());
  client.send(dnsPacket.encode({ type: 'query', id: 5, questions: [{ type: 'A', name: 'silent.example', class: 'IN' }] }), (socket.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.close();
  await new Promise((resolve) => setTimeout(resolve, 400)); // past the forward timeout: the SERVFAIL has nowhere to go
  const ok = await r.ask('web.shop.svc.cluster.local', 'A');
  t.deepEqual(ok.answers?.map((a) => a.data), [VIP_WEB], 'the proxy (and the process) carry on');
});

test('malformed input gets FORMERR or is dropped, and the proxy keeps answering', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  // A header claiming one question, followed by a label running past the end.
  const truncated = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 0x61]);
  const formerr = await r.query(truncated);
  t.truthy(formerr);
  const p = decode(formerr!);
  t.is(p.id, 0x1234);
  t.is(p.rcode, 'FORMERR');
  // A compression pointer loop.
  const loop = Buffer.from([0, 7, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]);
  t.is(decode((await r.query(loop))!).rcode, 'FORMERR');
  const noQuestion = dnsPacket.encode({ type: 'query', id: 9, questions: [] });
  t.is(decode((await r.query(noQuestion))!).rcode, 'FORMERR');
  t.is(await r.query(Buffer.from([1, 2, 3])), null, 'shorter than a header: dropped');
  const response = dnsPacket.encode({ type: 'response', id: 10, questions: [{ type: 'A', name: 'web', class: 'IN' }] });
  t.is(await r.query(response), null, 'a response is never answered');
  for (let i = 0; i < 200; i++) {
    const junk = Buffer.alloc(12 + (i % 40));
    for (let j = 0; j < junk.length; j++) junk[j] = (i * 31 + j * 17) & 0xff;
    junk[2] = junk[2]! & 0x7f;
    await r.proxy.handle(junk, { id: 'fuzz', upstream: () => null });
  }
  const ok = await r.ask('web.shop.svc.cluster.local', 'A');
  t.deepEqual(ok.answers?.map((a) => (a as { data: string }).data), ['198.18.128.10']);
});

test('the name table: wildcards (ServiceEntry hosts), exact over wildcard, merged addresses, no empty hosts', (t) => {
  const table = new DnsNameTable([
    { hostname: '*.example.com', addresses: ['198.18.129.1'] },
    { hostname: '*.api.example.com', addresses: ['198.18.129.2'] },
    { hostname: 'db.example.com', addresses: ['198.18.129.3'] },
    { hostname: 'db.example.com', addresses: ['198.18.129.4', '198.18.129.3'] },
    { hostname: 'nothing.example.net', addresses: [] },
  ]);
  t.deepEqual(table.lookup('x.example.com')?.ipv4, ['198.18.129.1']);
  t.deepEqual(table.lookup('v1.api.example.com')?.ipv4, ['198.18.129.2']);
  t.deepEqual(table.lookup('db.example.com')?.ipv4, ['198.18.129.3', '198.18.129.4']);
  t.is(table.lookup('example.com'), undefined);
  t.is(table.lookup('nothing.example.net'), undefined);
  t.is(table.lookup('db'), undefined, 'non-Service hosts answer their exact name only');
  const custom = DnsNameTable.fromServices([{ ...SERVICES[0]!, hostname: 'web.shop.svc.corp.internal' }], { clusterDomain: 'corp.internal' });
  t.truthy(custom.lookup('web.shop'));
});

/** A TCP rig: the proxy serving a loopback listener, and a TCP upstream answering `example.org` (and never `silent.example`). */
async function tcpRig(t: import('ava').ExecutionContext, opts: { forwardTimeoutMs?: number; tcpIdleMs?: number } = {}) {
  const registry = new Registry();
  const proxy = new DnsProxy({ table: DnsNameTable.fromServices(SERVICES), metrics: createDnsMetrics(registry), forwardTimeoutMs: opts.forwardTimeoutMs ?? 1000, tcpIdleMs: opts.tcpIdleMs ?? 2000 });
  const framed = (b: Buffer) => { const l = Buffer.alloc(2); l.writeUInt16BE(b.length); return Buffer.concat([l, b]); };
  const upstreamSeen: string[] = [];
  const upstream = net.createServer((c) => {
    let buf = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        const question = q.questions![0]!;
        upstreamSeen.push(question.name);
        if (question.name === 'silent.example') continue;
        c.write(framed(dnsPacket.encode({ type: 'response', id: q.id, questions: [question], answers: [{ type: 'A', name: question.name, ttl: 5, data: '198.18.5.6' }] })));
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.serveTcp(server, { id: 'shop/client', namespace: 'shop', upstream: () => ({ address: '127.0.0.1', port: (upstream.address() as AddressInfo).port }) });
  t.teardown(() => { proxy.close(); server.close(); upstream.close(); });
  const connectClient = () => net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  /** Sends `bytes` (in pieces of `chunk` bytes) and collects `n` framed replies. */
  const exchange = (bytes: Buffer, n: number, chunk = bytes.length) => new Promise<Reply[]>((resolve, reject) => {
    const c = connectClient();
    let buf = Buffer.alloc(0);
    const out: Reply[] = [];
    c.on('error', reject);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === n) { c.end(); resolve(out); }
    });
    c.on('close', () => { if (out.length < n) resolve(out); });
    for (let i = 0; i < bytes.length; i += chunk) c.write(bytes.subarray(i, i + chunk));
  });
  return { proxy, registry, framed, exchange, connectClient, upstreamSeen };
}

const query = (id: number, name: string, type: 'A' | 'AAAA' = 'A') => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });

test('DNS over TCP: pipelined queries (split byte by byte) are answered in order, unknown names forwarded over TCP', async (t) => {
  const r = await tcpRig(t);
  const bytes = Buffer.concat([r.framed(query(1, 'web.shop.svc.cluster.local')), r.framed(query(2, 'example.org')), r.framed(query(3, 'web', 'AAAA'))]);
  const replies = await r.exchange(bytes, 3, 1);
  t.deepEqual(replies.map((p) => [p.id, p.rcode, p.answers?.map((a) => a.data)]), [[1, 'NOERROR', [VIP_WEB]], [2, 'NOERROR', ['198.18.5.6']], [3, 'NOERROR', []]]);
  t.deepEqual(r.upstreamSeen, ['example.org']);
  t.deepEqual(await results(r.registry), { answered: 2, forwarded: 1 });
});

test('DNS over TCP: a client that half-closes after its queries gets every answer', async (t) => {
  const r = await tcpRig(t);
  const c = r.connectClient();
  const chunks: Buffer[] = [];
  c.on('data', (d: Buffer) => chunks.push(d));
  c.end(Buffer.concat([r.framed(query(21, 'example.org')), r.framed(query(22, 'web.shop'))]));
  await once(c, 'close');
  const all = Buffer.concat(chunks);
  const first = decode(all.subarray(2, 2 + all.readUInt16BE(0)));
  const rest = all.subarray(2 + all.readUInt16BE(0));
  const second = decode(rest.subarray(2, 2 + rest.readUInt16BE(0)));
  t.deepEqual([first.id, second.id], [21, 22]);
  t.deepEqual(second.answers?.map((a) => a.data), [VIP_WEB]);
});

test('DNS over TCP: a forward timeout is SERVFAIL, a malformed message FORMERR, an idle connection is closed', async (t) => {
  const r = await tcpRig(t, { forwardTimeoutMs: 200, tcpIdleMs: 300 });
  const [servfail] = await r.exchange(r.framed(query(9, 'silent.example')), 1);
  t.is(servfail?.rcode, 'SERVFAIL');
  const garbage = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 0x61]);
  const [formerr] = await r.exchange(r.framed(garbage), 1);
  t.is(formerr?.rcode, 'FORMERR');
  const idle = r.connectClient();
  idle.write(Buffer.from([0, 40, 1])); // a length and one byte of the message, then nothing
  const closedAfter = await new Promise<number>((resolve) => { const at = Date.now(); idle.on('close', () => resolve(Date.now() - at)); idle.on('error', () => {}); });
  t.true(closedAfter < 2000, `closed after ${closedAfter} ms`);
  const [ok] = await r.exchange(r.framed(query(10, 'web.shop')), 1);
  t.deepEqual(ok?.answers?.map((a) => a.data), [VIP_WEB]);
});
