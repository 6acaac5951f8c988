/**
 * Errors of the operator commands (status, config-dump, why, top). Each names what could not be
 * reached or understood and what to try; `ambit` prints `code: message` on one line.
 */
import { AmbitError } from '../../util/errors.js';

export type CliErrorCode =
  | 'AMBIT_ERR_CLI_UNREACHABLE'
  | 'AMBIT_ERR_CLI_BAD_RESPONSE'
  | 'AMBIT_ERR_CLI_USAGE'
  | 'AMBIT_ERR_CLI_NOT_FOUND'
  | 'AMBIT_ERR_CLI_CONFIG';

export class CliError extends AmbitError {
  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CliError';
  }
}
