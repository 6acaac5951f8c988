/**
 * A pino logger whose output the test reads back: every JSON line, parsed, in the order written.
 * For asserting what a component logged (a refusal and its reason, an access line, that no key
 * material appears). The lines are the real serialized output, redaction included.
 */
import { Writable } from 'node:stream';
import { pino, type Level, type Logger } from 'pino';

export interface LogSink {
  logger: Logger;
  /** Every line logged so far, parsed (the same array grows as more is logged). */
  lines(): Array<Record<string, unknown>>;
}

/** A logger at `level` (default 'debug') writing into memory. */
export function logSink(level: Level = 'debug'): LogSink {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level }, sink), lines: () => lines };
}
