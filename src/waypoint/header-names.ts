/**
 * Header checks shared by the HTTP/1.1 codecs: whether a name is an RFC 9110 token, its
 * lower-case form, and whether a value can be written into a head. The same few dozen names
 * come back on every request, so name answers are remembered (a bounded map), which takes a
 * regex and a case conversion off the per-header path.
 *
 * Invariant: the answer for a name never depends on the cache (a full cache only stops caching).
 */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MAX_CACHED = 2048;
const cache = new Map<string, string | null>();

/** The lower-case form of a header name, or undefined when the name is not a token. */
export function headerName(raw: string): string | undefined {
  let v = cache.get(raw);
  if (v === undefined) {
    v = TOKEN.test(raw) ? raw.toLowerCase() : null;
    if (cache.size < MAX_CACHED) cache.set(raw, v);
  }
  return v ?? undefined;
}

/** Whether `s` is a token (methods, header names). */
export function isToken(s: string): boolean {
  return headerName(s) !== undefined;
}

/**
 * Whether a header value holds what may not be written into a head: a CTL other than HTAB
 * (DEL included), or anything beyond latin1 (heads are written as latin1, so U+010A would leave
 * as a LF byte). The set `/[^\t\x20-\x7e\x80-\xff]/` matches, checked per UTF-16 unit
 * without a regex call (a few of these run for every header of every request).
 */
export function badHeaderValue(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 ? c !== 0x09 : c === 0x7f || c > 0xff) return true;
  }
  return false;
}
