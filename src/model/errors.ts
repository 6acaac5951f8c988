/**
 * Errors the resource model throws. Problems inside resources are never thrown: they are
 * `Diagnostic`s. These errors are for the caller's mistakes and for input that cannot be read
 * at all (a missing path, no permission), which `ambit analyze` maps to exit code 2.
 */
import { AmbitError } from '../util/errors.js';

/** A path given to `loadPaths` does not exist or cannot be read (permission, I/O error). */
export class InputUnreadableError extends AmbitError {
  readonly path: string;

  constructor(path: string, reason: string, options?: { cause?: unknown }) {
    super('AMBIT_ERR_MODEL_INPUT_UNREADABLE', `cannot read ${path}: ${reason}`, options);
    this.name = 'InputUnreadableError';
    this.path = path;
  }
}

/** `applyChange` was given a change that cannot apply (a resource without kind or name, an unknown kind). */
export class InvalidChangeError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_MODEL_INVALID_CHANGE', message);
    this.name = 'InvalidChangeError';
  }
}

/** `parseObjectStrict` met an object with errors; `diagnostics` lists them. */
export class InvalidResourceError extends AmbitError {
  readonly diagnostics: readonly { code: string; message: string; path?: string }[];

  constructor(what: string, diagnostics: readonly { code: string; message: string; path?: string }[]) {
    const first = diagnostics[0];
    super(
      'AMBIT_ERR_MODEL_INVALID_RESOURCE',
      `${what} is invalid: ${first ? `${first.path ? `${first.path}: ` : ''}${first.message}` : 'unknown problem'}` +
        (diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : ''),
    );
    this.name = 'InvalidResourceError';
    this.diagnostics = diagnostics;
  }
}
