/**
 * Host names as Istio resolves them. A Service is `name.namespace.svc.<cluster-domain>`. A
 * host in a VirtualService or DestinationRule without a dot is a short name, completed with the
 * namespace of the object that wrote it (not the namespace of the Service); a host with a dot
 * is taken as fully qualified, exactly as Istio does (`reviews.bookinfo` is NOT expanded).
 * `*` and `*.suffix` are wildcards.
 */
import { isIP } from 'node:net';

export function serviceHostname(name: string, namespace: string, clusterDomain: string): string {
  return `${name}.${namespace}.svc.${clusterDomain}`;
}

/** Istio's ResolveShortnameToFQDN. */
export function resolveHost(host: string, namespace: string, clusterDomain: string): string {
  if (host === '*' || host.includes('.') || isIP(host) !== 0) return host;
  return `${host}.${namespace}.svc.${clusterDomain}`;
}

export function isWildcard(host: string): boolean {
  return host.startsWith('*');
}

/** True when `pattern` (a FQDN or wildcard) covers the concrete `hostname`. */
export function hostMatches(pattern: string, hostname: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return hostname.endsWith(pattern.slice(1)) && hostname.length > pattern.length - 1;
  return pattern === hostname;
}

/** Why a dotted host looks like a Kubernetes short form that Istio will not expand, or undefined. */
export function shortFormHint(host: string, clusterDomain: string): string | undefined {
  const parts = host.split('.');
  if (parts.length === 2) return `write the full name ${parts[0]}.${parts[1]}.svc.${clusterDomain} (Istio only expands names without dots)`;
  if (parts.length === 3 && parts[2] === 'svc') return `write the full name ${host}.${clusterDomain} (Istio only expands names without dots)`;
  return undefined;
}
