/**
 * Inbound HBONE (15008): one HBONE server per enrolled pod, presenting that pod's identity, on
 * the listener Capture.enroll made in the pod's netns (sk_lookup steers the pod address:15008 to
 * it). The tunnel server verifies the peer's certificate and SPIFFE ID; this module decides each
 * CONNECT and delivers it to the app with the client's own address as the source.
 *
 * Invariants:
 * - A CONNECT is only served for the pod the server stands for: an authority naming another
 *   address is refused, so one pod's listener can never be used to reach another.
 * - L4 AuthorizationPolicy is evaluated with the verified peer identity and the original client
 *   address (`forwarded: for=`, else the tunnel peer). A forwarded address is believed only from
 *   the identity of the workload that has it or from a waypoint (inbound-policy.ts
 *   forwardedSourceProblem); a peer naming anyone else's address is refused. A denial answers 401, is logged with the
 *   deciding policy, counted in `ambit_agent_denials_total{policy}`, and recorded as a DENY
 *   connection.
 * - The app is reached by a TCP connect made inside the pod's netns from the original client
 *   address (source-address.ts; it arrives over the pod's loopback, which sk_lookup lets
 *   through, so there is no loop back into the agent), or, where that is unsupported, from the
 *   node's netns (counted and logged as a fallback).
 * - Closing a pod's server (release) stops new handshakes only; open streams are left to finish.
 */
import type { ListenOptions } from 'node:net';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { HboneServer, connectTcp, type ConnectContext, type AuthorizeDecision } from '../tunnel/server.js';
import type { ListenTarget, ProxyContext } from './context.js';
import type { PodSourceUse } from './source-address.js';
import type { WorkloadView } from './mesh-state.js';
import { decideInbound, forwardedSourceProblem, serviceOf, tcpLabels } from './inbound-policy.js';

/** How often a released pod's server checks whether its last session ended. */
const RELEASE_POLL_MS = 5_000;

interface Accepted {
  target: WorkloadView;
  labels: ReturnType<typeof tcpLabels>;
  source: { address: string; port: number };
}

export class InboundHbone {
  /** `tlsGroups`: key-exchange groups the pods' HBONE servers offer (default X25519MLKEM768, X25519). */
  constructor(private readonly ctx: ProxyContext, private readonly registry?: Registry, private readonly tlsGroups?: readonly string[]) {}

  /** An HBONE server for one pod, listening on `options` (`{ fd }` from Capture.enroll). */
  async listen(pod: WorkloadView, options: ListenTarget): Promise<PodHboneServer> {
    const accepted = new WeakMap<ConnectContext, Accepted>();
    const server = await HboneServer.create({
      identity: pod.identity,
      credentials: this.ctx.credentials,
      authorize: (c) => this.authorize(pod, c, accepted),
      connectUpstream: (c) => this.connectUpstream(c, accepted),
      logger: this.ctx.log,
      ...(this.registry !== undefined ? { registry: this.registry } : {}),
      ...(this.tlsGroups !== undefined ? { tlsGroups: this.tlsGroups } : {}),
    });
    const use = await this.ctx.apps?.attach(pod.key, options);
    try {
      await server.listen(options as ListenOptions);
    } catch (err) {
      use?.release();
      throw err;
    }
    return new PodHboneServer(server, use);
  }

  private authorize(pod: WorkloadView, c: ConnectContext, accepted: WeakMap<ConnectContext, Accepted>): AuthorizeDecision {
    const state = this.ctx.state();
    const target = state.workloads.get(pod.key) ?? pod;
    // The original source is the one the peer forwards only when the peer may speak for it;
    // otherwise the connection is refused below, recorded with the tunnel peer's address.
    const claimed = c.forwardedFor;
    const spoofed = claimed === undefined ? undefined : forwardedSourceProblem(state, c.peerIdentity, claimed.host);
    const trusted = claimed !== undefined && spoofed === undefined ? claimed : undefined;
    const sourceIp = trusted?.host ?? c.remoteAddress.replace(/^::ffff:/, '');
    const source = { address: sourceIp, port: trusted?.port ?? c.remotePort };
    const srcWorkload = state.workloadsByIp.get(sourceIp);
    const labels = tcpLabels({
      reporter: 'destination', source: srcWorkload, sourcePrincipal: c.peerIdentity, destination: target,
      destinationPrincipal: target.identity, service: serviceOf(state, target, c.authority.port), mtls: true,
    });
    const dst = { address: c.authority.host, port: c.authority.port };
    const deny = (reason: string, policy: string, kind: string): AuthorizeDecision => {
      const rec = this.ctx.tracker.start({ direction: 'inbound', pod: target.key, source, destination: dst, protocol: 'hbone', upstream: undefined, tlsGroup: c.tlsGroup, labels: { ...labels, response_flags: 'DENY' } });
      rec.close({ bytesSent: 0, bytesReceived: 0, flags: 'DENY', reason, policy });
      this.ctx.metrics.denials.inc({ reason: kind, policy, direction: 'inbound' });
      this.ctx.log.warn({ pod: target.key, peer: c.peerIdentity, source: sourceIp, authority: `${dst.address}:${dst.port}`, policy, reason }, 'inbound HBONE connection denied');
      return { allow: false, reason };
    };
    if (spoofed !== undefined) return deny(spoofed, '-', 'forwarded_source');
    if (!target.ips.includes(c.authority.host)) {
      return deny(`CONNECT to ${c.authority.host}:${c.authority.port} refused: this listener serves ${target.key} (${target.ips.join(', ')}) only`, '-', 'bad_authority');
    }
    const verdict = decideInbound(state, target, c.authority.host, c.authority.port, { principal: c.peerIdentity, ip: sourceIp });
    if (!verdict.allow) return deny(verdict.reason, verdict.policy, verdict.kind);
    accepted.set(c, { target, labels, source });
    return { allow: true };
  }

  private async connectUpstream(c: ConnectContext, accepted: WeakMap<ConnectContext, Accepted>): Promise<Socket> {
    const a = accepted.get(c);
    if (a === undefined) throw new Error('CONNECT was not authorized');
    const dst = { address: c.authority.host, port: c.authority.port };
    let sock: Socket;
    try {
      sock = this.ctx.apps !== undefined
        ? await this.ctx.apps.connect(a.target.key, a.source, dst, this.ctx.connectTimeoutMs)
        : await connectTcp(c.authority, this.ctx.connectTimeoutMs);
    } catch (err) {
      const rec = this.ctx.tracker.start({ direction: 'inbound', pod: a.target.key, source: a.source, destination: dst, protocol: 'hbone', upstream: `${dst.address}:${dst.port}`, tlsGroup: c.tlsGroup, labels: a.labels });
      rec.close({ bytesSent: 0, bytesReceived: 0, flags: 'UF', reason: (err as Error).message });
      throw err;
    }
    const rec = this.ctx.tracker.start({ direction: 'inbound', pod: a.target.key, source: a.source, destination: dst, protocol: 'hbone', upstream: `${dst.address}:${dst.port}`, tlsGroup: c.tlsGroup, labels: a.labels });
    rec.kill = () => sock.destroy();
    rec.bytes = () => ({ bytesSent: sock.bytesWritten, bytesReceived: sock.bytesRead });
    sock.once('close', () => rec.close({ bytesSent: sock.bytesWritten, bytesReceived: sock.bytesRead }));
    return sock;
  }
}

/** A pod's HBONE server, as enrollment holds it. */
export class PodHboneServer {
  constructor(readonly server: HboneServer, private readonly source?: PodSourceUse) {}

  /**
   * Stops accepting new handshakes; open streams continue (release keeps old connections), and
   * the server is closed once its last session ended, so the pod's port is free for a later
   * re-enroll while its connections keep flowing.
   */
  stopAccepting(): void {
    this.server.stopAccepting().catch(() => {});
    this.source?.requestTeardown(); // a release: the pod's reply routing goes with its last listener
    const timer = setInterval(() => {
      if (this.server.sessionCount() > 0) return;
      clearInterval(timer);
      this.server.close(0).catch(() => {}).finally(() => this.source?.release());
    }, RELEASE_POLL_MS);
    timer.unref();
  }

  /** Drains with a deadline (agent shutdown): no new handshakes, open sessions get `graceMs`. */
  async close(graceMs: number): Promise<void> {
    this.server.stopAccepting().catch(() => {});
    this.server.drain();
    const deadline = Date.now() + graceMs;
    while (this.server.sessionCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    try {
      await this.server.close(0);
    } finally {
      this.source?.release();
    }
  }
}
