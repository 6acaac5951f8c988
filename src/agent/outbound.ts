/**
 * Outbound (15001): connections an enrolled pod's apps open, captured by cgroup/connect4 and
 * accepted on the pod's outbound listener. For each one: original destination → resolve
 * (resolve.ts) → try the candidates in order → splice.
 *
 * Invariants:
 * - The client socket is paused from accept until an upstream is established, so no byte of the
 *   client has been sent anywhere when a candidate fails: retrying on the next endpoint is always
 *   safe. A denial (401 from the destination, or a local policy) is final and never retried.
 * - Mesh destinations are only reached by HBONE under the source pod's own identity, or
 *   in-process for a pod of this node (authorized exactly as a remote agent would); plaintext
 *   passthrough is only for destinations outside the mesh.
 * - The agent's own upstream sockets are created in the node's netns, which is never enrolled,
 *   so they are never captured again; the one exception, in-process delivery to a pod of this
 *   node, connects inside that pod's netns to its own address, which connect4 never captures.
 * - Every accepted connection produces exactly one outbound record (connections.ts), whatever
 *   its fate.
 * - Under outboundTrafficPolicy REGISTRY_ONLY a destination outside the registry is reset before
 *   anything is sent, recorded with flag NR and destination_service BlackHoleCluster (as Istio
 *   labels it), counted in ambit_agent_denials_total{reason="outbound_traffic_policy"} and logged.
 */
import { createServer, type ListenOptions, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ClientHttp2Stream, Http2Stream } from 'node:http2';
import { splice, spliceStreams } from '../tunnel/splice.js';
import { connectTcp } from '../tunnel/server.js';
import type { TunnelError } from '../tunnel/errors.js';
import type { ListenTarget, ProxyContext, OriginalDestinationLookup } from './context.js';
import type { WorkloadView } from './mesh-state.js';
import type { Candidate, Resolution } from './resolve.js';
import type { OpenConnection, ResponseFlag } from './connections.js';
import { decideInbound, serviceOf, tcpLabels } from './inbound-policy.js';

/** Tunnel failures after which another endpoint may be tried (nothing reached the app). */
const RETRYABLE = new Set([
  'AMBIT_ERR_TUNNEL_CONNECT_TIMEOUT', 'AMBIT_ERR_TUNNEL_CONNECT_REFUSED', 'AMBIT_ERR_TUNNEL_CONNECT_FAILED',
  'AMBIT_ERR_TUNNEL_HANDSHAKE', 'AMBIT_ERR_TUNNEL_UPSTREAM_UNAVAILABLE', 'AMBIT_ERR_TUNNEL_RESET',
  'AMBIT_ERR_TUNNEL_RESPONSE_TIMEOUT', 'AMBIT_ERR_TUNNEL_PEER_IDENTITY', 'AMBIT_ERR_TUNNEL_PEER_UNTRUSTED',
]);

type Attempt =
  | { ok: true; upstream: Duplex; kind: 'h2' | 'tcp'; candidate: Candidate; inbound?: OpenConnection }
  | { ok: false; final: boolean; flags: ResponseFlag; reason: string; policy?: string };

function formatDst(d: { address: string; port: number }): string {
  return d.address.includes(':') ? `[${d.address}]:${d.port}` : `${d.address}:${d.port}`;
}

export class OutboundProxy {
  constructor(private readonly ctx: ProxyContext, private readonly lookup: OriginalDestinationLookup) {}

  /** A server for one pod's outbound listener (`{ fd }` from Capture.enroll, or an address in tests). */
  async listen(pod: WorkloadView, options: ListenTarget): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      this.handle(socket, pod).catch((err: unknown) => {
        this.ctx.log.error({ pod: pod.key, err: (err as Error).message }, 'outbound connection failed unexpectedly');
        socket.destroy();
      });
    });
    server.on('error', (err) => this.ctx.log.error({ pod: pod.key, err: err.message }, 'outbound listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options as ListenOptions, () => { server.off('error', reject); resolve(); });
    });
    return server;
  }

  async handle(socket: Socket, enrolled: WorkloadView): Promise<void> {
    socket.on('error', () => {}); // resets before the splice owns the socket
    const state = this.ctx.state();
    const source = state.workloads.get(enrolled.key) ?? enrolled;
    const clientPort = socket.remotePort ?? 0;
    let dst: { address: string; port: number } | null;
    try {
      dst = this.lookup(socket);
    } catch (err) {
      dst = null;
      this.ctx.log.warn({ pod: source.key, err: (err as Error).message }, 'cannot read the original destination');
    }
    const srcAddr = { address: source.ip ?? socket.remoteAddress ?? '', port: clientPort };
    if (dst === null) {
      this.fail(socket, source, srcAddr, { address: socket.localAddress ?? '', port: socket.localPort ?? 0 }, undefined, 'NR', 'original destination unknown (connection not captured, or its record was evicted)');
      return;
    }
    const resolution = this.ctx.resolver.resolve(state, source, dst);
    if (resolution.candidates.length === 0) {
      if (resolution.blackhole === true) {
        this.ctx.metrics.denials.inc({ reason: 'outbound_traffic_policy', policy: 'REGISTRY_ONLY', direction: 'outbound' });
        this.ctx.log.info({ pod: source.key, dst: formatDst(dst), reason: resolution.reason }, 'outbound connection refused: destination outside the mesh registry (REGISTRY_ONLY)');
      }
      this.fail(socket, source, srcAddr, dst, resolution, 'NR', resolution.reason ?? 'no route');
      return;
    }
    let last: Attempt | undefined;
    for (const candidate of resolution.candidates) {
      if (socket.destroyed) {
        this.fail(socket, source, srcAddr, dst, resolution, 'DC', 'client closed the connection before an upstream was established');
        return;
      }
      last = await this.attempt(candidate, source, srcAddr);
      if (last.ok) break;
      this.ctx.log.debug({ pod: source.key, dst: formatDst(dst), candidate: describe(candidate), reason: last.reason }, last.final ? 'outbound refused' : 'outbound attempt failed; trying the next endpoint');
      if (last.final) break;
    }
    if (last === undefined || !last.ok) {
      const flags = last?.flags ?? 'UF';
      this.fail(socket, source, srcAddr, dst, resolution, resolution.candidates.length > 1 && flags === 'UF' ? 'UH' : flags, last?.reason ?? 'no upstream', last?.policy, resolution.candidates[resolution.candidates.length - 1]);
      return;
    }
    const { upstream, candidate, inbound } = last;
    if (socket.destroyed) {
      upstream.destroy();
      inbound?.close({ bytesSent: 0, bytesReceived: 0, flags: 'DC' });
      this.fail(socket, source, srcAddr, dst, resolution, 'DC', 'client closed the connection before an upstream was established', undefined, candidate);
      return;
    }
    const conn = this.ctx.tracker.start({
      direction: 'outbound', pod: source.key, source: srcAddr, destination: dst,
      protocol: candidate.kind === 'hbone' ? (candidate.waypoint !== undefined ? 'waypoint' : 'hbone') : candidate.kind,
      upstream: upstreamOf(candidate),
      tlsGroup: last.kind === 'h2' ? this.ctx.pool.tlsGroupOf(upstream as ClientHttp2Stream) : undefined,
      labels: this.labels(source, candidate, resolution),
    });
    conn.kill = () => socket.destroy();
    conn.bytes = () => ({ bytesSent: socket.bytesRead, bytesReceived: socket.bytesWritten });
    if (inbound !== undefined) { inbound.kill = conn.kill; inbound.bytes = conn.bytes; }
    const finish = (err?: Error) => {
      const end = { bytesSent: socket.bytesRead, bytesReceived: socket.bytesWritten, ...(err !== undefined && socket.bytesRead === 0 ? { reason: err.message } : {}) };
      conn.close(end);
      inbound?.close(end);
    };
    if (last.kind === 'h2') splice(upstream as Http2Stream, socket, finish);
    else spliceStreams(socket, upstream as Socket, finish);
    // Paused since accept (pauseOnConnect); pipe() alone does not restart an explicitly paused
    // socket when the destination starts out needing a drain, as an HTTP/2 stream can.
    socket.resume();
  }

  private labels(source: WorkloadView, c: Candidate, r: Resolution, flags?: string) {
    const state = this.ctx.state();
    const dstWorkload = c.workload;
    return tcpLabels({
      reporter: 'source',
      source,
      sourcePrincipal: source.identity,
      destination: dstWorkload,
      destinationPrincipal: c.kind === 'hbone' ? c.identity : c.kind === 'local' ? c.workload.identity : undefined,
      service: r.service ?? serviceOf(state, dstWorkload, c.kind === 'hbone' ? c.authority.port : c.target.port),
      mtls: c.kind !== 'passthrough',
      ...(flags !== undefined ? { flags } : {}),
    });
  }

  private fail(socket: Socket, source: WorkloadView, srcAddr: { address: string; port: number }, dst: { address: string; port: number }, r: Resolution | undefined, flags: ResponseFlag, reason: string, policy?: string, c?: Candidate): void {
    const labels = c !== undefined && r !== undefined
      ? this.labels(source, c, r, flags)
      : tcpLabels({ reporter: 'source', source, sourcePrincipal: source.identity, destination: undefined, destinationPrincipal: undefined, service: r?.service, mtls: false, flags });
    if (r?.blackhole === true) Object.assign(labels, { destination_service: 'BlackHoleCluster', destination_service_name: 'BlackHoleCluster' });
    const conn = this.ctx.tracker.start({ direction: 'outbound', pod: source.key, source: srcAddr, destination: dst, protocol: c === undefined ? 'passthrough' : c.kind === 'hbone' ? 'hbone' : c.kind, upstream: c === undefined ? undefined : upstreamOf(c), labels });
    conn.close({ bytesSent: 0, bytesReceived: 0, flags, reason, ...(policy !== undefined ? { policy } : {}) });
    if (flags === 'DENY') this.ctx.metrics.denials.inc({ reason: 'authorization', policy: policy ?? '-', direction: 'outbound' });
    // A reset tells the client at once that nothing is there (as an unreachable port would).
    socket.resetAndDestroy();
  }

  private async attempt(c: Candidate, source: WorkloadView, srcAddr: { address: string; port: number }): Promise<Attempt> {
    if (c.kind === 'hbone') {
      try {
        const stream = await this.ctx.pool.connect({
          source: source.identity,
          address: { host: c.address.address, port: c.address.port },
          destinationIdentity: c.identity,
          authority: formatDst(c.authority),
          forwardedFor: { host: srcAddr.address, port: srcAddr.port || 1 },
        });
        return { ok: true, upstream: stream, kind: 'h2', candidate: c };
      } catch (err) {
        const e = err as TunnelError;
        if (e.code === 'AMBIT_ERR_TUNNEL_DENIED') return { ok: false, final: true, flags: 'DENY', reason: e.message };
        return { ok: false, final: !RETRYABLE.has(e.code), flags: 'UF', reason: `${e.code ?? 'error'}: ${e.message}` };
      }
    }
    if (c.kind === 'local') {
      const state = this.ctx.state();
      const target = state.workloads.get(c.workload.key) ?? c.workload;
      const verdict = decideInbound(state, target, c.target.address, c.target.port, { principal: source.identity, ip: srcAddr.address });
      const labels = tcpLabels({ reporter: 'destination', source, sourcePrincipal: source.identity, destination: target, destinationPrincipal: target.identity, service: serviceOf(state, target, c.target.port), mtls: true });
      const init = { direction: 'inbound' as const, pod: target.key, source: srcAddr, destination: c.target, protocol: 'local' as const, upstream: formatDst(c.target), labels };
      if (!verdict.allow) {
        const rec = this.ctx.tracker.start({ ...init, labels: { ...labels, response_flags: 'DENY' } });
        rec.close({ bytesSent: 0, bytesReceived: 0, flags: 'DENY', reason: verdict.reason, policy: verdict.policy });
        this.ctx.metrics.denials.inc({ reason: verdict.kind, policy: verdict.policy, direction: 'inbound' });
        return { ok: false, final: true, flags: 'DENY', reason: verdict.reason, policy: verdict.policy };
      }
      try {
        const sock = this.ctx.apps !== undefined
          ? await this.ctx.apps.connect(target.key, srcAddr, c.target, this.ctx.connectTimeoutMs)
          : await connectTcp({ host: c.target.address, port: c.target.port, family: c.target.address.includes(':') ? 6 : 4 }, this.ctx.connectTimeoutMs);
        const inbound = this.ctx.tracker.start(init);
        return { ok: true, upstream: sock, kind: 'tcp', candidate: c, inbound };
      } catch (err) {
        return { ok: false, final: false, flags: 'UF', reason: `cannot connect to ${formatDst(c.target)}: ${(err as Error).message}` };
      }
    }
    try {
      const sock = await connectTcp({ host: c.target.address, port: c.target.port, family: c.target.address.includes(':') ? 6 : 4 }, this.ctx.connectTimeoutMs);
      return { ok: true, upstream: sock, kind: 'tcp', candidate: c };
    } catch (err) {
      return { ok: false, final: false, flags: 'UF', reason: `cannot connect to ${formatDst(c.target)}: ${(err as Error).message}` };
    }
  }
}

function upstreamOf(c: Candidate): string {
  return c.kind === 'hbone' ? `${formatDst(c.address)} (CONNECT ${formatDst(c.authority)})` : formatDst(c.target);
}

function describe(c: Candidate): string {
  return `${c.kind} ${upstreamOf(c)}`;
}

