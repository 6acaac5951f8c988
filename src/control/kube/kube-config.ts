/**
 * Where the Kubernetes API is and how to authenticate to it, as @kubernetes/client-node's
 * KubeConfig, with ambit's command-line semantics and start-up errors:
 * - no --kubeconfig and no --context: in-cluster (KubeConfig.loadFromCluster: the pod's service
 *   account token and CA; the library re-reads the projected token file as it rotates);
 * - --kubeconfig FILE: that file; --context NAME alone: $KUBECONFIG (all its files, merged) or
 *   ~/.kube/config. The context is NAME, else the file's current-context.
 * Everything the library supports (tokens, token files, client certificates, exec plugins) works;
 * a missing file, context or cluster fails at start-up naming it. Tokens are never logged.
 */
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ControlConfigError } from '../errors.js';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigOptions {
  /** kubeconfig file (default: in-cluster, or $KUBECONFIG / ~/.kube/config when `context` is set). */
  kubeconfig?: string;
  /** Context name (default: the kubeconfig's current-context). */
  context?: string;
}

/** The KubeConfig `ambit control --kubernetes [--kubeconfig FILE] [--context NAME]` uses. */
export function loadKubeConfig(opts: KubeConfigOptions = {}): KubeConfig {
  return opts.kubeconfig !== undefined || opts.context !== undefined ? fromKubeconfig(opts.kubeconfig, opts.context) : inClusterConfig();
}

/**
 * In-cluster configuration. `pathPrefix` is prepended to the service-account directory
 * (default '': /var/run/secrets/kubernetes.io/serviceaccount), as loadFromCluster does.
 */
export function inClusterConfig(pathPrefix = ''): KubeConfig {
  if (process.env['KUBERNETES_SERVICE_HOST'] === undefined) {
    throw new ControlConfigError('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); pass --kubeconfig FILE');
  }
  for (const f of ['token', 'ca.crt']) {
    const p = `${pathPrefix}${SA_DIR}/${f}`;
    try { accessSync(p, constants.R_OK); } catch (err) {
      throw new ControlConfigError(`cannot read ${p}: ${(err as Error).message}; is a service account token mounted?`, { cause: err });
    }
  }
  const kc = new KubeConfig();
  kc.loadFromCluster(pathPrefix);
  return kc;
}

function fromKubeconfig(file: string | undefined, context: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  const where = file ?? process.env['KUBECONFIG'] ?? join(homedir(), '.kube', 'config');
  try {
    if (file === undefined && process.env['KUBECONFIG'] !== undefined) kc.loadFromDefault();
    else kc.loadFromFile(where);
  } catch (err) {
    throw new ControlConfigError(`cannot read kubeconfig ${where}: ${(err as Error).message}`, { cause: err });
  }
  if (context !== undefined) {
    if (kc.getContextObject(context) === null) {
      throw new ControlConfigError(`kubeconfig ${where}: context '${context}' not found (it has: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`);
    }
    kc.setCurrentContext(context);
  }
  if (kc.getCurrentContext() === '' || kc.getCurrentContext() === undefined) throw new ControlConfigError(`kubeconfig ${where}: no current-context and no --context`);
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new ControlConfigError(`kubeconfig ${where}: context '${kc.getCurrentContext()}' names no known cluster`);
  if (!cluster.server) throw new ControlConfigError(`kubeconfig ${where}: cluster '${cluster.name}' has no server`);
  return kc;
}

/** The API server URL of the current context (no trailing slash), for messages and status. */
export function apiServerOf(kc: KubeConfig): string {
  return (kc.getCurrentCluster()?.server ?? '').replace(/\/+$/, '');
}
