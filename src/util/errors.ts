/**
 * Base error of ambit. Every error that crosses a module boundary carries a stable `code`
 * (`AMBIT_ERR_...`) so callers match on the code, never on message text. Messages speak to an
 * operator: what failed, and the likely cause.
 */
export class AmbitError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AmbitError';
    this.code = code;
  }
}
