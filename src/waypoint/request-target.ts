/**
 * The HTTP/1.1 request-target (RFC 9112 §3.2) reduced to what routing and AuthorizationPolicy
 * see: one origin-form path, normalized the way Istio configures Envoy for the mesh's
 * `pathNormalization.normalization`, and the authority an absolute-form target carries. A policy
 * matched against anything else can be bypassed: `GET http://x/admin` is not `/admin*` as text,
 * nor is `/public/%2e%2e/admin` or `//admin`.
 *
 * Forms (RFC 9112 §3.2.1-3.2.4):
 * - origin-form `/path?query`: normalized below.
 * - absolute-form `http://authority/path?query` (scheme `http` or `https`, any case): reduced to
 *   origin-form (an empty path becomes `/`), and its authority is returned to be used as
 *   `:authority`, as Envoy does (RFC 9112 §3.2.2: it replaces Host). Stricter than Envoy: a Host
 *   header that names another authority (host compared without case, a missing port taken as the
 *   scheme's default, 80 or 443) is a 400, so routing and policy can never disagree about the
 *   host. Userinfo (`http://user@host/`) is a 400 (RFC 9110 §4.2.4 deprecates it), as is an
 *   authority outside `host[:port]` (reg-name or IP literal; a percent-encoded reg-name too).
 * - asterisk-form `*`: only with OPTIONS, passed through as `*`.
 * - authority-form, i.e. CONNECT: the waypoint does not tunnel, so CONNECT is a 400 whatever its
 *   target. Anything else that does not start with `/` is a 400.
 *
 * Normalization (Istio MeshConfig `pathNormalization`, reference/config/security/normalization):
 * - `NONE`: the path is forwarded and matched as received.
 * - `BASE` (Istio's default, and ours): Envoy's `normalize_path`, i.e. RFC 3986 §6.2.2 plus
 *   backslash handling: percent-encoded unreserved characters (ALPHA DIGIT `-` `.` `_` `~`) are
 *   decoded, so `%2e` is a dot and `/%61dmin` is `/admin`; a raw `\` is a `/`; dot segments are
 *   removed (§5.2.4; a `..` above the root stays at the root). Other percent-encodings stay
 *   encoded and are upper-cased (`%c0` -> `%C0`, §6.2.2.1). Note: Envoy itself keeps the case
 *   of the hex digits as received (envoyproxy/envoy test/common/http/path_utility_test.cc,
 *   `/a/%2F%2f/c` stays as is); upper-casing here means a policy naming `%2F` cannot be
 *   side-stepped with `%2f`, and the two are the same URI to any backend (§6.2.2.1).
 * - `MERGE_SLASHES`: `BASE`, then runs of `/` are merged into one (after dot-segment removal,
 *   as Envoy orders it: `/a//../b` is `/a/b`).
 * - `DECODE_AND_MERGE_SLASHES`: `%2F` `%2f` are decoded to `/` and `%5C` `%5c` to `\` (hence
 *   `/`), then `MERGE_SLASHES`. Done in the same single decoding pass, so it is never a double
 *   decode: `%252F` stays `%252F`.
 * Encoded slashes under `NONE`, `BASE` and `MERGE_SLASHES` are kept unchanged, neither decoded nor
 * rejected: Istio sets Envoy's `path_with_escaped_slashes_action` to `KEEP_UNCHANGED` for those
 * three modes and to `UNESCAPE_AND_FORWARD` only for `DECODE_AND_MERGE_SLASHES` (istio/istio
 * pilot/pkg/networking/core/listener_builder.go, "Setup normalization"; its integration test
 * tests/integration/security/normalization_test.go expects `/app/%2f` -> `/app/%2f` under
 * MERGE_SLASHES and `/app/` under DECODE_AND_MERGE_SLASHES). An encoded slash is thus part of a
 * segment: `/a/%2e%2e%2fadmin` is `/a/..%2Fadmin` under BASE, not `/admin`.
 *
 * Invariants:
 * - In every mode: raw control characters, space, DEL and non-ASCII anywhere in the target, and
 *   invalid percent-encoding (`%zz`, `%4`) or an encoded NUL (`%00`, which Istio always rejects)
 *   in the path, are a 400. The query (from the first `?`) is re-attached byte for byte, never
 *   decoded or normalized; a fragment (`#...`) is dropped.
 * - Normalizing a result again gives the same result; under every mode but NONE its path has no
 *   `.` or `..` segment, under the MERGE modes no empty segment but a trailing one.
 * - A target that is already normal (origin-form without `%`, `\`, `//`, `/.` or `#`) is returned
 *   as the same string after one scan, with no allocation but the result object: this runs on
 *   every request.
 * - Rejection reasons are fixed sentences; the few that quote the target quote at most 60 of its
 *   characters, JSON-escaped (and non-ASCII as `\u` escapes), so they are safe in a log line or a
 *   local reply body.
 */

/** Istio MeshConfig `pathNormalization.normalization` (Istio's `DEFAULT` is `BASE`). */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

/** The modes, in Istio's order from least to most normalization. */
export const PATH_NORMALIZATIONS: readonly PathNormalization[] = Object.freeze(['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES']);

export function isPathNormalization(v: unknown): v is PathNormalization {
  return v === 'NONE' || v === 'BASE' || v === 'MERGE_SLASHES' || v === 'DECODE_AND_MERGE_SLASHES';
}

export interface NormalizedTarget {
  readonly ok: true;
  /** Origin-form path, normalized per the mode, with the query as received; or `*` (OPTIONS). */
  readonly path: string;
  /** The authority of an absolute-form target (as written), else undefined: use the Host header. */
  readonly authority: string | undefined;
}

export interface RejectedTarget {
  readonly ok: false;
  readonly status: 400;
  /** Why, for the access log and the local reply; see the module header for what it may quote. */
  readonly reason: string;
}

export type RequestTargetResult = NormalizedTarget | RejectedTarget;

/**
 * What routing and policy see of `target` (the request-line's target, or `:path`).
 *
 * @param host the Host header, if the request has one (checked against an absolute-form authority).
 * @param method the request method, case-sensitive (`OPTIONS` may use `*`; `CONNECT` is refused).
 * @param mode the mesh's path normalization (Istio's default is `BASE`).
 */
export function normalizeRequestTarget(target: string, host: string | undefined, method: string, mode: PathNormalization): RequestTargetResult {
  if (method === 'CONNECT') return CONNECT_REFUSED;
  const c0 = target.charCodeAt(0);
  if (c0 === SLASH) return originForm(target, 0, mode, undefined);
  if (c0 === STAR && target.length === 1) return method === 'OPTIONS' ? { ok: true, path: '*', authority: undefined } : ASTERISK_NOT_OPTIONS;
  if (c0 === 0x68 || c0 === 0x48) {
    const start = schemeEnd(target);
    if (start > 0) return absoluteForm(target, start, host, mode);
  }
  return target.length === 0 ? EMPTY : reject(`request-target must be origin-form ("/..."), absolute-form ("http://...") or, for OPTIONS, "*"; got ${quote(target, 0)}`);
}

// ---- constants

const SLASH = 0x2f;
const STAR = 0x2a;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;
const QUESTION = 0x3f;
const HASH = 0x23;
const HEX = '0123456789ABCDEF';

const reject = (reason: string): RejectedTarget => ({ ok: false, status: 400, reason });
const CONNECT_REFUSED = Object.freeze(reject('CONNECT is not supported by the waypoint (it does not tunnel); send the request itself'));
const ASTERISK_NOT_OPTIONS = Object.freeze(reject('asterisk-form request-target "*" is only allowed with OPTIONS'));
const EMPTY = Object.freeze(reject('request-target is empty'));
const USERINFO = Object.freeze(reject('absolute-form request-target with userinfo ("user@host") is not accepted'));
const BAD_AUTHORITY = Object.freeze(reject('absolute-form request-target has an empty or malformed authority (expected host[:port])'));
const HOST_MISMATCH = Object.freeze(reject('absolute-form authority does not match the Host header'));

const badChar = (i: number): RejectedTarget => reject(`request-target contains a control character, space or non-ASCII byte at offset ${i}`);
const badPercent = (i: number): RejectedTarget => reject(`request-target path has invalid percent-encoding at offset ${i} (expected % and two hex digits)`);
const encodedNul = (i: number): RejectedTarget => reject(`request-target path contains an encoded NUL (%00) at offset ${i}`);

/** At most 60 characters of `s` from `from`, as a JSON string with non-ASCII escaped too. */
function quote(s: string, from: number): string {
  return JSON.stringify(s.slice(from, from + 60)).replace(/[\u007f-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Unreserved characters (RFC 3986 §2.3): ALPHA DIGIT - . _ ~ */
function unreserved(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === DOT || b === 0x5f || b === 0x7e;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

// ---- absolute-form

/** Index after `http://` or `https://` (any case), or 0. */
function schemeEnd(s: string): number {
  if ((s.charCodeAt(1) | 0x20) !== 0x74 || (s.charCodeAt(2) | 0x20) !== 0x74 || (s.charCodeAt(3) | 0x20) !== 0x70) return 0;
  let i = 4;
  if ((s.charCodeAt(i) | 0x20) === 0x73) i++;
  return s.charCodeAt(i) === 0x3a && s.charCodeAt(i + 1) === SLASH && s.charCodeAt(i + 2) === SLASH ? i + 3 : 0;
}

/** reg-name characters allowed here: unreserved and sub-delims (RFC 3986 §3.2.2), no pct-encoding. */
function regNameChar(c: number): boolean {
  return unreserved(c) || c === 0x21 || c === 0x24 || (c >= 0x26 && c <= 0x2c) || c === 0x3b || c === 0x3d;
}

/** `[host, port]` of a `host[:port]` authority (host lower-cased, port '' when absent), or undefined. */
function splitAuthority(a: string): [string, string] | undefined {
  let i = 0;
  if (a.charCodeAt(0) === 0x5b) {
    const close = a.indexOf(']');
    if (close < 2) return undefined;
    for (let j = 1; j < close; j++) {
      const c = a.charCodeAt(j);
      if (!(hexValue(c) >= 0 || c === 0x3a || c === DOT)) return undefined;
    }
    i = close + 1;
  } else {
    while (i < a.length && regNameChar(a.charCodeAt(i))) i++;
    if (i === 0) return undefined;
  }
  const hostPart = a.slice(0, i).toLowerCase();
  if (i === a.length) return [hostPart, ''];
  if (a.charCodeAt(i) !== 0x3a) return undefined;
  const port = a.slice(i + 1);
  if (port.length > 5 || !/^[0-9]*$/.test(port) || (port !== '' && Number(port) > 65535)) return undefined;
  return [hostPart, port];
}

function absoluteForm(target: string, start: number, host: string | undefined, mode: PathNormalization): RequestTargetResult {
  let end = start;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === SLASH || c === QUESTION || c === HASH) break;
    end++;
  }
  const authority = target.slice(start, end);
  if (authority.includes('@')) return USERINFO;
  const parts = splitAuthority(authority);
  if (parts === undefined) return BAD_AUTHORITY;
  if (host !== undefined) {
    const h = splitAuthority(host);
    const defaultPort = start === 8 ? '443' : '80';
    if (h === undefined || h[0] !== parts[0] || (h[1] || defaultPort) !== (parts[1] || defaultPort)) return HOST_MISMATCH;
  }
  if (end === target.length) return { ok: true, path: '/', authority };
  if (target.charCodeAt(end) === SLASH) return originForm(target, end, mode, authority);
  return originForm(`/${target.slice(end)}`, 0, mode, authority);
}

// ---- origin-form

/** Flags of the one scan over the path part. */
const F_PERCENT = 1;
/** `\`, `//` or `/.`: work for every normalizing mode. */
const F_SHAPE = 2;

function originForm(target: string, start: number, mode: PathNormalization, authority: string | undefined): RequestTargetResult {
  const n = target.length;
  let flags = 0;
  let query = -1;
  let fragment = -1;
  let i = start;
  for (; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c >= 0x61 && c <= 0x7a) continue; // the common case: lower-case letters
    if (c <= 0x20 || c >= 0x7f) return badChar(i);
    if (c === SLASH) {
      const next = target.charCodeAt(i + 1);
      if (next === SLASH || next === DOT || next === BACKSLASH) flags |= F_SHAPE;
    } else if (c === PERCENT) flags |= F_PERCENT;
    else if (c === BACKSLASH) flags |= F_SHAPE;
    else if (c === QUESTION || c === HASH) break;
  }
  if (target.charCodeAt(i) === QUESTION) query = i;
  for (; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return badChar(i);
    if (c === HASH && fragment < 0) fragment = i;
  }
  const end = fragment >= 0 ? fragment : n;
  if (mode === 'NONE') flags &= ~F_SHAPE;
  if (flags === 0) return { ok: true, path: start === 0 && end === n ? target : target.slice(start, end), authority };
  const pathEnd = query >= 0 ? query : end;
  const path = mode === 'NONE' ? checkPercent(target, start, pathEnd) : normalizePath(target, start, pathEnd, mode);
  if (typeof path !== 'string') return path;
  return { ok: true, path: query >= 0 ? path + target.slice(query, end) : path, authority };
}

/** NONE: the path as received, once its percent-encoding is known to be valid. */
function checkPercent(s: string, from: number, to: number): string | RejectedTarget {
  for (let i = s.indexOf('%', from); i >= 0 && i < to; i = s.indexOf('%', i + 3)) {
    const hi = i + 2 < to ? hexValue(s.charCodeAt(i + 1)) : -1;
    const lo = hi >= 0 ? hexValue(s.charCodeAt(i + 2)) : -1;
    if (lo < 0) return badPercent(i);
    if (hi === 0 && lo === 0) return encodedNul(i);
  }
  return s.slice(from, to);
}

/**
 * The path `s[from, to)` (starting with `/`) normalized per `mode` (not NONE): one decoding pass
 * that splits segments at `/`, `\` and (DECODE_AND_MERGE_SLASHES) encoded slashes, RFC 3986
 * §5.2.4 dot-segment removal over the segments, then slash merging.
 */
function normalizePath(s: string, from: number, to: number, mode: PathNormalization): string | RejectedTarget {
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';
  const out: string[] = [];
  let seg = '';
  let run = from + 1;
  const endSegment = (last: boolean): void => {
    if (seg === '.') {
      if (last) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(seg);
    seg = '';
  };
  for (let i = from + 1; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === SLASH || c === BACKSLASH) {
      seg += s.slice(run, i);
      run = i + 1;
      endSegment(false);
    } else if (c === PERCENT) {
      const hi = i + 2 < to ? hexValue(s.charCodeAt(i + 1)) : -1;
      const lo = hi >= 0 ? hexValue(s.charCodeAt(i + 2)) : -1;
      if (lo < 0) return badPercent(i);
      const b = hi * 16 + lo;
      if (b === 0) return encodedNul(i);
      seg += s.slice(run, i);
      run = i + 3;
      if (decodeSlashes && (b === SLASH || b === BACKSLASH)) endSegment(false);
      else seg += unreserved(b) ? String.fromCharCode(b) : `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
    }
  }
  seg += s.slice(run, to);
  endSegment(true);
  if (mode === 'BASE') return `/${out.join('/')}`;
  let merged = '';
  for (let k = 0; k < out.length; k++) {
    const part = out[k] as string;
    if (part !== '') merged += `/${part}`;
    else if (k === out.length - 1) merged += '/';
  }
  return merged === '' ? '/' : merged;
}
