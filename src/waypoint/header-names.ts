/**
 * Header-name checks shared by the HTTP/1.1 codecs: whether a name is an RFC 9110 token, and
 * its lower-case form. The same few dozen names come back on every request, so answers are
 * remembered (a bounded map), which takes a regex and a case conversion off the per-header path.
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
