/**
 * Shared test helpers for authorization: policies are written as real Istio YAML documents and
 * compiled the way the model loader does, contexts are built from short descriptions.
 */
import { parseAllDocuments } from 'yaml';
import { compileAuthorizationPolicy } from '../../../../src/model/authz/compile.js';
import type { AuthorizationPolicySpec, AuthzContext, AuthzPolicy, AuthzRequest } from '../../../../src/model/authz/types.js';

export const SLEEP = 'cluster.local/ns/default/sa/sleep';
export const PRODUCTPAGE = 'cluster.local/ns/bookinfo/sa/productpage';
export const ADMIN = 'cluster.local/ns/ops/sa/admin';

/** Compiles every AuthorizationPolicy document of a YAML stream, in order. */
export function policiesFromYaml(text: string): AuthzPolicy[] {
  const out: AuthzPolicy[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`bad test YAML: ${doc.errors[0]?.message ?? ''}`);
    const obj = doc.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string }; spec?: AuthorizationPolicySpec } | null;
    if (obj === null || obj === undefined) continue;
    if (obj.kind !== 'AuthorizationPolicy') throw new Error(`bad test YAML: kind ${String(obj.kind)}`);
    out.push(compileAuthorizationPolicy({ namespace: obj.metadata?.namespace ?? 'bookinfo', name: obj.metadata?.name ?? 'unnamed' }, obj.spec ?? {}));
  }
  return out;
}

/** A short description of a connection / request. */
export interface CtxSpec {
  principal?: string;
  namespace?: string;
  ip?: string;
  remoteIp?: string;
  dstIp?: string;
  port?: number;
  dstNamespace?: string;
  labels?: Record<string, string>;
  req?: AuthzRequest;
}

export function ctx(s: CtxSpec = {}): AuthzContext {
  const c: AuthzContext = {
    source: { ip: s.ip ?? '198.18.0.10' },
    destination: { ip: s.dstIp ?? '198.19.1.5', port: s.port ?? 9080 },
  };
  if (s.principal !== undefined) c.source.principal = s.principal;
  if (s.namespace !== undefined) c.source.namespace = s.namespace;
  if (s.remoteIp !== undefined) c.source.remoteIp = s.remoteIp;
  if (s.dstNamespace !== undefined) c.destination.namespace = s.dstNamespace;
  if (s.labels !== undefined) c.destination.labels = s.labels;
  if (s.req !== undefined) c.request = s.req;
  return c;
}
