/**
 * Where the Kubernetes API is and how to authenticate to it: in-cluster (service-account token
 * and CA mounted in the pod) or a kubeconfig file (current context; token, token file, or client
 * certificate; CA file or data). Exec and auth-provider plugins are refused with a clear error.
 *
 * Why not @kubernetes/client-node's KubeConfig: client-node 2.x loads undici 8, which needs
 * Node >= 22.19 and fails to import on Node 20 (ambit's engine). This file covers the subset
 * a control plane needs. Tokens are re-read from their file on every request, so projected
 * service-account tokens rotate without a restart; they are never logged.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, dirname, isAbsolute } from 'node:path';
import { parse } from 'yaml';
import { ControlConfigError } from '../errors.js';

export interface KubeConnection {
  /** API server base URL, e.g. https://198.18.200.1:443 (no trailing slash). */
  server: string;
  /** PEM CA bundle to verify the server (default: system roots). */
  caPem?: string;
  /** Skip server verification (kubeconfig insecure-skip-tls-verify; default false). */
  insecureSkipTlsVerify?: boolean;
  /** Client certificate and key, PEM. */
  certPem?: string;
  keyPem?: string;
  /** Returns the bearer token to send now, or undefined. */
  token?: () => string | undefined;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** In-cluster configuration from the pod's environment and mounted service account. */
export function inClusterConnection(saDir = SA_DIR, env: NodeJS.ProcessEnv = process.env): KubeConnection {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '443';
  if (host === undefined) {
    throw new ControlConfigError('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); pass --kubeconfig FILE');
  }
  const tokenFile = join(saDir, 'token');
  const read = (f: string) => {
    try { return readFileSync(f, 'utf8'); } catch (err) {
      throw new ControlConfigError(`cannot read ${f}: ${(err as Error).message}; is a service account token mounted?`, { cause: err });
    }
  };
  read(tokenFile);
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    caPem: read(join(saDir, 'ca.crt')),
    token: () => readFileSync(tokenFile, 'utf8').trim(),
  };
}

interface NamedEntry<T> { name?: string; cluster?: T; user?: T; context?: T }

/** Configuration from a kubeconfig file (default $KUBECONFIG or ~/.kube/config), current context. */
export function kubeconfigConnection(file?: string, context?: string): KubeConnection {
  const path = file ?? process.env['KUBECONFIG']?.split(':')[0] ?? join(homedir(), '.kube', 'config');
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ControlConfigError(`cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  const bad = (why: string): never => { throw new ControlConfigError(`kubeconfig ${path}: ${why}`); };
  if (typeof doc !== 'object' || doc === null) bad('not a YAML mapping');
  const ctxName = context ?? (doc['current-context'] as string | undefined) ?? bad('no current-context and no --context');
  const find = <T>(list: unknown, key: 'cluster' | 'user' | 'context', name: string): T => {
    const e = (Array.isArray(list) ? list as NamedEntry<T>[] : []).find((x) => x.name === name);
    return e?.[key] ?? bad(`${key} '${name}' not found`);
  };
  const ctx = find<{ cluster?: string; user?: string }>(doc['contexts'], 'context', ctxName);
  const cluster = find<Record<string, unknown>>(doc['clusters'], 'cluster', ctx.cluster ?? bad(`context '${ctxName}' names no cluster`));
  const user = ctx.user === undefined ? {} : find<Record<string, unknown>>(doc['users'], 'user', ctx.user);
  const base = dirname(path);
  const fileOrData = (fileKey: string, dataKey: string, from: Record<string, unknown>): string | undefined => {
    const data = from[dataKey];
    if (typeof data === 'string') return Buffer.from(data, 'base64').toString('utf8');
    const f = from[fileKey];
    if (typeof f === 'string') {
      const p = isAbsolute(f) ? f : join(base, f);
      try { return readFileSync(p, 'utf8'); } catch (err) { return bad(`cannot read ${fileKey} ${p}: ${(err as Error).message}`); }
    }
    return undefined;
  };
  if (user['exec'] !== undefined || user['auth-provider'] !== undefined) {
    bad(`user of context '${ctxName}' uses an exec or auth-provider plugin, which ambit does not run; use a token or client certificate`);
  }
  const server = typeof cluster['server'] === 'string' ? cluster['server'].replace(/\/+$/, '') : bad('cluster has no server');
  const conn: KubeConnection = { server };
  const ca = fileOrData('certificate-authority', 'certificate-authority-data', cluster);
  if (ca !== undefined) conn.caPem = ca;
  if (cluster['insecure-skip-tls-verify'] === true) conn.insecureSkipTlsVerify = true;
  const cert = fileOrData('client-certificate', 'client-certificate-data', user);
  const key = fileOrData('client-key', 'client-key-data', user);
  if (cert !== undefined) conn.certPem = cert;
  if (key !== undefined) conn.keyPem = key;
  const token = user['token'];
  const tokenFile = user['tokenFile'];
  if (typeof token === 'string') conn.token = () => token;
  else if (typeof tokenFile === 'string') {
    const p = isAbsolute(tokenFile) ? tokenFile : join(base, tokenFile);
    conn.token = () => readFileSync(p, 'utf8').trim();
  }
  return conn;
}
