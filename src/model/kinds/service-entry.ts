/**
 * Istio ServiceEntry (networking.istio.io v1, v1beta1, v1alpha3): hosts the mesh does not get
 * from Kubernetes Services, external APIs (MESH_EXTERNAL) or in-mesh workloads under another name
 * (MESH_INTERNAL, with `workloadSelector`). compile/service-entry.ts turns each host into a
 * service the agents resolve like a Kubernetes Service.
 *
 * Validation follows Istio's rules (pkg/config/validation, ValidateServiceEntry), so YAML Istio
 * accepts is accepted here and YAML Istio refuses is refused:
 * - at least one host; `*` alone is refused; a wildcard other than a leading `*.` is a warning;
 * - `workloadSelector` and `endpoints` exclude each other;
 * - addresses are IPs or CIDRs; CIDRs only with resolution NONE or STATIC;
 * - port names (DNS-1123 labels) and numbers are unique, protocols are Istio's;
 * - NONE: no endpoints (workloadSelector is a warning); STATIC: endpoint addresses are IPs;
 *   DNS / DNS_ROUND_ROBIN: endpoint addresses are IPs or FQDNs, without endpoints every host must
 *   be a FQDN (no wildcard, nothing to resolve), DNS_ROUND_ROBIN has at most one endpoint;
 * - endpoint `ports` keys name ports of the entry;
 * - several hosts with a resolution other than NONE need HTTP or TLS ports (plain TCP cannot
 *   tell the hosts apart).
 * What ambit adds, as warnings: STATIC without endpoints or workloadSelector (no route), and
 * hosts that get no address at all (resolution NONE without `addresses`), which ambit, matching
 * connections by destination address, cannot recognise.
 */
import { isIP } from 'node:net';
import { arr, enumOf, int, notApplied, obj, opt, record, req, str, unimplemented, type Infer } from '../schema/dsl.js';
import { cidrProblem } from '../../util/cidr.js';
import { labels, nameProblem, portNumber } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

/** Label that opts a ServiceEntry out of VIP auto-allocation (Istio's). */
export const LABEL_AUTOALLOCATE = 'networking.istio.io/enable-autoallocate-ip';

/** Istio's port protocols (case-insensitive there; written upper case here). */
export const ENTRY_PROTOCOLS = ['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'MONGO', 'REDIS', 'MYSQL', 'TCP', 'TLS', 'UDP'] as const;
const HTTP_LIKE = new Set(['HTTP', 'HTTP2', 'GRPC', 'GRPC-WEB']);
const TLS_LIKE = new Set(['HTTPS', 'TLS']);

const protocolName = str({
  check: (p) => (ENTRY_PROTOCOLS.includes(p.toUpperCase() as (typeof ENTRY_PROTOCOLS)[number]) ? undefined : `unsupported protocol ${JSON.stringify(p)} (one of ${ENTRY_PROTOCOLS.join(', ')})`),
});

const portName = str({ code: 'AMBIT_SCHEMA_NAME', check: (n) => (nameProblem(n, 'dns1123-label') === undefined ? undefined : `invalid port name ${JSON.stringify(n)}: a DNS-1123 label (lower case letters, digits and '-')`) });

const entryPort = obj({
  number: req(portNumber),
  protocol: opt(protocolName, 'carried at L4 (TCP); HTTP, HTTPS, GRPC, TLS and the others only describe the traffic; UDP is not carried'),
  name: req(portName),
  targetPort: opt(portNumber),
});

const endpoint = obj({
  address: opt(str()),
  ports: opt(record(portNumber)),
  labels: opt(labels),
  network: notApplied(str(), 'ambit has one network'),
  locality: notApplied(str(), 'ambit has no locality-aware load balancing'),
  weight: unimplemented(int({ min: 0 }), 'endpoints are balanced round robin'),
  serviceAccount: unimplemented(str(), 'an endpoint that is a mesh pod is verified with the pod\'s own identity'),
});

const exportToValue = str({
  check: (v) => (v === '.' || v === '*' || v === '~' || nameProblem(v, 'dns1123-label') === undefined ? undefined : `exportTo ${JSON.stringify(v)} is not ".", "*", "~" or a namespace name`),
});

function isFqdn(h: string): boolean {
  if (h.length === 0 || h.length > 255 || h.includes('*')) return false;
  return h.split('.').every((l) => l.length > 0 && l.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$/.test(l));
}

/** Why a ServiceEntry host is not a DNS name with an optional leading `*.` wildcard, or undefined. */
function entryHostProblem(h: string): string | undefined {
  if (h === '*') return undefined; // refused with its own message below
  const body = h.startsWith('*.') ? h.slice(2) : h;
  if (body.includes('*')) return undefined; // partial wildcard: a warning, reported below
  if (!isFqdn(body)) return `host ${JSON.stringify(h)} is not a valid DNS name (or "*." followed by one)`;
  return undefined;
}

const serviceEntrySpec = obj({
  hosts: req(arr(str({ check: entryHostProblem }))),
  addresses: opt(arr(str({ check: cidrProblem })), 'VIPs (or CIDR blocks) the agents recognise as this entry; without them a host gets an auto-allocated VIP'),
  ports: opt(arr(entryPort)),
  location: opt(enumOf(['MESH_EXTERNAL', 'MESH_INTERNAL']), 'MESH_EXTERNAL (default): reached in plain TCP; MESH_INTERNAL: endpoints that are mesh pods are reached by HBONE'),
  resolution: opt(enumOf(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'], { unimplemented: ['DYNAMIC_DNS'], note: 'ambit has no dynamic forward proxy; use DNS with FQDN hosts' })),
  endpoints: opt(arr(endpoint)),
  workloadSelector: opt(obj({ labels: opt(labels) })),
  exportTo: unimplemented(arr(exportToValue), 'every object is visible mesh-wide'),
  subjectAltNames: unimplemented(arr(str()), 'the waypoint verifies names from the DestinationRule\'s tls.subjectAltNames'),
}, {
  check(spec, path, ctx) {
    const resolution = spec.resolution ?? 'NONE';
    const hosts = spec.hosts;
    const ports = spec.ports ?? [];
    const endpoints = spec.endpoints ?? [];
    const addresses = spec.addresses ?? [];
    const bad = (message: string, at: (string | number)[]) => ctx.report('AMBIT_SCHEMA_INVALID', message, [...path, ...at]);
    const warn = (message: string, at: (string | number)[]) => ctx.report('AMBIT_SCHEMA_INVALID', message, [...path, ...at], { severity: 'warning' });

    if (spec.workloadSelector !== undefined && spec.endpoints !== undefined) bad('only one of workloadSelector or endpoints may be set', ['endpoints']);
    if (spec.workloadSelector !== undefined && Object.keys(spec.workloadSelector.labels ?? {}).length === 0) warn('workloadSelector without labels selects every pod of the namespace', ['workloadSelector']);
    if (hosts.length === 0) bad('a ServiceEntry must have at least one host', ['hosts']);
    hosts.forEach((h, i) => {
      if (h === '*') bad('host "*" is not allowed in a ServiceEntry', ['hosts', i]);
      else if (h.lastIndexOf('*') > 0 || (h.includes('*') && !h.startsWith('*.'))) warn(`partial wildcard ${JSON.stringify(h)} is not allowed: only a leading "*." matches subdomains`, ['hosts', i]);
    });

    const cidr = addresses.findIndex((a) => a.includes('/'));
    if (cidr >= 0 && resolution !== 'NONE' && resolution !== 'STATIC') bad('CIDR addresses are allowed only with resolution NONE or STATIC', ['addresses', cidr]);

    const names = new Map<string, number>();
    const numbers = new Map<number, number>();
    ports.forEach((p, i) => {
      if (names.has(p.name)) bad(`port name ${JSON.stringify(p.name)} is already defined (ports[${names.get(p.name)}])`, ['ports', i, 'name']);
      else names.set(p.name, i);
      if (numbers.has(p.number)) bad(`port ${p.number} is already defined (ports[${numbers.get(p.number)}])`, ['ports', i, 'number']);
      else numbers.set(p.number, i);
    });

    const endpointPorts = (e: (typeof endpoints)[number], i: number) => {
      for (const name of Object.keys(e.ports ?? {})) {
        if (!names.has(name)) bad(`endpoint port ${JSON.stringify(name)} is not a port of the ServiceEntry (${[...names.keys()].join(', ') || 'it has none'})`, ['endpoints', i, 'ports', name]);
      }
    };
    switch (resolution) {
      case 'NONE':
        if (endpoints.length > 0) bad('resolution NONE takes no endpoints (connections go to the address the client dialed)', ['endpoints']);
        if (spec.workloadSelector !== undefined) warn('workloadSelector should not be set with resolution NONE', ['workloadSelector']);
        if (addresses.length === 0) warn('resolution NONE without addresses: ambit recognises a ServiceEntry by the destination address, so connections to these hosts are treated as unregistered (refused under outboundTrafficPolicy REGISTRY_ONLY); add addresses, or use STATIC or DNS resolution for an auto-allocated VIP', ['resolution']);
        break;
      case 'STATIC':
        endpoints.forEach((e, i) => {
          if (e.address === undefined || e.address === '') bad('address is required', ['endpoints', i]);
          else if (e.address.startsWith('unix://')) ctx.report('AMBIT_SCHEMA_UNIMPLEMENTED', 'unix socket endpoints are not implemented: the agent connects over TCP', [...path, 'endpoints', i, 'address']);
          else if (isIP(e.address) === 0) bad(`endpoint address ${JSON.stringify(e.address)} is not a valid IP address (resolution STATIC)`, ['endpoints', i, 'address']);
          endpointPorts(e, i);
        });
        if (endpoints.length === 0 && spec.workloadSelector === undefined) warn('resolution STATIC without endpoints or workloadSelector: connections to this entry have no destination and are refused', ['resolution']);
        break;
      case 'DNS':
      case 'DNS_ROUND_ROBIN': {
        if (endpoints.length === 0) {
          const i = hosts.findIndex((h) => !isFqdn(h));
          if (i >= 0) bad(`hosts must be FQDNs when no endpoints are given for resolution ${resolution} (${JSON.stringify(hosts[i])} cannot be resolved)`, ['hosts', i]);
        }
        if (resolution === 'DNS_ROUND_ROBIN' && endpoints.length > 1) bad(`resolution DNS_ROUND_ROBIN takes 0 or 1 endpoint (has ${endpoints.length})`, ['endpoints']);
        endpoints.forEach((e, i) => {
          if (e.address === undefined || e.address === '') bad('address is required', ['endpoints', i]);
          else if (isIP(e.address) === 0 && !isFqdn(e.address)) bad(`endpoint address ${JSON.stringify(e.address)} is not a valid FQDN or an IP address`, ['endpoints', i, 'address']);
          endpointPorts(e, i);
        });
        if (addresses.length > 0 && hosts.length > 1 && ports.some((p) => (p.protocol ?? 'TCP').toUpperCase() === 'TCP')) {
          warn('a ServiceEntry should not have more than one host together with addresses and a TCP port', ['hosts']);
        }
        break;
      }
      case 'DYNAMIC_DNS':
        break;
    }

    if (resolution !== 'NONE' && hosts.length > 1) {
      const i = ports.findIndex((p) => {
        const proto = (p.protocol ?? '').toUpperCase();
        return !HTTP_LIKE.has(proto) && !TLS_LIKE.has(proto);
      });
      if (i >= 0) bad('multiple hosts with a non-HTTP, non-TLS port: plain TCP cannot tell the hosts apart (use one ServiceEntry per host, or resolution NONE)', ['ports', i]);
    }
  },
});

export const serviceEntryKind = defineKind({
  group: 'networking.istio.io',
  kind: 'ServiceEntry',
  versions: ['v1', 'v1beta1', 'v1alpha3'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: serviceEntrySpec,
  specRequired: true,
  summary: 'hosts outside the Kubernetes Services (external APIs, VIPs, CIDRs) as services of the mesh',
});
export type ServiceEntrySpec = Infer<typeof serviceEntrySpec>;
export type ServiceEntryResource = Resource<ServiceEntrySpec, unknown>;
