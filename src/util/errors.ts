/**
 * Base error of ambit. Every error that crosses a module boundary carries a stable `code`
 * (`AMBIT_ERR_...`) so callers match on the code, never on message text. Messages speak to an
 * operator: what failed, and the likely cause. Every code is registered, with its meaning, in
 * ./error-codes.ts; a code that is not does not compile.
 */
import type { AmbitErrorCode } from './error-codes.js';

export class AmbitError extends Error {
  readonly code: AmbitErrorCode;

  constructor(code: AmbitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AmbitError';
    this.code = code;
  }
}
