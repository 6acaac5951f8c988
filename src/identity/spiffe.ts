/**
 * SPIFFE workload identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<sa>`
 * (docs/architecture.md#identity-and-certificates). Parsing is strict: an identity is what a peer
 * is authorized as, so anything that is not exactly canonical (upper case scheme, empty or dot
 * segments, percent-encoding, query, fragment, port, user info, trailing slash, names Kubernetes
 * would refuse) is rejected rather than normalised. `formatSpiffeId(parseSpiffeId(s)) === s` holds
 * for every accepted `s`.
 */
import { InvalidIdentityError } from './errors.js';

/** Trust domain used when none is configured. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** Maximum length of a SPIFFE ID in bytes (SPIFFE ID specification §2.3). */
const MAX_ID_LENGTH = 2048;
/** Trust domain: lower-case letters, digits, dot, dash, underscore (SPIFFE ID specification §2.1). */
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
/** Kubernetes namespace: an RFC 1123 label. */
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Kubernetes service account: an RFC 1123 subdomain. */
const SUBDOMAIN_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface SpiffeId {
  /** The full URI, e.g. `spiffe://cluster.local/ns/default/sa/web`. */
  readonly uri: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface ParseSpiffeIdOptions {
  /** When set, the ID must belong to this trust domain (default: any valid trust domain). */
  trustDomain?: string;
}

/** Parses and validates a workload SPIFFE ID; throws InvalidIdentityError naming the problem. */
export function parseSpiffeId(input: unknown, options: ParseSpiffeIdOptions = {}): SpiffeId {
  if (typeof input !== 'string') throw new InvalidIdentityError(`identity must be a string, got ${typeof input}`);
  const shown = JSON.stringify(input.length > 120 ? `${input.slice(0, 120)}...` : input);
  const bad = (why: string): never => {
    throw new InvalidIdentityError(`invalid identity ${shown}: ${why}; expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  };
  if (input.length === 0) bad('empty');
  if (input.length > MAX_ID_LENGTH) bad(`longer than ${MAX_ID_LENGTH} characters`);
  if (!input.startsWith('spiffe://')) bad('scheme must be "spiffe://" (lower case)');
  const rest = input.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  if (trustDomain.length === 0) bad('trust domain is empty');
  if (trustDomain.length > 255) bad('trust domain longer than 255 characters');
  if (!TRUST_DOMAIN_RE.test(trustDomain)) {
    bad('trust domain may only hold lower-case letters, digits, ".", "-" and "_" (no port, user info or upper case)');
  }
  if (options.trustDomain !== undefined && trustDomain !== options.trustDomain) {
    bad(`trust domain "${trustDomain}" is not the expected "${options.trustDomain}"`);
  }
  if (slash === -1) bad('path is missing');
  const path = rest.slice(slash);
  if (/[?#%]/.test(path)) bad('query, fragment and percent-encoding are not allowed');
  const segments = path.slice(1).split('/');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') bad('path must be exactly /ns/<namespace>/sa/<service-account>');
  const namespace = segments[1] ?? '';
  const serviceAccount = segments[3] ?? '';
  if (namespace.length === 0 || namespace.length > 63 || !NAMESPACE_RE.test(namespace)) {
    bad(`namespace "${namespace}" is not a valid Kubernetes namespace (RFC 1123 label, at most 63 characters)`);
  }
  if (!isSubdomain(serviceAccount)) {
    bad(`service account "${serviceAccount}" is not a valid Kubernetes name (RFC 1123 subdomain, at most 253 characters)`);
  }
  return Object.freeze({ uri: input, trustDomain, namespace, serviceAccount });
}

/** Builds a SPIFFE ID from its parts, validating each. */
export function formatSpiffeId(parts: { trustDomain?: string; namespace: string; serviceAccount: string }): string {
  const uri = `spiffe://${parts.trustDomain ?? DEFAULT_TRUST_DOMAIN}/ns/${parts.namespace}/sa/${parts.serviceAccount}`;
  return parseSpiffeId(uri).uri;
}

/** True when `input` is a valid workload SPIFFE ID (optionally of `trustDomain`). */
export function isSpiffeId(input: unknown, options: ParseSpiffeIdOptions = {}): boolean {
  try {
    parseSpiffeId(input, options);
    return true;
  } catch {
    return false;
  }
}

function isSubdomain(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => label.length > 0 && label.length <= 63 && SUBDOMAIN_LABEL_RE.test(label));
}
