/**
 * IP addresses and CIDR blocks as numbers, for authorization matching without string work on the
 * hot path.
 *
 * Invariants:
 * - An IPv4 address is an unsigned 32-bit integer held in a JS number. An IPv6 address is four
 *   unsigned 32-bit words, most significant first. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
 *   what a dual-stack Node socket reports for an IPv4 peer) is treated as the IPv4 address, so a
 *   policy written with `198.18.0.0/15` matches it.
 * - A `CidrSet` holds sorted, merged, non-overlapping inclusive ranges per family; matching is a
 *   binary search, so a policy with thousands of blocks costs O(log n).
 * - Parsing never throws; it returns undefined and the caller words the error.
 */

/** A parsed address: family 4 uses `v4`, family 6 uses `v6` (4 words). */
export type ParsedIp = { readonly family: 4; readonly v4: number } | { readonly family: 6; readonly v6: readonly number[] };

/** Parses a dotted-quad IPv4 address into an unsigned 32-bit number; undefined when invalid. */
export function parseIpv4(s: string): number | undefined {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return undefined; // leading zero ("01") is ambiguous: reject
      octet = octet * 10 + (c - 48);
      if (octet > 255 || ++digits > 3) return undefined;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return undefined;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return value * 256 + octet;
}

function parseHexGroup(s: string): number | undefined {
  if (s.length === 0 || s.length > 4) return undefined;
  let v = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if (c >= 97 && c <= 102) d = c - 87;
    else if (c >= 65 && c <= 70) d = c - 55;
    else return undefined;
    v = v * 16 + d;
  }
  return v;
}

/** Parses an IPv6 address (with optional `::`, embedded IPv4 tail, no zone) into 8 groups. */
function parseIpv6Groups(s: string): number[] | undefined {
  if (s.length < 2 || s.length > 45) return undefined;
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return undefined;
  const head = dbl === -1 ? s : s.slice(0, dbl);
  const tail = dbl === -1 ? '' : s.slice(dbl + 2);
  const parsePart = (part: string, allowV4Tail: boolean): number[] | undefined => {
    if (part === '') return [];
    const pieces = part.split(':');
    const out: number[] = [];
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as string;
      if (allowV4Tail && i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (v4 === undefined) return undefined;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
      } else {
        const g = parseHexGroup(piece);
        if (g === undefined) return undefined;
        out.push(g);
      }
    }
    return out;
  };
  const h = parsePart(head, dbl === -1);
  const t = parsePart(tail, true);
  if (h === undefined || t === undefined) return undefined;
  if (dbl === -1) return h.length === 8 ? h : undefined;
  const fill = 8 - h.length - t.length;
  if (fill < 1) return undefined;
  return [...h, ...new Array<number>(fill).fill(0), ...t];
}

/** Parses an IPv4 or IPv6 address; IPv4-mapped IPv6 becomes IPv4. Undefined when invalid. */
export function parseIp(s: string): ParsedIp | undefined {
  if (s.indexOf(':') === -1) {
    const v4 = parseIpv4(s);
    return v4 === undefined ? undefined : { family: 4, v4 };
  }
  const g = parseIpv6Groups(s);
  if (g === undefined) return undefined;
  const w = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) w[i] = (g[2 * i] as number) * 65536 + (g[2 * i + 1] as number);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { family: 4, v4: w[3] as number };
  return { family: 6, v6: w };
}

/** One CIDR block parsed into an inclusive range. */
export type ParsedCidr =
  | { readonly family: 4; readonly lo: number; readonly hi: number; readonly hostBitsSet: boolean }
  | { readonly family: 6; readonly lo: readonly number[]; readonly hi: readonly number[]; readonly hostBitsSet: boolean };

/**
 * Parses `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`. A bare address is a /32 or /128. Host bits
 * beyond the prefix are masked off (and reported through `hostBitsSet` so a linter can warn).
 */
export function parseCidr(s: string): ParsedCidr | undefined {
  const slash = s.indexOf('/');
  const addr = slash === -1 ? s : s.slice(0, slash);
  const ip = parseIp(addr);
  if (ip === undefined) return undefined;
  // An IPv4-mapped IPv6 prefix ("::ffff:198.18.0.0/111") is an IPv4 prefix of length n - 96.
  const mappedV6 = ip.family === 4 && addr.indexOf(':') !== -1;
  const max = ip.family === 4 && !mappedV6 ? 32 : 128;
  let len = max;
  if (slash !== -1) {
    const lenText = s.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(lenText)) return undefined;
    len = Number(lenText);
    if (len > max) return undefined;
  }
  if (ip.family === 4) {
    const bits = mappedV6 ? len - 96 : len;
    if (bits < 0) return undefined; // a mapped prefix shorter than /96 spans non-IPv4 space
    const size = 2 ** (32 - bits);
    const lo = Math.floor(ip.v4 / size) * size;
    return { family: 4, lo, hi: lo + size - 1, hostBitsSet: lo !== ip.v4 };
  }
  const lo: number[] = [];
  const hi: number[] = [];
  let hostBitsSet = false;
  for (let i = 0; i < 4; i++) {
    const word = ip.v6[i] as number;
    const bits = Math.max(0, Math.min(32, len - 32 * i));
    const size = 2 ** (32 - bits);
    const l = Math.floor(word / size) * size;
    if (l !== word) hostBitsSet = true;
    lo.push(l);
    hi.push(l + size - 1);
  }
  return { family: 6, lo, hi, hostBitsSet };
}

function cmp6(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < 4; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

function next6(a: readonly number[]): number[] | undefined {
  const out = [...a];
  for (let i = 3; i >= 0; i--) {
    if ((out[i] as number) < 0xffffffff) {
      out[i] = (out[i] as number) + 1;
      return out;
    }
    out[i] = 0;
  }
  return undefined;
}

/** A set of CIDR blocks, matched by binary search over merged ranges. */
export class CidrSet {
  /** IPv4 range bounds, interleaved [lo0, hi0, lo1, hi1, ...], sorted and disjoint. */
  private readonly v4: Float64Array;
  /** IPv6 ranges, sorted and disjoint. */
  private readonly v6: ReadonlyArray<{ lo: readonly number[]; hi: readonly number[] }>;

  constructor(cidrs: readonly ParsedCidr[]) {
    const r4: [number, number][] = [];
    const r6: { lo: readonly number[]; hi: readonly number[] }[] = [];
    for (const c of cidrs) {
      if (c.family === 4) r4.push([c.lo, c.hi]);
      else r6.push({ lo: c.lo, hi: c.hi });
    }
    r4.sort((a, b) => a[0] - b[0]);
    const m4: number[] = [];
    for (const [lo, hi] of r4) {
      const last = m4.length - 1;
      if (last > 0 && lo <= (m4[last] as number) + 1) m4[last] = Math.max(m4[last] as number, hi);
      else m4.push(lo, hi);
    }
    this.v4 = Float64Array.from(m4);
    r6.sort((a, b) => cmp6(a.lo, b.lo));
    const m6: { lo: readonly number[]; hi: readonly number[] }[] = [];
    for (const r of r6) {
      const last = m6[m6.length - 1];
      const after = last === undefined ? undefined : next6(last.hi);
      if (last !== undefined && (after === undefined || cmp6(r.lo, after) <= 0)) {
        if (cmp6(r.hi, last.hi) > 0) last.hi = r.hi;
      } else {
        m6.push({ lo: r.lo, hi: r.hi });
      }
    }
    this.v6 = m6;
  }

  /** True when the set holds no block. */
  get empty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  /** True when `ip` lies in one of the blocks. */
  has(ip: ParsedIp): boolean {
    if (ip.family === 4) {
      const r = this.v4;
      const x = ip.v4;
      let lo = 0;
      let hi = r.length / 2 - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (x < (r[2 * mid] as number)) hi = mid - 1;
        else if (x > (r[2 * mid + 1] as number)) lo = mid + 1;
        else return true;
      }
      return false;
    }
    const r = this.v6;
    let lo = 0;
    let hi = r.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const range = r[mid] as { lo: readonly number[]; hi: readonly number[] };
      if (cmp6(ip.v6, range.lo) < 0) hi = mid - 1;
      else if (cmp6(ip.v6, range.hi) > 0) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
