/**
 * The Kubernetes core (v1) kinds the mesh reads: Namespace, Pod, Service, ServiceAccount, Node,
 * and Secret (TLS certificates of ingress listeners).
 * Only the fields that matter to the mesh are validated and kept; the many fields that do not
 * (container images, volumes, probes, ...) are known and accepted silently, so real manifests
 * do not drown the operator in warnings, while typos are still reported as unknown fields.
 */
import { bool, enumOf, ignored, intOrString, obj, opt, record, req, str, arr, type Infer, type Schema } from '../schema/dsl.js';
import { cidr, dnsName, ipAddress, ipProblem, labels, portNumber, protocol } from '../schema/common.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

/** IANA service name (a named port): <= 15 lower-case letters, digits and '-', at least one letter. */
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const portName = str({ pattern: IANA_SVC_NAME, maxLength: 15, code: 'AMBIT_SCHEMA_NAME', format: 'an IANA port name (<= 15 lower-case letters, digits, "-")' });

// ------------------------------------------------------------------------------- Namespace

const namespaceSpec = obj({ finalizers: ignored() });

export const namespaceKind = defineKind({
  group: '',
  kind: 'Namespace',
  versions: ['v1'],
  namespaced: false,
  nameRule: 'dns1123-label',
  spec: namespaceSpec,
  summary: 'label ambit.dev/dataplane-mode=ambient enrolls its pods; ambit.dev/use-waypoint binds a waypoint',
});
export type NamespaceResource = Resource<Infer<typeof namespaceSpec>, undefined>;

// ------------------------------------------------------------------------------------- Pod

const containerPort = obj({
  containerPort: req(portNumber),
  name: opt(portName),
  protocol: opt(protocol),
  hostPort: ignored(),
  hostIP: ignored(),
});

const CONTAINER_IGNORED = [
  'image', 'command', 'args', 'env', 'envFrom', 'resources', 'volumeMounts', 'volumeDevices', 'livenessProbe',
  'readinessProbe', 'startupProbe', 'lifecycle', 'terminationMessagePath', 'terminationMessagePolicy',
  'imagePullPolicy', 'securityContext', 'stdin', 'stdinOnce', 'tty', 'workingDir', 'restartPolicy', 'resizePolicy',
] as const;

function ignoring<const K extends readonly string[]>(keys: K): { [P in K[number]]: ReturnType<typeof ignored> } {
  const out: Record<string, ReturnType<typeof ignored>> = {};
  for (const k of keys) out[k] = ignored();
  return out as { [P in K[number]]: ReturnType<typeof ignored> };
}

const container = obj({
  name: req(dnsName('dns1123-label')),
  ports: opt(arr(containerPort, { uniqueBy: { key: (p) => p.name, what: 'port name' } })),
  ...ignoring(CONTAINER_IGNORED),
});

const POD_SPEC_IGNORED = [
  'volumes', 'restartPolicy', 'terminationGracePeriodSeconds', 'activeDeadlineSeconds', 'dnsPolicy', 'nodeSelector',
  'automountServiceAccountToken', 'securityContext', 'imagePullSecrets', 'hostname', 'subdomain', 'affinity',
  'schedulerName', 'tolerations', 'hostAliases', 'priorityClassName', 'priority', 'dnsConfig', 'readinessGates',
  'runtimeClassName', 'enableServiceLinks', 'preemptionPolicy', 'overhead', 'topologySpreadConstraints',
  'setHostnameAsFQDN', 'os', 'hostUsers', 'schedulingGates', 'resourceClaims', 'hostPID', 'hostIPC',
  'shareProcessNamespace', 'ephemeralContainers', 'resources',
] as const;

const podSpec = obj({
  nodeName: opt(dnsName('dns1123-subdomain')),
  serviceAccountName: opt(dnsName('dns1123-subdomain')),
  serviceAccount: opt(dnsName('dns1123-subdomain')),
  containers: req(arr(container, { minItems: 1, uniqueBy: { key: (c) => c.name, what: 'container name' } })),
  initContainers: opt(arr(container)),
  /** Host-network pods share the node's netns and are never captured. */
  hostNetwork: opt(bool()),
  ...ignoring(POD_SPEC_IGNORED),
});

const podCondition = obj({
  type: req(str()),
  status: req(enumOf(['True', 'False', 'Unknown'])),
  lastProbeTime: ignored(),
  lastTransitionTime: ignored(),
  reason: ignored(),
  message: ignored(),
  observedGeneration: ignored(),
});

const podStatus = obj({
  podIP: opt(ipAddress),
  podIPs: opt(arr(obj({ ip: req(ipAddress) }))),
  hostIP: opt(ipAddress),
  phase: opt(enumOf(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'])),
  conditions: opt(arr(podCondition)),
  ...ignoring([
    'hostIPs', 'startTime', 'containerStatuses', 'initContainerStatuses', 'ephemeralContainerStatuses', 'qosClass',
    'message', 'reason', 'nominatedNodeName', 'resize', 'resourceClaimStatuses', 'observedGeneration',
  ] as const),
});

export const podKind = defineKind({
  group: '',
  kind: 'Pod',
  versions: ['v1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: podSpec,
  specRequired: true,
  status: podStatus,
  summary: 'a workload: spec.nodeName, spec.serviceAccountName, status.podIP, labels',
});
export type PodSpec = Infer<typeof podSpec>;
export type PodStatus = Infer<typeof podStatus>;
export type PodResource = Resource<PodSpec, PodStatus>;

// --------------------------------------------------------------------------------- Service

const servicePort = obj({
  name: opt(dnsName('dns1123-label')),
  port: req(portNumber),
  targetPort: opt(intOrString(portNumber, portName)),
  protocol: opt(protocol),
  appProtocol: opt(str()),
  nodePort: ignored(),
});

const clusterIP = str({
  check: (s) => (s === 'None' || s === '' || ipProblem(s) === undefined ? undefined : `${JSON.stringify(s)} is not an IP address (or "None" for a headless Service)`),
});

const serviceSpec = obj(
  {
    selector: opt(labels),
    ports: opt(
      arr(servicePort, { uniqueBy: { key: (p) => `${p.port}/${p.protocol ?? 'TCP'}`, what: 'port' } }),
    ),
    clusterIP: opt(clusterIP),
    clusterIPs: opt(arr(clusterIP)),
    type: opt(
      enumOf(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'], {
        unimplemented: ['ExternalName'],
        note: 'ExternalName Services are outside the mesh',
      }),
    ),
    externalName: opt(str()),
    sessionAffinity: opt(enumOf(['None', 'ClientIP'], { unimplemented: ['ClientIP'], note: 'endpoints are picked per connection' })),
    publishNotReadyAddresses: opt(bool()),
    ...ignoring([
      'ipFamilies', 'ipFamilyPolicy', 'internalTrafficPolicy', 'externalTrafficPolicy', 'loadBalancerIP',
      'loadBalancerSourceRanges', 'loadBalancerClass', 'externalIPs', 'healthCheckNodePort',
      'allocateLoadBalancerNodePorts', 'sessionAffinityConfig', 'trafficDistribution',
    ] as const),
  },
  {
    check(spec, path, ctx) {
      const ports = spec.ports ?? [];
      if (ports.length > 1) {
        ports.forEach((p, i) => {
          if (p.name === undefined) ctx.report('AMBIT_SCHEMA_REQUIRED', 'a Service with several ports must name each port', [...path, 'ports', i]);
        });
      }
    },
  },
);

export const serviceKind = defineKind({
  group: '',
  kind: 'Service',
  versions: ['v1'],
  namespaced: true,
  nameRule: 'dns1035-label',
  spec: serviceSpec,
  specRequired: true,
  status: obj({ loadBalancer: ignored(), conditions: ignored() }),
  summary: 'a VIP and hostname in front of the pods its selector matches',
});
export type ServiceSpec = Infer<typeof serviceSpec>;
export type ServicePortSpec = Infer<typeof servicePort>;
export type ServiceResource = Resource<ServiceSpec, unknown>;

// -------------------------------------------------------------------------- ServiceAccount

export const serviceAccountKind = defineKind({
  group: '',
  kind: 'ServiceAccount',
  versions: ['v1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: obj({}),
  otherFields: ['secrets', 'imagePullSecrets', 'automountServiceAccountToken'],
  summary: 'the identity of the pods that use it (spiffe://<trust-domain>/ns/<ns>/sa/<name>)',
});
export type ServiceAccountResource = Resource<Record<string, never>, undefined>;

// ------------------------------------------------------------------------------------ Node

const nodeAddress = obj({
  type: req(enumOf(['InternalIP', 'ExternalIP', 'Hostname', 'InternalDNS', 'ExternalDNS'])),
  address: req(str({ minLength: 1 })),
});

const nodeSpec = obj({
  podCIDR: opt(cidr),
  podCIDRs: opt(arr(cidr)),
  ...ignoring(['providerID', 'taints', 'unschedulable', 'configSource', 'externalID'] as const),
});

const nodeStatus = obj({
  addresses: opt(arr(nodeAddress)),
  ...ignoring([
    'capacity', 'allocatable', 'conditions', 'daemonEndpoints', 'nodeInfo', 'images', 'volumesInUse', 'volumesAttached',
    'config', 'phase', 'runtimeHandlers', 'features', 'declaredFeatures',
  ] as const),
});

export const nodeKind = defineKind({
  group: '',
  kind: 'Node',
  versions: ['v1'],
  namespaced: false,
  nameRule: 'dns1123-subdomain',
  spec: nodeSpec,
  status: nodeStatus,
  summary: 'a node running one ambit agent; status.addresses gives its address',
});
export type NodeResource = Resource<Infer<typeof nodeSpec>, Infer<typeof nodeStatus>>;

/** The IANA port-name rule, shared with other kinds. */
export const ianaPortName: Schema<string> = portName;

// ---------------------------------------------------------------------------------- Secret

/** The Secret type of a TLS certificate and key (kubernetes.io/tls: `tls.crt`, `tls.key`). */
export const TLS_SECRET_TYPE = 'kubernetes.io/tls';

/** A Secret's `data` value: base64 (RFC 4648, as the API server stores it). */
const base64Value = str({ pattern: /^[A-Za-z0-9+/\s]*={0,2}\s*$/, code: 'AMBIT_SCHEMA_FORMAT', format: 'base64' });

/** The value of `key` in a Secret: `stringData` wins over `data`, as the API server merges them. */
export function secretValue(spec: SecretSpec, key: string): string | undefined {
  const s = spec.stringData?.[key];
  if (s !== undefined) return s;
  const d = spec.data?.[key];
  return d === undefined ? undefined : Buffer.from(d, 'base64').toString('utf8');
}

const secretContent = obj(
  {
    type: opt(str({ minLength: 1 }), 'kubernetes.io/tls is read (certificateRefs of ingress listeners); other types are accepted and unused'),
    data: opt(record(base64Value)),
    stringData: opt(record(str())),
    immutable: ignored(),
  },
  {
    // Messages name keys, never values: a Secret's content must not reach a log or a terminal.
    check(s, path, ctx) {
      if (s.type !== TLS_SECRET_TYPE) return;
      for (const [key, block] of [['tls.crt', 'CERTIFICATE'], ['tls.key', 'PRIVATE KEY']] as const) {
        const v = secretValue(s, key);
        if (v === undefined) ctx.report('AMBIT_SCHEMA_REQUIRED', `a Secret of type ${TLS_SECRET_TYPE} needs data["${key}"]`, [...path, 'data']);
        else if (!new RegExp(`-----BEGIN [A-Z ]*${block}-----`).test(v)) ctx.report('AMBIT_SCHEMA_FORMAT', `data["${key}"] is not a PEM ${block} block (base64 of the PEM text)`, [...path, 'data', key]);
      }
    },
  },
);

export const secretKind = defineKind({
  group: '',
  kind: 'Secret',
  versions: ['v1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: secretContent,
  specFromTopLevel: ['type', 'data', 'stringData', 'immutable'],
  summary: `${TLS_SECRET_TYPE} certificates of ingress listeners (certificateRefs, credentialName); the key goes only to the ingress that refers to it`,
});
export type SecretSpec = Infer<typeof secretContent>;
export type SecretResource = Resource<SecretSpec, undefined>;
