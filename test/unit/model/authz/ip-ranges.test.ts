/**
 * IP parsing and CIDR sets: every accepted and rejected form, and CidrSet agreeing with a
 * brute-force check over random blocks and addresses (IPv4 and IPv6).
 */
import test from 'ava';
import { CidrSet } from '../../../../src/model/authz/ip-ranges.js';
import { parseCidr, parseIp, parseIpv4, type ParsedCidr, type ParsedIp } from '../../../../src/util/cidr.js';

test('parseIpv4 accepts dotted quads and rejects everything else', (t) => {
  t.is(parseIpv4('0.0.0.0'), 0);
  t.is(parseIpv4('255.255.255.255'), 0xffffffff);
  t.is(parseIpv4('198.18.0.1'), (198 << 24 >>> 0) + (18 << 16) + 1);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '01.2.3.4', '1.2.3.4 ', 'a.b.c.d', '1.2.3.', '.1.2.3', '1234.1.1.1']) {
    t.is(parseIpv4(bad), undefined, bad);
  }
});

test('parseIp handles IPv6 forms and maps IPv4-mapped addresses to IPv4', (t) => {
  t.deepEqual(parseIp('::'), { family: 6, v6: [0, 0, 0, 0] });
  t.deepEqual(parseIp('::1'), { family: 6, v6: [0, 0, 0, 1] });
  t.deepEqual(parseIp('2001:db8::1'), { family: 6, v6: [0x20010db8, 0, 0, 1] });
  t.deepEqual(parseIp('2001:DB8:0:0:0:0:0:1'), { family: 6, v6: [0x20010db8, 0, 0, 1] });
  t.deepEqual(parseIp('fe80::1:2'), { family: 6, v6: [0xfe800000, 0, 0, 0x00010002] });
  t.deepEqual(parseIp('::ffff:198.18.0.1'), { family: 4, v4: parseIpv4('198.18.0.1') });
  t.deepEqual(parseIp('64:ff9b::198.18.0.1'), { family: 6, v6: [0x0064ff9b, 0, 0, parseIpv4('198.18.0.1')] });
  for (const bad of ['1::2::3', ':::', '2001:db8', '1:2:3:4:5:6:7:8:9', 'g::1', '12345::', '::1.2.3', '1:2:3:4:5:6:7::8:9', 'fe80::1%eth0']) {
    t.is(parseIp(bad), undefined, bad);
  }
});

test('parseCidr: prefixes, bare addresses, host bits, bad lengths', (t) => {
  t.deepEqual(parseCidr('198.18.0.0/15'), { family: 4, lo: parseIpv4('198.18.0.0'), hi: parseIpv4('198.19.255.255'), hostBitsSet: false });
  t.deepEqual(parseCidr('198.18.0.7'), { family: 4, lo: parseIpv4('198.18.0.7'), hi: parseIpv4('198.18.0.7'), hostBitsSet: false });
  t.deepEqual(parseCidr('198.18.0.7/24'), { family: 4, lo: parseIpv4('198.18.0.0'), hi: parseIpv4('198.18.0.255'), hostBitsSet: true });
  t.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, lo: 0, hi: 0xffffffff, hostBitsSet: false });
  t.deepEqual(parseCidr('2001:db8::/32'), { family: 6, lo: [0x20010db8, 0, 0, 0], hi: [0x20010db8, 0xffffffff, 0xffffffff, 0xffffffff], hostBitsSet: false });
  t.deepEqual(parseCidr('2001:db8::/36'), { family: 6, lo: [0x20010db8, 0, 0, 0], hi: [0x20010db8, 0x0fffffff, 0xffffffff, 0xffffffff], hostBitsSet: false });
  t.deepEqual(parseCidr('::ffff:198.18.0.0/112'), { family: 4, lo: parseIpv4('198.18.0.0'), hi: parseIpv4('198.18.255.255'), hostBitsSet: false });
  for (const bad of ['198.18.0.0/33', '198.18.0.0/', '198.18.0.0/-1', '2001:db8::/129', 'x/8', '198.18.0.0/8/8', '::ffff:1.2.3.4/64']) {
    t.is(parseCidr(bad), undefined, bad);
  }
});

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

function inRange(ip: ParsedIp, c: ParsedCidr): boolean {
  if (ip.family !== c.family) return false;
  if (ip.family === 4 && c.family === 4) return ip.v4 >= c.lo && ip.v4 <= c.hi;
  if (ip.family === 6 && c.family === 6) {
    const key = (w: readonly number[]): bigint => w.reduce((acc, x) => (acc << 32n) | BigInt(x), 0n);
    const v = key(ip.v6);
    return v >= key(c.lo) && v <= key(c.hi);
  }
  return false;
}

test('CidrSet agrees with brute force over random overlapping blocks', (t) => {
  const rand = rng(42);
  const word = (): number => Math.floor(rand() * 2 ** 32);
  for (let round = 0; round < 40; round++) {
    const cidrs: ParsedCidr[] = [];
    // Cluster addresses near a few bases so blocks overlap, nest and touch.
    const base4 = word() & 0xffff0000;
    const base6 = [0x20010db8, word() & 0xffff0000, 0, 0];
    for (let i = 0; i < 1 + Math.floor(rand() * 12); i++) {
      if (rand() < 0.5) {
        const ip = (base4 + Math.floor(rand() * 65536)) >>> 0;
        const len = 16 + Math.floor(rand() * 17);
        cidrs.push(parseCidr(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}/${len}`) as ParsedCidr);
      } else {
        const w2 = (base6[1] as number) + Math.floor(rand() * 65536);
        const hex = (n: number): string => `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
        const len = 32 + Math.floor(rand() * 97);
        cidrs.push(parseCidr(`${hex(base6[0] as number)}:${hex(w2)}:${hex(word())}:${hex(word())}/${len}`) as ParsedCidr);
      }
    }
    const set = new CidrSet(cidrs);
    for (let k = 0; k < 300; k++) {
      let ip: ParsedIp;
      if (rand() < 0.5) ip = { family: 4, v4: (base4 + Math.floor(rand() * 65536)) >>> 0 };
      else ip = { family: 6, v6: [base6[0] as number, (base6[1] as number) + Math.floor(rand() * 65536), rand() < 0.5 ? 0 : word(), word()] };
      const expected = cidrs.some((c) => inRange(ip, c));
      if (set.has(ip) !== expected) {
        t.fail(`round ${round}: ${JSON.stringify(ip)} expected ${String(expected)}`);
        return;
      }
    }
    // Every block's own bounds are inside.
    for (const c of cidrs) {
      t.true(set.has(c.family === 4 ? { family: 4, v4: c.lo } : { family: 6, v6: c.lo }));
      t.true(set.has(c.family === 4 ? { family: 4, v4: c.hi } : { family: 6, v6: c.hi }));
    }
  }
});

test('CidrSet edge cases: empty set, whole space, adjacent blocks merge', (t) => {
  const empty = new CidrSet([]);
  t.true(empty.empty);
  t.false(empty.has({ family: 4, v4: 1 }));
  const all = new CidrSet([parseCidr('0.0.0.0/0') as ParsedCidr, parseCidr('::/0') as ParsedCidr]);
  t.true(all.has({ family: 4, v4: 0xffffffff }));
  t.true(all.has({ family: 6, v6: [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff] }));
  const adjacent = new CidrSet(['198.18.0.0/24', '198.18.1.0/24', '198.18.3.0/24'].map((s) => parseCidr(s) as ParsedCidr));
  t.true(adjacent.has(parseIp('198.18.1.255') as ParsedIp));
  t.false(adjacent.has(parseIp('198.18.2.0') as ParsedIp));
  t.true(adjacent.has(parseIp('198.18.3.0') as ParsedIp));
  t.false(adjacent.has(parseIp('2001:db8::1') as ParsedIp));
});
