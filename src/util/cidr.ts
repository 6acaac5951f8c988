/**
 * IP addresses and CIDR blocks parsed into numbers: the one parser every part of ambit uses (the
 * schema's `cidr` check, authorization's IP matching, the capture maps' LPM keys), so an address
 * that one part accepts is an address every part accepts, with the same prefix.
 *
 * Invariants:
 * - An IPv4 address is an unsigned 32-bit integer held in a JS number. An IPv6 address is four
 *   unsigned 32-bit words, most significant first. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
 *   what a dual-stack Node socket reports for an IPv4 peer) is treated as the IPv4 address, so a
 *   policy written with `198.18.0.0/15` matches it.
 * - Leading zeros in an IPv4 octet ("01") are refused (ambiguous: octal in some parsers); zones
 *   (`%eth0`) are refused.
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

/** The prefix length of a parsed block within its family (0..32 for IPv4, 0..128 for IPv6). */
export function prefixLength(c: ParsedCidr): number {
  if (c.family === 4) return 32 - Math.log2(c.hi - c.lo + 1);
  let bits = 0;
  for (let i = 0; i < 4; i++) {
    const span = (c.hi[i] as number) - (c.lo[i] as number);
    if (span === 0) { bits += 32; continue; }
    return bits + 32 - Math.log2(span + 1);
  }
  return bits;
}

/**
 * Why `s` is not an IP address or CIDR block, in words for a diagnostic; undefined when it is
 * one (what the resource schema's `cidr` fields accept).
 */
export function cidrProblem(s: string): string | undefined {
  if (parseCidr(s) !== undefined) return undefined;
  const slash = s.indexOf('/');
  const addr = slash === -1 ? s : s.slice(0, slash);
  if (parseIp(addr) === undefined) return `${JSON.stringify(s)} is not an IP address or CIDR`;
  return `${JSON.stringify(s)} has an invalid prefix length`;
}
