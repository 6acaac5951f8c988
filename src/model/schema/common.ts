/**
 * Schemas shared by several kinds: Kubernetes names, labels and metadata, IPs and CIDRs, ports,
 * hosts, Istio's StringMatch, WorkloadSelector and PolicyTargetReference.
 *
 * The name and label rules are Kubernetes' own (apimachinery validation): DNS-1123 labels
 * (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, <= 63), DNS-1123 subdomains (<= 253), DNS-1035 labels for
 * Service names, qualified label keys (`prefix/name`) and label values (<= 63).
 */
import { cidrProblem, parseIp } from '../../util/cidr.js';
import { enumOf, ignored, int, obj, opt, record, req, str, type Infer, type Schema } from './dsl.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export type NameRule = 'dns1123-label' | 'dns1123-subdomain' | 'dns1035-label';

/** Why `name` breaks `rule`, or undefined when it is valid. */
export function nameProblem(name: string, rule: NameRule): string | undefined {
  if (rule === 'dns1123-subdomain') {
    if (name.length > 253) return `name ${JSON.stringify(name)} is longer than 253 characters`;
    if (!DNS1123_SUBDOMAIN.test(name)) return `name ${JSON.stringify(name)} must be a DNS-1123 subdomain: lower case letters, digits, '-' and '.', starting and ending with a letter or digit`;
    return undefined;
  }
  if (name.length > 63) return `name ${JSON.stringify(name)} is longer than 63 characters`;
  if (rule === 'dns1035-label' && !DNS1035_LABEL.test(name)) {
    return `name ${JSON.stringify(name)} must be a DNS-1035 label: lower case letters, digits and '-', starting with a letter`;
  }
  if (!DNS1123_LABEL.test(name)) return `name ${JSON.stringify(name)} must be a DNS-1123 label: lower case letters, digits and '-', starting and ending with a letter or digit`;
  return undefined;
}

export function dnsName(rule: NameRule): Schema<string> {
  return str({ code: 'AMBIT_SCHEMA_NAME', check: (s) => nameProblem(s, rule) });
}

/** Why a label key is invalid, or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)}: prefix must be a DNS-1123 subdomain`;
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    return `label key ${JSON.stringify(key)}: name must be 1-63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why a label value is invalid, or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63 || !LABEL_NAME.test(value)) {
    return `label value ${JSON.stringify(value)} must be at most 63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit`;
  }
  return undefined;
}

export const labels = record(str({ code: 'AMBIT_SCHEMA_LABEL', check: labelValueProblem }), {
  key: (k) => {
    const p = labelKeyProblem(k);
    return p === undefined ? undefined : { code: 'AMBIT_SCHEMA_LABEL', message: p };
  },
});

export const annotations = record(str());

/** Kubernetes ObjectMeta: the fields ambit reads, plus those it accepts and ignores. */
export const objectMeta = obj({
  name: req(str({ minLength: 1 })),
  namespace: opt(dnsName('dns1123-label')),
  labels: opt(labels),
  annotations: opt(annotations),
  uid: opt(str()),
  creationTimestamp: opt(str()),
  generateName: ignored(),
  resourceVersion: ignored(),
  generation: ignored(),
  deletionTimestamp: ignored(),
  deletionGracePeriodSeconds: ignored(),
  ownerReferences: ignored(),
  finalizers: ignored(),
  managedFields: ignored(),
  selfLink: ignored(),
});
export type ObjectMeta = Infer<typeof objectMeta>;

export function ipProblem(s: string): string | undefined {
  return parseIp(s) === undefined ? `${JSON.stringify(s)} is not an IP address` : undefined;
}

export const ipAddress = str({ check: ipProblem });
export const cidr = str({ check: cidrProblem });
export const portNumber = int({ min: 1, max: 65535 });

/**
 * An Istio host: a FQDN, a short name resolved in the resource's namespace, or a wildcard
 * prefix (`*.example.com`, `*`). IP addresses are rejected (Istio does too for routes).
 */
export function hostProblem(h: string): string | undefined {
  if (h === '*') return undefined;
  const body = h.startsWith('*.') ? h.slice(2) : h;
  if (body.includes('*')) return `host ${JSON.stringify(h)}: a wildcard is only allowed as the first label ("*.example.com")`;
  if (h.length > 253) return `host ${JSON.stringify(h)} is longer than 253 characters`;
  for (const label of body.split('.')) {
    if (label.length === 0 || label.length > 63 || !/^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$/.test(label)) {
      return `host ${JSON.stringify(h)} is not a valid DNS name`;
    }
  }
  return undefined;
}
export const host = str({ check: hostProblem });

const regexProblem = (s: string): string | undefined => {
  try {
    new RegExp(s);
    return undefined;
  } catch {
    return `${JSON.stringify(s)} is not a valid regular expression`;
  }
};
export const regex = str({ check: regexProblem });

/** Istio `StringMatch`: exactly one of exact, prefix, regex. */
export const stringMatch = obj({ exact: opt(str()), prefix: opt(str()), regex: opt(regex) }, { exactlyOne: [['exact', 'prefix', 'regex']] });
export type StringMatchSpec = Infer<typeof stringMatch>;

/** Istio `WorkloadSelector`. */
export const workloadSelector = obj({ matchLabels: opt(labels) });

/** Istio `PolicyTargetReference`. */
export const policyTargetRef = obj({
  group: opt(str()),
  kind: req(str({ minLength: 1 })),
  name: req(str({ minLength: 1 })),
  namespace: opt(str()),
});

export const protocol = enumOf(['TCP', 'UDP', 'SCTP'], { unimplemented: ['UDP', 'SCTP'], note: 'ambit carries TCP only' });
