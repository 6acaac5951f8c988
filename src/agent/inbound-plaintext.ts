/**
 * Inbound plaintext (15006): connections to an enrolled pod from outside the mesh, steered by
 * sk_lookup to the pod's plaintext listener. PeerAuthentication decides first (STRICT refuses,
 * PERMISSIVE and DISABLE accept), then L4 AuthorizationPolicy without a principal (a rule that
 * needs one cannot match); allowed connections are delivered to the app with the client's own
 * address as the source (source-address.ts), or from the node's netns where that is unsupported.
 *
 * Invariants: a refused connection is reset without reading a byte, logged with the deciding
 * PeerAuthentication or AuthorizationPolicy, counted in `ambit_agent_denials_total`, and recorded
 * with response flag DENY.
 */
import { createServer, type ListenOptions, type Server, type Socket } from 'node:net';
import { connectTcp } from '../tunnel/server.js';
import { spliceStreams } from '../tunnel/splice.js';
import type { ListenTarget, OriginalDestinationLookup, ProxyContext } from './context.js';
import type { WorkloadView } from './mesh-state.js';
import { decideInbound, serviceOf, tcpLabels } from './inbound-policy.js';

export class InboundPlaintext {
  constructor(private readonly ctx: ProxyContext, private readonly lookup: OriginalDestinationLookup) {}

  async listen(pod: WorkloadView, options: ListenTarget): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      this.handle(socket, pod).catch((err: unknown) => {
        this.ctx.log.error({ pod: pod.key, err: (err as Error).message }, 'inbound plaintext connection failed unexpectedly');
        socket.destroy();
      });
    });
    server.on('error', (err) => this.ctx.log.error({ pod: pod.key, err: err.message }, 'inbound plaintext listener error'));
    const use = await this.ctx.apps?.attach(pod.key, options);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options as ListenOptions, () => { server.off('error', reject); resolve(); });
      });
    } catch (err) {
      use?.release();
      throw err;
    }
    // 'close' comes once the server is closed and its last connection ended.
    if (use !== undefined) server.once('close', () => use.release());
    return server;
  }

  async handle(socket: Socket, pod: WorkloadView): Promise<void> {
    socket.on('error', () => {});
    const state = this.ctx.state();
    const source = { address: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''), port: socket.remotePort ?? 0 };
    let dst: { address: string; port: number } | null;
    try {
      dst = this.lookup(socket);
    } catch {
      dst = null;
    }
    dst ??= { address: (socket.localAddress ?? '').replace(/^::ffff:/, ''), port: socket.localPort ?? 0 };
    const target = state.workloadsByIp.get(dst.address) ?? state.workloads.get(pod.key) ?? pod;
    const srcWorkload = state.workloadsByIp.get(source.address);
    const labels = tcpLabels({ reporter: 'destination', source: srcWorkload, sourcePrincipal: undefined, destination: target, destinationPrincipal: target.identity, service: serviceOf(state, target, dst.port), mtls: false });
    const init = { direction: 'inbound_plaintext' as const, pod: target.key, source, destination: dst, protocol: 'plaintext' as const, upstream: `${dst.address}:${dst.port}`, labels };
    const verdict = decideInbound(state, target, dst.address, dst.port, { principal: undefined, ip: source.address });
    if (!verdict.allow) {
      const rec = this.ctx.tracker.start({ ...init, labels: { ...labels, response_flags: 'DENY' } });
      rec.close({ bytesSent: 0, bytesReceived: 0, flags: 'DENY', reason: verdict.reason, policy: verdict.policy });
      this.ctx.metrics.denials.inc({ reason: verdict.kind, policy: verdict.policy, direction: 'inbound' });
      this.ctx.log.warn({ pod: target.key, source: `${source.address}:${source.port}`, port: dst.port, policy: verdict.policy, reason: verdict.reason }, 'inbound plaintext connection denied');
      socket.resetAndDestroy();
      return;
    }
    let upstream: Socket;
    try {
      upstream = this.ctx.apps !== undefined
        ? await this.ctx.apps.connect(pod.key, source, dst, this.ctx.connectTimeoutMs)
        : await connectTcp({ host: dst.address, port: dst.port, family: dst.address.includes(':') ? 6 : 4 }, this.ctx.connectTimeoutMs);
    } catch (err) {
      const rec = this.ctx.tracker.start(init);
      rec.close({ bytesSent: 0, bytesReceived: 0, flags: 'UF', reason: (err as Error).message });
      socket.resetAndDestroy();
      return;
    }
    if (socket.destroyed) {
      upstream.destroy();
      return;
    }
    const rec = this.ctx.tracker.start(init);
    rec.kill = () => socket.destroy();
    rec.bytes = () => ({ bytesSent: socket.bytesRead, bytesReceived: socket.bytesWritten });
    spliceStreams(socket, upstream, () => rec.close({ bytesSent: socket.bytesRead, bytesReceived: socket.bytesWritten }));
    socket.resume(); // paused since accept (pauseOnConnect)
  }
}
