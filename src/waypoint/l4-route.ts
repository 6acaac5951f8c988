/**
 * TCPRoute and TLSRoute at the waypoint: which of a bound service's L4 routes (compiled by the
 * model, in evaluation order: TLSRoutes, then TCPRoutes) a connection takes, and reading the
 * ClientHello's SNI for TLSRoutes without consuming it.
 *
 * Invariants:
 * - Only routes for the connection's destination port apply (a route without port: every port).
 * - A TLSRoute matches by SNI (sni.ts): an exact hostname beats a wildcard, a longer wildcard a
 *   shorter one, a TLSRoute without hostnames matches any ClientHello; ties go to the earlier
 *   route. Without a TLSRoute match the first TCPRoute applies.
 * - When L4 routes apply to the port and none matches (a TLSRoute for other names, no SNI, not
 *   TLS), the connection is refused, as a Gateway listener refuses what no route takes.
 * - The bytes read to find the SNI are given back to the stream before anything else reads it.
 */
import type { Duplex } from 'node:stream';
import type { L4Route } from '../model/compile/types.js';
import { MAX_CLIENT_HELLO_BYTES, peekSni, sniHostMatches } from './sni.js';

/** How long the waypoint waits for a complete ClientHello on a TLSRoute port, ms. */
export const SNI_PEEK_TIMEOUT_MS = 5_000;

/** The L4 routes for `port`; empty: the connection goes to the service itself. */
export function l4RoutesFor(routes: readonly L4Route[] | undefined, port: number): readonly L4Route[] {
  if (routes === undefined || routes.length === 0) return [];
  return routes.filter((r) => r.port === undefined || r.port === port);
}

/** True when choosing among `routes` needs the SNI (some are TLSRoutes). */
export function needsSni(routes: readonly L4Route[]): boolean {
  return routes.some((r) => r.protocol === 'tls');
}

function sniScore(r: L4Route, sni: string): number {
  if (r.sniHosts.length === 0) return 1;
  let best = 0;
  for (const h of r.sniHosts) {
    if (!sniHostMatches(h, sni)) continue;
    best = Math.max(best, h.startsWith('*.') ? 2 + h.length : 100_000 + h.length);
  }
  return best;
}

/** The route a connection to these routes takes (see the module header), or undefined. */
export function selectL4Route(routes: readonly L4Route[], sni: string | undefined): L4Route | undefined {
  let best: L4Route | undefined;
  let bestScore = 0;
  if (sni !== undefined) {
    for (const r of routes) {
      if (r.protocol !== 'tls') continue;
      const s = sniScore(r, sni);
      if (s > bestScore) {
        best = r;
        bestScore = s;
      }
    }
  }
  return best ?? routes.find((r) => r.protocol === 'tcp');
}

/**
 * Reads from `stream` until its first bytes give a ClientHello's SNI (or show there is none, or
 * `timeoutMs` passed, or the stream ended), then gives the bytes back (unshift) and leaves the
 * stream paused. Resolves the server name, or undefined when there is none to read.
 */
export function readSni(stream: Duplex, timeoutMs = SNI_PEEK_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (name: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.pause();
      if (buf.length > 0 && !stream.destroyed) stream.unshift(buf);
      resolve(name);
    };
    const onData = (c: Buffer) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      const r = peekSni(buf);
      if (r.kind === 'sni') finish(r.serverName);
      else if (r.kind !== 'need-more' || buf.length >= MAX_CLIENT_HELLO_BYTES) finish(undefined);
    };
    const onEnd = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    timer.unref();
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}
