/**
 * Errors of the discovery client library. Stable codes; messages say what to check.
 */
import { AmbitError } from '../util/errors.js';

/** The persisted view file exists but cannot be used (corrupt, other format). */
export class ViewCacheError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_VIEW_CACHE', message, options);
    this.name = 'ViewCacheError';
  }
}

/** A push could not be applied (bad JSON, wrong base version); it is nacked. */
export class ApplyError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_DISCOVERY_APPLY', message, options);
    this.name = 'ApplyError';
  }
}

/** The control plane refused a certificate request (carries the gRPC status and the reason). */
export class SignRefusedError extends AmbitError {
  readonly grpcCode: number;
  constructor(message: string, grpcCode: number) {
    super(grpcCode === 7 ? 'AMBIT_ERR_PERMISSION_DENIED' : grpcCode === 16 ? 'AMBIT_ERR_UNAUTHENTICATED' : 'AMBIT_ERR_SIGN_FAILED', message);
    this.name = 'SignRefusedError';
    this.grpcCode = grpcCode;
  }
}

/** Client options are wrong (e.g. TLS without a trust bundle). */
export class DiscoveryConfigError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_DISCOVERY_CONFIG', message);
    this.name = 'DiscoveryConfigError';
  }
}
