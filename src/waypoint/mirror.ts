/**
 * Traffic mirroring (VirtualService `mirror` / `mirrors`, HTTPRoute RequestMirror): a copy of a
 * request goes to another destination, fire and forget. As in Envoy the copy's authority gets
 * a `-shadow` suffix, its response is read and dropped, and nothing about it (latency, failure,
 * a body too large to copy) can change the response the client gets.
 *
 * Invariants: a mirror never applies backpressure to the request body, never retries, never
 * counts against the route's timeout or retry budget, and is abandoned after `timeoutMs`.
 */
import type { Logger } from 'pino';
import type { Cluster } from './cluster.js';
import type { UpstreamClients, UpstreamRequest } from './upstream.js';

/** Sends a mirror copy; returns at once. */
export function sendMirror(clients: UpstreamClients, cluster: Cluster, req: UpstreamRequest, timeoutMs: number, log: Logger, onDone?: (status: number | undefined) => void): void {
  const ep = cluster.pick(new Set(), undefined);
  if (ep === undefined) {
    log.debug({ cluster: cluster.name }, 'mirror skipped: no endpoint');
    onDone?.(undefined);
    return;
  }
  const authority = req.authority.replace(/^(\[[^\]]+\]|[^:]+)(:\d+)?$/, (_m, h: string, p: string | undefined) => `${h}-shadow${p ?? ''}`);
  let abandon: (() => void) | undefined;
  let finished = false;
  const timer = setTimeout(() => {
    finished = true;
    abandon?.();
    log.debug({ cluster: cluster.name, upstream: ep.key }, 'mirror abandoned after timeout');
    onDone?.(undefined);
  }, timeoutMs);
  timer.unref();
  clients.send(ep, { ...req, authority }).then(
    (res) => {
      abandon = () => res.abort();
      if (finished) {
        res.abort();
        return;
      }
      res.body.on('error', () => {});
      res.body.on('end', () => {
        clearTimeout(timer);
        if (!finished) onDone?.(res.status);
        finished = true;
      });
      res.body.resume();
    },
    (err: Error) => {
      clearTimeout(timer);
      if (finished) return;
      finished = true;
      log.debug({ cluster: cluster.name, upstream: ep.key, reason: err.message }, 'mirror failed');
      onDone?.(undefined);
    },
  );
}
