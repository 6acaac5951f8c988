/**
 * Errors of the identity subsystem (SPIFFE IDs, keys, CSRs, the CA, the workload identity
 * manager). Each class has one stable `code`; callers match on the code, never on the message.
 * Messages name the offending input and the likely cause, and never contain key material.
 */
import { AmbitError } from '../util/errors.js';

/** A string that is not a valid SPIFFE ID of the form spiffe://<td>/ns/<ns>/sa/<sa>. */
export class InvalidIdentityError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_IDENTITY_INVALID', message);
    this.name = 'InvalidIdentityError';
  }
}

/** A CSR that cannot be parsed, is not self-consistent, or does not match the requested identity. */
export class InvalidCsrError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CSR_INVALID', message, options);
    this.name = 'InvalidCsrError';
  }
}

/** A key that is too weak or of an unsupported type. */
export class WeakKeyError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_IDENTITY_WEAK_KEY', message);
    this.name = 'WeakKeyError';
  }
}

/** The CA directory cannot be read or written, or holds inconsistent files. */
export class CaStorageError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CA_STORAGE', message, options);
    this.name = 'CaStorageError';
  }
}

/** Bad arguments to the CA (lifetime out of range, unknown root to retire, ...). */
export class CaRequestError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_IDENTITY_CA_REQUEST', message);
    this.name = 'CaRequestError';
  }
}

/** A certificate that cannot be parsed or does not carry exactly one valid SPIFFE URI SAN. */
export class InvalidCertificateError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_CERT_INVALID', message, options);
    this.name = 'InvalidCertificateError';
  }
}

/** No usable certificate for an identity: the signer failed and nothing valid is cached. */
export class IdentityUnavailableError extends AmbitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_IDENTITY_UNAVAILABLE', message, options);
    this.name = 'IdentityUnavailableError';
  }
}
