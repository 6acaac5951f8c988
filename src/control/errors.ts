/**
 * Errors of the control plane and its discovery client. Each carries a stable `AMBIT_ERR_...`
 * code; callers match on the code. Messages name the cause an operator can act on.
 */
import { AmbitError } from '../util/errors.js';

/** A subscriber presented no token, or a token the control plane does not accept. */
export class UnauthenticatedError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_UNAUTHENTICATED', message);
    this.name = 'UnauthenticatedError';
  }
}

/** An authenticated subscriber asked for something it is not entitled to (e.g. another node's identity). */
export class PermissionDeniedError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_PERMISSION_DENIED', message);
    this.name = 'PermissionDeniedError';
  }
}

/** A control-plane option is missing or malformed (fails start-up with this message). */
export class ControlConfigError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_CONTROL_CONFIG', message, options);
    this.name = 'ControlConfigError';
  }
}

/** A subscriber spoke the discovery protocol out of order (e.g. an ack before its hello). */
export class ProtocolError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_DISCOVERY_PROTOCOL', message);
    this.name = 'ProtocolError';
  }
}

/** The Kubernetes API answered in a way the source cannot use (status, body, or an expired watch). */
export class KubeApiError extends AmbitError {
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(status === 410 ? 'AMBIT_ERR_KUBE_GONE' : 'AMBIT_ERR_KUBE_API', message, options);
    this.name = 'KubeApiError';
    this.status = status;
  }
}
