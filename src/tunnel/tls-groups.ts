/**
 * TLS key-exchange groups: the list every mesh TLS endpoint offers (HBONE both ways, the gRPC
 * link to the control plane), its validation at start-up, and reading which group a finished
 * handshake negotiated.
 *
 * Invariants:
 * - The default offers the hybrid post-quantum group X25519MLKEM768 first, then X25519, so two
 *   ambit peers agree on X25519MLKEM768 while a classical-only peer still connects with X25519.
 *   The client sends a key share for the first group only (OpenSSL's rule for a plain list), so a
 *   classical-only server costs one HelloRetryRequest round trip; `bench/tls-handshake.ts`
 *   measures it.
 * - A list is validated group by group through OpenSSL itself (a secure context is created with
 *   each group), so a bad list fails at start-up naming the group, never at the first handshake.
 * - The negotiated group is read, never inferred: both sides take it from OpenSSL's record of
 *   the session (`kex_group` in the DER `tlsSocket.getSession()` returns, ssl/ssl_asn1.c tag
 *   [19]), which Node fills on the server as well as on the client. Node's own
 *   `getEphemeralKeyInfo()` answers on the client only (`null` on a server socket, Node 24), so
 *   it is the client's fallback; when neither answers the group is reported as `unknown`.
 */
import { createSecureContext, type TLSSocket } from 'node:tls';
import { AmbitError } from '../util/errors.js';

/** What ambit offers unless told otherwise (`--tls-groups`). */
export const DEFAULT_TLS_GROUPS: readonly string[] = Object.freeze(['X25519MLKEM768', 'X25519']);

/** Reported when OpenSSL did not record a group for the connection. */
export const UNKNOWN_GROUP = 'unknown';

/** A bad `--tls-groups` list. */
export class TlsGroupsError extends AmbitError {
  /** `group`: the offending group name, when one is to blame. */
  constructor(message: string, readonly group?: string) {
    super('AMBIT_ERR_TLS_GROUPS', message);
    this.name = 'TlsGroupsError';
  }
}

/**
 * Parses a colon- or comma-separated list of TLS group names (OpenSSL's names, case-insensitive,
 * e.g. `X25519MLKEM768:X25519`) and checks that this runtime's OpenSSL knows every one.
 * OpenSSL's own list syntax (`*`, `?`, `-`, `/` tuples) is refused: the list means "offer these,
 * in this order" and nothing else.
 */
export function parseTlsGroups(text: string): string[] {
  const groups = text.split(/[:,]/).map((g) => g.trim());
  if (groups.length === 0 || groups.every((g) => g === '')) throw new TlsGroupsError('the TLS group list is empty; name at least one group, e.g. X25519MLKEM768:X25519');
  const seen = new Set<string>();
  for (const g of groups) {
    if (g === '') throw new TlsGroupsError(`the TLS group list '${text}' has an empty entry (two separators in a row, or one at an end)`);
    if (!/^[A-Za-z0-9_-]+$/.test(g)) throw new TlsGroupsError(`TLS group '${g}' is not a group name (only letters, digits, '_' and '-'; OpenSSL's list operators are not accepted)`, g);
    const key = g.toLowerCase();
    if (seen.has(key)) throw new TlsGroupsError(`TLS group '${g}' is listed twice in '${text}'`, g);
    seen.add(key);
    try {
      createSecureContext({ ecdhCurve: g, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    } catch (err) {
      throw new TlsGroupsError(`TLS group '${g}' is not supported by this runtime's OpenSSL (${process.versions.openssl}): ${(err as Error).message}; known groups include ${[...NAMES.values()].join(', ')}`, g);
    }
  }
  return groups;
}

/**
 * The `ecdhCurve` option value for `groups` (default DEFAULT_TLS_GROUPS): the groups in order of
 * preference. When the first is a hybrid post-quantum group, the ClientHello carries a key share
 * for it and for the first classical group after it (OpenSSL's `*` prefix), as browsers do: a
 * classical-only peer then answers at once instead of with a HelloRetryRequest, a full round trip
 * across nodes, for about 40 more bytes of ClientHello. Otherwise only the first group gets a
 * share (OpenSSL's default).
 */
export function ecdhCurve(groups: readonly string[] = DEFAULT_TLS_GROUPS): string {
  const first = groups[0];
  if (first === undefined || !isHybrid(first)) return groups.join(':');
  const classical = groups.findIndex((g) => !isHybrid(g));
  if (classical === -1) return groups.join(':');
  return groups.map((g, i) => (i === 0 || i === classical ? `*${g}` : g)).join(':');
}

const isHybrid = (group: string): boolean => /MLKEM/i.test(group);

/** IANA TLS Supported Groups code points, named as OpenSSL names them. */
const NAMES = new Map<number, string>([
  [0x0017, 'secp256r1'], [0x0018, 'secp384r1'], [0x0019, 'secp521r1'],
  [0x001d, 'X25519'], [0x001e, 'X448'],
  [0x0100, 'ffdhe2048'], [0x0101, 'ffdhe3072'], [0x0102, 'ffdhe4096'], [0x0103, 'ffdhe6144'], [0x0104, 'ffdhe8192'],
  [0x0200, 'MLKEM512'], [0x0201, 'MLKEM768'], [0x0202, 'MLKEM1024'],
  [0x11eb, 'SecP256r1MLKEM768'], [0x11ec, 'X25519MLKEM768'], [0x11ed, 'SecP384r1MLKEM1024'],
]);

/** The name of a TLS group code point (`0x....` for one not in the table). */
export function groupName(codePoint: number): string {
  return NAMES.get(codePoint) ?? `0x${codePoint.toString(16).padStart(4, '0')}`;
}

/** OpenSSL curve short names that getEphemeralKeyInfo reports under another name than the TLS group's. */
const CURVE_ALIASES: Record<string, string> = { prime256v1: 'secp256r1' };

/** The key-exchange group `socket` negotiated (after its handshake), or `unknown`. */
export function negotiatedGroup(socket: TLSSocket): string {
  let session: Buffer | undefined;
  try {
    session = socket.getSession();
  } catch {
    session = undefined;
  }
  const code = session === undefined ? undefined : sessionKexGroup(session);
  if (code !== undefined) return groupName(code);
  const info = socket.getEphemeralKeyInfo();
  if (info !== null && typeof info === 'object' && 'name' in info && typeof info.name === 'string') return CURVE_ALIASES[info.name] ?? info.name;
  return UNKNOWN_GROUP;
}

/** Reads one DER TLV at `at`: tag byte, content start and end; undefined when malformed. */
function tlv(der: Buffer, at: number): { tag: number; start: number; end: number } | undefined {
  if (at + 2 > der.length) return undefined;
  const tag = der[at] as number;
  let len = der[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] as number);
    start += n;
  }
  const end = start + len;
  return end > der.length ? undefined : { tag, start, end };
}

/**
 * `kex_group` of an OpenSSL SSL_SESSION in DER (`SEQUENCE { ..., [19] EXPLICIT INTEGER }`),
 * or undefined when the field is absent (no group recorded) or the encoding is not understood.
 */
export function sessionKexGroup(der: Buffer): number | undefined {
  const outer = tlv(der, 0);
  if (outer === undefined || outer.tag !== 0x30) return undefined;
  for (let at = outer.start; at < outer.end;) {
    const field = tlv(der, at);
    if (field === undefined) return undefined;
    if (field.tag === 0xb3) { // [19] constructed, context-specific
      const int = tlv(der, field.start);
      if (int === undefined || int.tag !== 0x02 || int.end - int.start > 4 || int.end === int.start) return undefined;
      let v = 0;
      for (let i = int.start; i < int.end; i++) v = v * 256 + (der[i] as number);
      return v;
    }
    at = field.end;
  }
  return undefined;
}
