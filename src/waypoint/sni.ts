/**
 * Reads the server name (SNI, RFC 6066 §3) from the first bytes of a TLS connection without
 * terminating TLS: what a TLSRoute (passthrough) routes on.
 *
 * Invariants:
 * - Pure and total: any input gives a result, never an exception; every length field is checked
 *   against the bytes that hold it (a lie about a length is `malformed`, not an out-of-range read).
 * - Only the first record is read, and the ClientHello must fit in it (clients send it in one
 *   record; one that does not is `malformed`, and the caller routes it as if it had no SNI).
 * - `need-more` only while the bytes seen are a valid prefix and fewer than the record declares,
 *   bounded by MAX_CLIENT_HELLO_BYTES; the caller bounds the wait.
 */

/** Largest first record read (a TLS record is at most 2^14 bytes of plaintext, plus the header). */
export const MAX_CLIENT_HELLO_BYTES = 16_384 + 5;

export type SniResult =
  | { readonly kind: 'sni'; readonly serverName: string }
  /** A well-formed ClientHello without a host_name server name. */
  | { readonly kind: 'no-sni' }
  /** A valid prefix; read more bytes. */
  | { readonly kind: 'need-more' }
  /** Not a TLS ClientHello, or one whose lengths do not hold together. */
  | { readonly kind: 'malformed'; readonly reason: string };

const NEED_MORE: SniResult = Object.freeze({ kind: 'need-more' });
const NO_SNI: SniResult = Object.freeze({ kind: 'no-sni' });
const bad = (reason: string): SniResult => ({ kind: 'malformed', reason });

/** The SNI of the ClientHello at the start of `buf` (see the module header). */
export function peekSni(buf: Uint8Array): SniResult {
  if (buf.length < 1) return NEED_MORE;
  if (buf[0] !== 0x16) return bad('not a TLS handshake record');
  if (buf.length < 5) return NEED_MORE;
  if (buf[1] !== 0x03) return bad('not a TLS record version');
  const recordLen = ((buf[3] as number) << 8) | (buf[4] as number);
  if (recordLen < 4 || recordLen > 16_384) return bad('record length out of range');
  if (buf.length < 5 + recordLen) return NEED_MORE;
  const rec = buf.subarray(5, 5 + recordLen);
  if (rec[0] !== 0x01) return bad('not a ClientHello');
  const helloLen = ((rec[1] as number) << 16) | ((rec[2] as number) << 8) | (rec[3] as number);
  if (helloLen + 4 > rec.length) return bad('ClientHello does not fit in the first record');
  const h = rec.subarray(4, 4 + helloLen);
  let p = 2 + 32; // client_version, random
  if (p + 1 > h.length) return bad('truncated ClientHello');
  p += 1 + (h[p] as number); // session_id
  if (p + 2 > h.length) return bad('truncated ClientHello');
  p += 2 + (((h[p] as number) << 8) | (h[p + 1] as number)); // cipher_suites
  if (p + 1 > h.length) return bad('truncated ClientHello');
  p += 1 + (h[p] as number); // compression_methods
  if (p > h.length) return bad('truncated ClientHello');
  if (p === h.length) return NO_SNI; // no extensions
  if (p + 2 > h.length) return bad('truncated extensions');
  const extEnd = p + 2 + (((h[p] as number) << 8) | (h[p + 1] as number));
  if (extEnd > h.length) return bad('extensions overrun the ClientHello');
  p += 2;
  while (p < extEnd) {
    if (p + 4 > extEnd) return bad('truncated extension');
    const type = ((h[p] as number) << 8) | (h[p + 1] as number);
    const len = ((h[p + 2] as number) << 8) | (h[p + 3] as number);
    p += 4;
    if (p + len > extEnd) return bad('extension overruns the extensions');
    if (type === 0) return serverName(h.subarray(p, p + len));
    p += len;
  }
  return NO_SNI;
}

function serverName(e: Uint8Array): SniResult {
  if (e.length < 2) return bad('truncated server_name');
  const listEnd = 2 + (((e[0] as number) << 8) | (e[1] as number));
  if (listEnd > e.length) return bad('server_name list overruns the extension');
  let p = 2;
  while (p < listEnd) {
    if (p + 3 > listEnd) return bad('truncated server_name entry');
    const type = e[p] as number;
    const len = ((e[p + 1] as number) << 8) | (e[p + 2] as number);
    p += 3;
    if (p + len > listEnd) return bad('server_name entry overruns the list');
    if (type === 0) {
      const name = Buffer.from(e.subarray(p, p + len)).toString('latin1');
      // RFC 6066: a host name, ASCII, no trailing dot; anything else is not routable.
      if (len === 0 || !/^[A-Za-z0-9._-]+$/.test(name)) return bad('server name is not a host name');
      return { kind: 'sni', serverName: name.toLowerCase() };
    }
    p += len;
  }
  return NO_SNI;
}

/**
 * True when `host` (a server name, lower case) matches a TLSRoute hostname: exact, or
 * `*.suffix` matching one or more labels before `.suffix` (never `suffix` itself).
 */
export function sniHostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  return pattern === host;
}
