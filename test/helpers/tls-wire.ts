/**
 * Reads what two TLS 1.3 endpoints said in the clear: a TCP relay on loopback records both
 * directions, and the plaintext handshake records (ClientHello, HelloRetryRequest, ServerHello)
 * are parsed for the groups offered, the key shares sent and the group the server chose. Used by
 * tests that must see the negotiated group on the wire (where the process under test cannot
 * report it, e.g. inside grpc-js) and by bench/tls-handshake.ts for ClientHello sizes.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface ClientHelloInfo {
  /** Bytes on the wire of the record(s) carrying it, headers included. */
  wireBytes: number;
  /** supported_groups, in the client's order (IANA code points). */
  supportedGroups: number[];
  /** Groups the client sent a key share for. */
  keyShareGroups: number[];
}

export interface ServerHelloInfo {
  /** A HelloRetryRequest (the server wants a key share for `group`). */
  retry: boolean;
  /** The group of the server's key_share (selected, or requested by a retry). */
  group: number | undefined;
}

export interface Flight {
  clientHellos: ClientHelloInfo[];
  serverHellos: ServerHelloInfo[];
}

const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
const KEY_SHARE = 0x0033;
const SUPPORTED_GROUPS = 0x000a;

/** Plaintext handshake messages in a byte stream of TLS records, with the wire size of the records each began in. */
function handshakeMessages(stream: Buffer): Array<{ type: number; body: Buffer; wireBytes: number }> {
  const out: Array<{ type: number; body: Buffer; wireBytes: number }> = [];
  let pending = Buffer.alloc(0);
  let pendingWire = 0;
  for (let at = 0; at + 5 <= stream.length;) {
    const type = stream[at] as number;
    const len = stream.readUInt16BE(at + 3);
    if (at + 5 + len > stream.length) break;
    if (type === 22) {
      pending = Buffer.concat([pending, stream.subarray(at + 5, at + 5 + len)]);
      pendingWire += 5 + len;
      while (pending.length >= 4) {
        const mlen = pending.readUIntBE(1, 3);
        if (pending.length < 4 + mlen) break;
        out.push({ type: pending[0] as number, body: pending.subarray(4, 4 + mlen), wireBytes: pendingWire });
        pending = pending.subarray(4 + mlen);
        pendingWire = 0;
      }
    }
    at += 5 + len;
  }
  return out;
}

function extensions(buf: Buffer, at: number): Map<number, Buffer> {
  const ext = new Map<number, Buffer>();
  const end = at + 2 + buf.readUInt16BE(at);
  for (let p = at + 2; p + 4 <= end;) {
    const t = buf.readUInt16BE(p);
    const l = buf.readUInt16BE(p + 2);
    ext.set(t, buf.subarray(p + 4, p + 4 + l));
    p += 4 + l;
  }
  return ext;
}

function u16list(b: Buffer, from: number, to: number): number[] {
  const out: number[] = [];
  for (let p = from; p + 2 <= to; p += 2) out.push(b.readUInt16BE(p));
  return out;
}

export function parseClientHello(body: Buffer, wireBytes: number): ClientHelloInfo {
  let p = 2 + 32;
  p += 1 + (body[p] as number); // session id
  p += 2 + body.readUInt16BE(p); // cipher suites
  p += 1 + (body[p] as number); // compression
  const ext = extensions(body, p);
  const sg = ext.get(SUPPORTED_GROUPS);
  const ks = ext.get(KEY_SHARE);
  const keyShareGroups: number[] = [];
  if (ks !== undefined) {
    const end = 2 + ks.readUInt16BE(0);
    for (let q = 2; q + 4 <= end;) {
      keyShareGroups.push(ks.readUInt16BE(q));
      q += 4 + ks.readUInt16BE(q + 2);
    }
  }
  return { wireBytes, supportedGroups: sg === undefined ? [] : u16list(sg, 2, 2 + sg.readUInt16BE(0)), keyShareGroups };
}

export function parseServerHello(body: Buffer): ServerHelloInfo {
  const retry = body.subarray(2, 34).equals(HRR_RANDOM);
  let p = 2 + 32;
  p += 1 + (body[p] as number); // session id echo
  p += 2 + 1; // cipher suite, compression
  const ks = extensions(body, p).get(KEY_SHARE);
  return { retry, group: ks === undefined || ks.length < 2 ? undefined : ks.readUInt16BE(0) };
}

/** The plaintext hellos of one connection, from the bytes each side sent. */
export function parseFlight(fromClient: Buffer, fromServer: Buffer): Flight {
  return {
    clientHellos: handshakeMessages(fromClient).filter((m) => m.type === 1).map((m) => parseClientHello(m.body, m.wireBytes)),
    serverHellos: handshakeMessages(fromServer).filter((m) => m.type === 2).map((m) => parseServerHello(m.body)),
  };
}

export interface WireTap {
  /** Where clients connect (127.0.0.1). */
  port: number;
  /** Every relayed connection, oldest first: the bytes each side sent so far. */
  connections: Array<{ fromClient: Buffer[]; fromServer: Buffer[] }>;
  /** The hellos of relayed connection `i`. */
  flight(i: number): Flight;
  close(): Promise<void>;
}

/** A TCP relay on 127.0.0.1:0 to `target`, recording both directions of every connection. */
export async function wireTap(target: { host: string; port: number }): Promise<WireTap> {
  const sockets = new Set<Socket>();
  const connections: WireTap['connections'] = [];
  const server: Server = createServer((down) => {
    const rec = { fromClient: [] as Buffer[], fromServer: [] as Buffer[] };
    connections.push(rec);
    const up = connect(target);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { down.destroy(); up.destroy(); });
    }
    down.on('data', (b: Buffer) => { rec.fromClient.push(b); up.write(b); });
    up.on('data', (b: Buffer) => { rec.fromServer.push(b); down.write(b); });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    flight: (i) => {
      const c = connections[i];
      if (c === undefined) throw new Error(`no relayed connection #${i}`);
      return parseFlight(Buffer.concat(c.fromClient), Buffer.concat(c.fromServer));
    },
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
