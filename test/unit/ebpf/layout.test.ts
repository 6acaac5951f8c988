/**
 * The userspace encoding of the capture maps (src/ebpf/layout.ts) against bpf/capture.h's rules:
 * v4-mapped 16-byte addresses, host-order ports, LPM prefixes over netns + address bits.
 */
import test from 'ava';
import {
  decodeAddress, decodeDst, encodeAddress, encodeCidrKey, encodeConnKey, encodeInboundKey, encodePod, decodePod, parseCidr,
} from '../../../src/ebpf/layout.js';

test('addresses round-trip through the 16-byte form', (t) => {
  t.is(encodeAddress('198.19.1.2').toString('hex'), '00000000000000000000ffffc6130102');
  for (const a of ['198.19.1.2', '::1', 'fd00::1:2', '2001:db8::', '::', '1:2:3:4:5:6:7:8']) t.is(decodeAddress(encodeAddress(a)).address, a);
  t.is(decodeAddress(encodeAddress('::ffff:198.18.2.3')).address, '198.18.2.3');
  t.throws(() => encodeAddress('nope'), { message: /not an IP address/ });
});

test('CIDRs are masked and counted over the v4-mapped space', (t) => {
  const c = parseCidr('198.19.1.77/24');
  t.is(c.bits, 96 + 24);
  t.is(decodeAddress(c.network).address, '198.19.1.0');
  t.is(parseCidr('fd00::/8').bits, 8);
  t.throws(() => parseCidr('1.2.3.4/33'));
  t.throws(() => parseCidr('1.2.3.4/x'));
  const key = encodeCidrKey(7n, '198.19.0.0/16');
  t.is(key.length, 28);
  t.is(key.readUInt32LE(0), 64 + 96 + 16);
  t.is(key.readBigUInt64LE(4), 7n);
});

test('struct layouts match capture.h', (t) => {
  const conn = encodeConnKey(42n, '127.0.0.1', 40000, '127.0.0.1', 15001);
  t.is(conn.length, 48);
  t.is(conn.readUInt16LE(40), 40000);
  t.is(conn.readUInt16LE(42), 15001);
  t.is(encodeInboundKey('198.19.1.2', 1).readUInt32LE(16), 1);
  t.deepEqual(decodePod(encodePod({ address: '198.19.1.2', outboundPort: 15001, flags: 1 })), { address: '198.19.1.2', outboundPort: 15001, flags: 1 });
  const dst = Buffer.alloc(32);
  encodeAddress('198.18.0.9').copy(dst, 0);
  dst.writeUInt16LE(8080, 16);
  dst.writeUInt16LE(2, 18);
  dst.writeBigUInt64LE(5n, 24);
  t.deepEqual(decodeDst(dst), { address: '198.18.0.9', port: 8080, family: 4, netnsCookie: 5n });
});
