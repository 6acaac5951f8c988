/**
 * Process-wide JSON logging (pino). Components log through `childLogger(component)` so every
 * line carries `component`. Keys, tokens and certificates' private parts are redacted by path,
 * whatever component logs them.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Field paths never written to a log line. */
export const REDACT_PATHS = [
  'key', '*.key', 'privateKey', '*.privateKey', 'token', '*.token',
  'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization',
  'password', '*.password', 'csrKey', '*.csrKey',
];

let root: Logger | undefined;

/**
 * The root logger. Level from `AMBIT_LOG_LEVEL` (default `info`; tests default to `silent`
 * unless `AMBIT_LOG_LEVEL` is set).
 */
export function rootLogger(): Logger {
  if (root === undefined) {
    const testing = process.env['AVA_WORKER_ID'] !== undefined || process.env['NODE_ENV'] === 'test';
    root = pino({
      level: process.env['AMBIT_LOG_LEVEL'] ?? (testing ? 'silent' : 'info'),
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    });
  }
  return root;
}

/** A child logger tagged with `component` (e.g. `model`, `tunnel`, `agent.outbound`). */
export function childLogger(component: string, parent: Logger = rootLogger()): Logger {
  return parent.child({ component });
}
