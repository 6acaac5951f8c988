/**
 * Binary layout of the capture maps, mirroring bpf/capture.h (the source of truth). Addresses are
 * 16 bytes in network order with IPv4 v4-mapped; ports are host order (little-endian on every
 * architecture ambit runs on, checked below); padding is zero. `MAP_LAYOUT` lists the sizes so the
 * loader can refuse an object whose maps do not match this file.
 */
import { cidrProblem, parseCidr as parseCidrRange, prefixLength } from '../util/cidr.js';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';

if (endianness() !== 'LE') throw new Error('ambit capture supports little-endian hosts only');

export const MAP_NAMES = {
  pods: 'ambit_pods',
  pending: 'ambit_pending',
  conns: 'ambit_conns',
  excludedPorts: 'ambit_xports',
  excludedCidrs: 'ambit_xcidrs',
  inbound: 'ambit_inbound',
  nodeAddresses: 'ambit_nodeaddrs',
  counters: 'ambit_counters',
  podAddresses: 'ambit_podaddrs',
  outbound: 'ambit_outbound',
  failClosed: 'ambit_failclosed',
  localSyns: 'ambit_localsyn',
} as const;

/** Key and value sizes of each map, as declared in capture.h. */
export const MAP_LAYOUT: Record<string, { keySize: number; valueSize: number }> = {
  ambit_pods: { keySize: 8, valueSize: 24 },
  ambit_pending: { keySize: 8, valueSize: 32 },
  ambit_conns: { keySize: 48, valueSize: 32 },
  ambit_xports: { keySize: 16, valueSize: 4 },
  ambit_xcidrs: { keySize: 28, valueSize: 4 },
  ambit_inbound: { keySize: 20, valueSize: 8 },
  ambit_nodeaddrs: { keySize: 16, valueSize: 4 },
  ambit_counters: { keySize: 4, valueSize: 8 },
  ambit_podaddrs: { keySize: 16, valueSize: 8 },
  ambit_outbound: { keySize: 8, valueSize: 8 },
  ambit_failclosed: { keySize: 16, valueSize: 8 },
  ambit_localsyn: { keySize: 40, valueSize: 8 },
};

/** struct ambit_fail_key direction (AMBIT_DIR_*). */
export const FAIL_DIRECTIONS = ['inbound', 'outbound'] as const;
export type FailDirection = (typeof FAIL_DIRECTIONS)[number];

/** struct ambit_syn_key of a connect the agent announces (origin AMBIT_SYN_AGENT). */
export function encodeAgentSynKey(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const b = Buffer.alloc(40);
  encodeAddress(src).copy(b, 0);
  encodeAddress(dst).copy(b, 16);
  b.writeUInt16LE(srcPort, 32);
  b.writeUInt16LE(dstPort, 34);
  b.writeUInt32LE(1, 36);
  return b;
}

/** struct ambit_fail_key -> netns cookie and direction. */
export function decodeFailKey(b: Buffer): { netns: bigint; direction: FailDirection } {
  return { netns: b.readBigUInt64LE(0), direction: FAIL_DIRECTIONS[b.readUInt32LE(8)] ?? 'inbound' };
}

export const POD_FLAG_OUTBOUND6 = 0x1;
export const INBOUND_PLAIN = 0;
export const INBOUND_HBONE = 1;

/** Counter indexes (enum ambit_counter) and their names in stats(). */
export const COUNTERS = [
  'captured',
  'excluded',
  'linked',
  'origDstHits',
  'origDstMisses',
  'inboundSteered',
  'inboundBypassed',
  'inboundMisses',
  'recordFailures',
  'failClosedInbound',
  'failClosedOutbound',
  'localSyns',
] as const;
export const COUNTER_SLOTS = 16;
export type CounterName = (typeof COUNTERS)[number];

/** 16-byte form of an IPv4 or IPv6 address; throws on anything else. */
export function encodeAddress(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(address)) {
    out.writeUInt16BE(0xffff, 10);
    address.split('.').forEach((octet, i) => out.writeUInt8(Number(octet), 12 + i));
    return out;
  }
  if (!isIPv6(address)) throw new TypeError(`not an IP address: ${address}`);
  let text = address.split('%')[0] ?? address;
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail?.[1] !== undefined) {
    const parts = v4tail[1].split('.').map(Number);
    text = text.slice(0, -v4tail[1].length) +
      `${(((parts[0] ?? 0) << 8) | (parts[1] ?? 0)).toString(16)}:${(((parts[2] ?? 0) << 8) | (parts[3] ?? 0)).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Text form of a 16-byte address: dotted quad for v4-mapped, compressed IPv6 otherwise. */
export function decodeAddress(buf: Buffer, offset = 0): { address: string; family: 4 | 6 } {
  const b = buf.subarray(offset, offset + 16);
  const mapped = b.readBigUInt64BE(0) === 0n && b.readUInt16BE(8) === 0 && b.readUInt16BE(10) === 0xffff;
  if (mapped) return { address: `${b[12]}.${b[13]}.${b[14]}.${b[15]}`, family: 4 };
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(i * 2));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return { address: hex.join(':'), family: 6 };
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return { address: `${left}::${right}`, family: 6 };
}

export function u64Key(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export function u32Key(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

/** struct ambit_pod */
export interface PodValue {
  address: string;
  outboundPort: number;
  flags: number;
}

export function encodePod(p: PodValue): Buffer {
  const b = Buffer.alloc(24);
  encodeAddress(p.address).copy(b, 0);
  b.writeUInt16LE(p.outboundPort, 16);
  b.writeUInt16LE(p.flags, 18);
  return b;
}

export function decodePod(b: Buffer): PodValue {
  return { address: decodeAddress(b, 0).address, outboundPort: b.readUInt16LE(16), flags: b.readUInt16LE(18) };
}

/** struct ambit_dst */
export interface DstValue {
  address: string;
  port: number;
  /** The family the application connected with (a v4-mapped IPv6 connect reports 6). */
  family: 4 | 6;
  netnsCookie: bigint;
}

export function decodeDst(b: Buffer): DstValue {
  return {
    address: decodeAddress(b, 0).address,
    port: b.readUInt16LE(16),
    family: b.readUInt16LE(18) === 10 ? 6 : 4,
    netnsCookie: b.readBigUInt64LE(24),
  };
}

/** struct ambit_conn_key */
export function encodeConnKey(netns: bigint, client: string, clientPort: number, server: string, serverPort: number): Buffer {
  const b = Buffer.alloc(48);
  b.writeBigUInt64LE(netns, 0);
  encodeAddress(client).copy(b, 8);
  encodeAddress(server).copy(b, 24);
  b.writeUInt16LE(clientPort, 40);
  b.writeUInt16LE(serverPort, 42);
  return b;
}

/** struct ambit_port_key */
export function encodePortKey(netns: bigint, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(netns, 0);
  b.writeUInt16LE(port, 8);
  return b;
}

export function decodePortKey(b: Buffer): { netns: bigint; port: number } {
  return { netns: b.readBigUInt64LE(0), port: b.readUInt16LE(8) };
}

/**
 * A CIDR (parsed by src/util/cidr.ts, as the resource model parses it) as its 16-byte network and
 * prefix length over the 128-bit space, IPv4 as v4-mapped (`::ffff:a.b.c.d`, 96 + n bits).
 * Throws a TypeError naming the text when it is not a CIDR.
 */
export function parseCidr(cidr: string): { network: Buffer; bits: number } {
  const c = parseCidrRange(cidr);
  if (c === undefined) throw new TypeError(`not a CIDR: ${cidr} (${cidrProblem(cidr) ?? 'unparseable'})`);
  const network = Buffer.alloc(16);
  if (c.family === 4) {
    network.writeUInt16BE(0xffff, 10);
    network.writeUInt32BE(c.lo, 12);
    return { network, bits: 96 + prefixLength(c) };
  }
  for (let i = 0; i < 4; i++) network.writeUInt32BE(c.lo[i] as number, 4 * i);
  return { network, bits: prefixLength(c) };
}

/** struct ambit_cidr_key: prefix covers the 64 netns bits plus the address bits. */
export function encodeCidrKey(netns: bigint, cidr: string): Buffer {
  const { network, bits } = parseCidr(cidr);
  const b = Buffer.alloc(28);
  b.writeUInt32LE(64 + bits, 0);
  b.writeBigUInt64LE(netns, 4);
  network.copy(b, 12);
  return b;
}

export function cidrKeyNetns(b: Buffer): bigint {
  return b.readBigUInt64LE(4);
}

/** struct ambit_inbound_key */
export function encodeInboundKey(address: string, kind: number): Buffer {
  const b = Buffer.alloc(20);
  encodeAddress(address).copy(b, 0);
  b.writeUInt32LE(kind, 16);
  return b;
}
