/**
 * Errors of Kubernetes-mode pod discovery (the agent finding each local pod's network namespace
 * and cgroup from the node's /proc).
 */
import { AmbitError } from '../../util/errors.js';

/** The host's /proc cannot be read (not mounted, or missing privileges). */
export class PodDiscoveryError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_POD_DISCOVERY', message, options);
    this.name = 'PodDiscoveryError';
  }
}
