/**
 * Errors of authorization compilation and evaluation. Each carries a stable code; a policy error
 * also carries the field path inside the policy's `spec` so the loader can point at file, line
 * and column.
 */
import { AmbitError } from '../../util/errors.js';

/** Renders `['rules', 0, 'from']` as `spec.rules[0].from`. */
export function formatSpecPath(path: readonly (string | number)[]): string {
  let out = 'spec';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : `.${seg}`;
  return out;
}

/** An AuthorizationPolicy that cannot be compiled (wrong type, bad CIDR, bad port...). */
export class AuthzPolicyError extends AmbitError {
  /** Field path relative to `spec`. */
  readonly path: readonly (string | number)[];
  /** `namespace/name` of the policy. */
  readonly policy: string;

  constructor(policy: string, path: readonly (string | number)[], problem: string) {
    super('AMBIT_ERR_AUTHZ_POLICY_INVALID', `AuthorizationPolicy ${policy}: ${formatSpecPath(path)}: ${problem}`);
    this.name = 'AuthzPolicyError';
    this.path = path;
    this.policy = policy;
  }
}

/** The caller passed a context the evaluator cannot use (a programming error, not bad YAML). */
export class AuthzContextError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_AUTHZ_CONTEXT', message);
    this.name = 'AuthzContextError';
  }
}
