/**
 * The `when` condition keys of Istio's AuthorizationPolicy, and which of them ambit evaluates.
 *
 * Supported: source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount,
 * source.trustDomain, destination.ip, destination.port (L4); request.headers[NAME], request.auth.principal, request.auth.audiences,
 * request.auth.presenter, request.auth.claims[NAME] with nested [a][b] (L7).
 * Recognised but unsupported: connection.sni, experimental.* (reported; evaluation fails closed).
 * Anything else is unknown (a lint error; evaluation fails closed the same way).
 */

export type ConditionKey =
  | { readonly kind: 'source.ip' | 'remote.ip' | 'destination.ip'; readonly l7: false }
  | { readonly kind: 'source.namespace' | 'source.principal' | 'source.serviceAccount' | 'source.trustDomain'; readonly l7: false }
  | { readonly kind: 'destination.port'; readonly l7: false }
  | { readonly kind: 'request.headers'; readonly l7: true; readonly name: string }
  | { readonly kind: 'request.auth.principal' | 'request.auth.audiences' | 'request.auth.presenter'; readonly l7: true }
  | { readonly kind: 'request.auth.claims'; readonly l7: true; readonly path: readonly string[] }
  | { readonly kind: 'unsupported'; readonly l7: false; readonly why: string }
  | { readonly kind: 'unknown'; readonly l7: false; readonly why: string };

const SIMPLE: Record<string, ConditionKey> = {
  'source.ip': { kind: 'source.ip', l7: false },
  'remote.ip': { kind: 'remote.ip', l7: false },
  'destination.ip': { kind: 'destination.ip', l7: false },
  'source.namespace': { kind: 'source.namespace', l7: false },
  'source.principal': { kind: 'source.principal', l7: false },
  'source.serviceAccount': { kind: 'source.serviceAccount', l7: false },
  'source.trustDomain': { kind: 'source.trustDomain', l7: false },
  'destination.port': { kind: 'destination.port', l7: false },
  'request.auth.principal': { kind: 'request.auth.principal', l7: true },
  'request.auth.audiences': { kind: 'request.auth.audiences', l7: true },
  'request.auth.presenter': { kind: 'request.auth.presenter', l7: true },
};

const HEADER = /^request\.headers\[([^[\]]+)\]$/;
const CLAIMS = /^request\.auth\.claims((?:\[[^[\]]+\])+)$/;

/** Classifies a `when` key. */
export function parseConditionKey(key: string): ConditionKey {
  const simple = Object.prototype.hasOwnProperty.call(SIMPLE, key) ? SIMPLE[key] : undefined;
  if (simple !== undefined) return simple;
  const h = HEADER.exec(key);
  if (h !== null) return { kind: 'request.headers', l7: true, name: (h[1] as string).toLowerCase() };
  const c = CLAIMS.exec(key);
  if (c !== null) {
    const path = (c[1] as string).slice(1, -1).split('][');
    return { kind: 'request.auth.claims', l7: true, path };
  }
  if (key === 'connection.sni') return { kind: 'unsupported', l7: false, why: 'connection.sni is not supported by ambit' };
  if (key.startsWith('experimental.')) return { kind: 'unsupported', l7: false, why: `${key} is an Envoy-specific key ambit does not support` };
  if (key.startsWith('request.headers')) return { kind: 'unknown', l7: false, why: `"${key}" must be written request.headers[NAME]` };
  if (key.startsWith('request.auth.claims')) return { kind: 'unknown', l7: false, why: `"${key}" must be written request.auth.claims[NAME] or request.auth.claims[A][B]` };
  return { kind: 'unknown', l7: false, why: `unknown condition key "${key}"` };
}
