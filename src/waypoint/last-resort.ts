/**
 * The waypoint's last line of defence: an exception or rejection that escaped every handler
 * (a bug, reached by some input from a client or an upstream) is logged and counted as
 * `ambit_waypoint_internal_errors_total{where}` instead of ending the process and every
 * connection it serves. It is not how errors are meant to be handled: each stream has its own
 * `error` listener and each request its own catch; this only catches what those missed.
 *
 * Invariants:
 * - Installed once per process however many waypoints run in it; each waypoint adds its sink
 *   and removes it on close, and the handlers go when the last sink does.
 * - What is logged is the error's name, code and message with its stack, never request data.
 */
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';

interface Sink {
  readonly log: Logger;
  readonly counter: Counter<'where'> | undefined;
}

const sinks = new Set<Sink>();

function report(where: 'uncaught_exception' | 'unhandled_rejection', err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  for (const s of sinks) {
    s.counter?.inc({ where });
    s.log.error({ where, err: { name: e.name, code: (e as Error & { code?: unknown }).code, message: e.message, stack: e.stack } }, 'internal error escaped its handler; the waypoint keeps running');
  }
}

const onException = (err: unknown) => report('uncaught_exception', err);
const onRejection = (err: unknown) => report('unhandled_rejection', err);

/** Adds a waypoint's log and counter to the guard; the returned function removes them. */
export function guardProcess(log: Logger, counter: Counter<'where'> | undefined): () => void {
  const sink: Sink = { log, counter };
  if (sinks.size === 0) {
    process.on('uncaughtException', onException);
    process.on('unhandledRejection', onRejection);
  }
  sinks.add(sink);
  return () => {
    if (!sinks.delete(sink) || sinks.size > 0) return;
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}
