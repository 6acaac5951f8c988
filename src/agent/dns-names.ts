/**
 * The DNS proxy's name table: which names the mesh answers itself, and with which addresses.
 *
 * Entries are `DnsHost`s: a fully qualified host name (or a `*.` wildcard) with its addresses.
 * Services of the agent's view give one host each, `<name>.<namespace>.svc.<cluster-domain>` (the
 * model's `hostname`) with the Service's VIPs. ServiceEntry hosts arrive as services of the view
 * too (the model compiles each host into one, `serviceEntry` set): they answer their exact name,
 * or every subdomain for a `*.` host, with the entry's addresses or its auto-allocated VIP, and
 * no short forms.
 *
 * Besides the FQDN, a Service answers the forms a pod's search path would otherwise have to reach
 * through the upstream (as Istio's DNS proxy does): `<name>.<namespace>.svc`, `<name>.<namespace>`,
 * and `<name>` alone for pods of the same namespace. A pod's resolver library appends its search
 * domains itself (glibc, musl, c-ares all try `<name>.<ns>.svc.cluster.local` first under the
 * Kubernetes `ndots:5`), so the FQDN is what normally arrives; the short forms serve resolvers
 * configured without search domains.
 *
 * Invariants:
 * - A table is immutable; the agent builds one per applied view and swaps it in, so one query is
 *   answered from one consistent view.
 * - Names are compared lowercased, without the trailing dot (DNS names are case-insensitive).
 * - An exact name wins over a wildcard; of two wildcards the longer suffix wins. Two hosts of the
 *   same name merge their addresses (deduplicated, in insertion order).
 * - Only hosts with at least one address are answered; a headless Service (no VIP) is left to
 *   the upstream resolver, which knows its endpoints.
 */
import { isIP } from 'node:net';
import type { ServiceView } from './mesh-state.js';

/** A host the mesh answers for. */
export interface DnsHost {
  /** FQDN without trailing dot, e.g. `web.shop.svc.cluster.local`; `*.example.com` matches subdomains. */
  hostname: string;
  /** IPv4 and IPv6 addresses answered for A and AAAA (VIPs). */
  addresses: readonly string[];
  /**
   * Namespace of a Kubernetes Service, enabling the short forms `<name>.<ns>.svc`, `<name>.<ns>`
   * and (for pods of that namespace) `<name>`; absent for other hosts (ServiceEntry), which
   * answer their exact name only (default absent).
   */
  serviceNamespace?: string;
}

/** What the table knows of a name: its addresses by family (either may be empty). */
export interface DnsRecord {
  hostname: string;
  ipv4: readonly string[];
  ipv6: readonly string[];
}

export interface DnsNameTableOptions {
  /** Kubernetes cluster domain, the suffix of Service FQDNs (default `cluster.local`). */
  clusterDomain?: string;
}

function normalize(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

export class DnsNameTable {
  readonly clusterDomain: string;
  readonly #exact = new Map<string, DnsRecord>();
  readonly #wildcards: [suffix: string, record: DnsRecord][] = [];
  /** `<name>.<ns>` -> FQDN, for the short forms. */
  readonly #short = new Map<string, string>();

  constructor(hosts: Iterable<DnsHost>, opts: DnsNameTableOptions = {}) {
    this.clusterDomain = normalize(opts.clusterDomain ?? 'cluster.local');
    const exact = new Map<string, { v4: Set<string>; v6: Set<string> }>();
    for (const h of hosts) {
      const name = normalize(h.hostname);
      if (name === '' || name === '*') continue;
      let e = exact.get(name);
      if (e === undefined) exact.set(name, (e = { v4: new Set(), v6: new Set() }));
      for (const a of h.addresses) {
        const family = isIP(a);
        if (family === 4) e.v4.add(a);
        else if (family === 6) e.v6.add(a);
      }
      if (h.serviceNamespace !== undefined && !name.startsWith('*.')) {
        const suffix = `.${normalize(h.serviceNamespace)}.svc.${this.clusterDomain}`;
        if (name.endsWith(suffix)) this.#short.set(`${name.slice(0, -suffix.length)}.${normalize(h.serviceNamespace)}`, name);
      }
    }
    for (const [name, e] of exact) {
      if (e.v4.size === 0 && e.v6.size === 0) continue;
      const record: DnsRecord = { hostname: name, ipv4: [...e.v4], ipv6: [...e.v6] };
      if (name.startsWith('*.')) this.#wildcards.push([name.slice(1), record]);
      else this.#exact.set(name, record);
    }
    this.#wildcards.sort((a, b) => b[0].length - a[0].length);
  }

  /** A table of the view's Services (ServiceEntry hosts included) plus `extraHosts`. */
  static fromServices(services: Iterable<Pick<ServiceView, 'name' | 'namespace' | 'hostname' | 'vip' | 'vips' | 'serviceEntry'>>, opts: DnsNameTableOptions & { extraHosts?: Iterable<DnsHost> } = {}): DnsNameTable {
    const hosts: DnsHost[] = [];
    for (const s of services) {
      const addresses = s.vips.length > 0 ? s.vips : s.vip !== undefined ? [s.vip] : [];
      hosts.push(s.serviceEntry !== undefined ? { hostname: s.hostname, addresses } : { hostname: s.hostname, addresses, serviceNamespace: s.namespace });
    }
    for (const h of opts.extraHosts ?? []) hosts.push(h);
    return new DnsNameTable(hosts, opts);
  }

  get size(): number {
    return this.#exact.size + this.#wildcards.length;
  }

  /**
   * The record for a queried name, or undefined when the mesh does not know it (forward it).
   * `podNamespace` enables the single-label form `<name>` for that namespace's Services.
   */
  lookup(qname: string, podNamespace?: string): DnsRecord | undefined {
    const name = normalize(qname);
    const hit = this.#exact.get(name);
    if (hit !== undefined) return hit;
    const short = this.#shortForm(name, podNamespace);
    if (short !== undefined) return this.#exact.get(short);
    for (const [suffix, record] of this.#wildcards) {
      if (name.endsWith(suffix) && name.length > suffix.length) return record;
    }
    return undefined;
  }

  #shortForm(name: string, podNamespace: string | undefined): string | undefined {
    const labels = name.split('.');
    if (labels.length === 3 && labels[2] === 'svc') return this.#short.get(`${labels[0]}.${labels[1]}`);
    if (labels.length === 2) return this.#short.get(name);
    if (labels.length === 1 && podNamespace !== undefined) return this.#short.get(`${name}.${normalize(podNamespace)}`);
    return undefined;
  }
}
