/**
 * `ambit agent` as a library: the node agent (docs/architecture.md: processes, data path,
 * observability). It subscribes to the control plane for its node's view, captures the local pods
 * that belong to the mesh (enrollment.ts), obtains a certificate per local identity from the
 * control plane's CA (keys stay in this process), proxies captured traffic (outbound.ts,
 * inbound.ts, inbound-plaintext.ts) and reports metrics, access logs and admin endpoints.
 *
 * Lifecycle invariants:
 * - Start: capture is opened (adopting what a previous agent pinned), the cached view (if any) is
 *   served at once, and the control plane is dialled in the background; ready (15021) once a view
 *   is applied and enrollment has run once.
 * - Control plane down: the last good view keeps serving (in memory, and from the cache file
 *   after a restart); certificates keep serving until they expire while renewals retry.
 * - Stop (SIGTERM): readiness fails, listeners stop accepting, open connections get up to
 *   `drainMs` to finish, then the rest are closed.
 * - Upgrade (handover.ts): a new agent for the same state dir takes every listener over the
 *   hand-over socket before it opens capture; this agent then answers readiness 503, changes no
 *   capture state, and keeps accepting until SIGTERM, so no connect finds no listener. Capture stays pinned in the kernel so the
 *   next agent adopts it (pass `cleanup` to remove it, as `ambit demo down` does).
 */
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { Registry } from 'prom-client';
import { childLogger, type Logger } from '../util/log.js';
import { Capture, type OriginalDestination } from '../ebpf/capture.js';
import { IdentityManager } from '../identity/manager.js';
import type { Signer } from '../identity/signer.js';
import { HbonePool } from '../tunnel/pool.js';
import { DiscoveryClient, type TokenSource } from '../discovery/discovery-client.js';
import { GrpcSigner } from '../discovery/grpc-signer.js';
import type { Socket } from 'node:net';
import { AgentConfigError } from './errors.js';
import { MeshState, emptyMeshState } from './mesh-state.js';
import { describeTelemetry } from '../model/compile/telemetry.js';
import { createAgentMetrics, type AgentMetrics } from './metrics.js';
import { AccessLog } from './access-log.js';
import { ConnectionTracker } from './connections.js';
import { Resolver } from './resolve.js';
import { OutboundProxy } from './outbound.js';
import { InboundHbone } from './inbound.js';
import { InboundPlaintext } from './inbound-plaintext.js';
import { Enrollment, desiredCapture, type CaptureBackend, type NetnsLookup } from './enrollment.js';
import type { OriginalDestinationLookup, ProxyContext } from './context.js';
import { adminServer, closeHttp, listenHttp, metricsServer, readinessServer } from './admin.js';
import { HANDOVER_SOCKET, HandoverServer, listenOnFd, takeOver, type InheritedListeners, type NodePort } from './handover.js';
import { CaptureCheck } from './capture-check.js';
import { SourceAddress } from './source-address.js';
import type { CaptureKernelState } from '../ebpf/capture-inspect.js';
import { captureGuardDump, type GuardSource } from './fail-closed.js';
import { AgentDns } from './dns.js';

/** Ports of the agent (docs/architecture.md#ports); 0 picks a free port for the node-netns ones. */
export interface AgentPorts {
  /** Outbound capture listener in each pod netns (default 15001). */
  outbound?: number;
  /** Inbound plaintext listener in each pod netns (default 15006). */
  inboundPlain?: number;
  /** Inbound HBONE listener in each pod netns, and the port dialled on other nodes (default 15008). */
  hbone?: number;
  /** Admin: /config_dump, /certs, /connections (default 15000). */
  admin?: number;
  /** Prometheus metrics (default 15020). */
  metrics?: number;
  /** Readiness (default 15021). */
  readiness?: number;
}

/** The capture the agent drives: src/ebpf Capture, or anything with the same surface. */
export interface AgentCapture extends CaptureBackend {
  originalDestination(socket: Socket): OriginalDestination | null;
  stats(): Record<string, number>;
  close(opts?: { cleanup?: boolean }): void;
  /** Kernel state for the capture self-check (capture-check.ts); without it the check is off. */
  inspect?(): CaptureKernelState;
}

export interface AgentOptions {
  /** Kubernetes node name (required). */
  node: string;
  /** Control plane `host:port` (required): TLS port 15012 with `controlTrustBundlePem`, or 127.0.0.1:15010 plaintext. */
  control: string;
  /** PEM roots that sign the control plane's certificate (default: plaintext, loopback only). */
  controlTrustBundlePem?: string;
  /** SPIFFE ID the control plane must present (default spiffe://<td>/ns/ambit-system/sa/ambit-control). */
  controlIdentity?: string;
  /** Bootstrap or service-account token; a function is re-read on every use (required). */
  token: TokenSource;
  /** cgroup v2 directory capture attaches to (default /sys/fs/cgroup/kubepods.slice). */
  cgroupRoot?: string;
  /** bpffs pin directory (default /sys/fs/bpf/ambit/<node>). */
  pinDir?: string;
  /** Where the last good view is cached (default /var/lib/ambit/agent/<node>). */
  stateDir?: string;
  /** This node's addresses as pods see them (default: every address of the agent's netns). */
  nodeAddresses?: string[];
  ports?: AgentPorts;
  /** Address of the admin port (default 127.0.0.1, as Envoy and ztunnel). */
  adminHost?: string;
  /** Address of the metrics and readiness ports (default 0.0.0.0). */
  serveHost?: string;
  /** Trust domain (default cluster.local). */
  trustDomain?: string;
  /** Istio root namespace (default istio-system). */
  rootNamespace?: string;
  /** How long stop() lets connections finish, ms (default 30000, as terminationGracePeriodSeconds). */
  drainMs?: number;
  /**
   * On stop without a hand-over yet, how long to keep serving for a successor to take the
   * listeners (a surge pod whose readiness probe the old agent answered), ms (default 0).
   */
  handoverWaitMs?: number;
  /** Connect deadline to apps and passthrough destinations, ms (default 5000). */
  connectTimeoutMs?: number;
  /**
   * Deliver inbound connections to apps with the client's own address as the source (default
   * true; where the kernel or privileges do not allow it the agent says so and connects from the node).
   */
  preserveSourceAddress?: boolean;
  /** Workload certificate lifetime requested, s (default 24 h). */
  certificateLifetimeSeconds?: number;
  /**
   * TLS key-exchange groups offered, in order, on HBONE (both ways) and on the control-plane link,
   * as parseTlsGroups returns them (default X25519MLKEM768, X25519).
   */
  tlsGroups?: readonly string[];
  /**
   * Finds the netns of a local pod without an `ambit.dev/netns` annotation (Kubernetes mode:
   * src/agent/kube PodLocator, by pod UID from the node's /proc). Default: the annotation only.
   */
  netnsOf?: NetnsLookup;
  /**
   * Answer enrolled pods' DNS for the mesh's names (Istio ambient's DNS capture, dns.ts): UDP
   * queries to port 53 go to the agent's 127.0.0.1:<dnsPort> in the pod netns (default true;
   * false also detaches a previous agent's DNS programs). Only with the default capture.
   */
  dnsCapture?: boolean;
  /** Port of the DNS listener in each pod netns (default 15053). */
  dnsPort?: number;
  /** Kubernetes cluster domain, the suffix of Service names in DNS (default cluster.local). */
  clusterDomain?: string;
  /** Capture to use (default: Capture.open with the options above). */
  capture?: AgentCapture;
  /** Signer for workload certificates (default: the control plane's CA over gRPC). */
  signer?: Signer;
  /** Metrics registry (default: a new Registry). */
  registry?: Registry;
  logger?: Logger;
}

/** Every address of this netns (the node's addresses as its pods see them). */
export function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && !a.address.startsWith('fe80:')) out.push(a.address);
  }
  return out;
}

export class Agent {
  readonly registry: Registry;
  readonly metrics: AgentMetrics;
  readonly identities: IdentityManager;
  readonly tracker: ConnectionTracker;
  readonly discovery: DiscoveryClient;
  private readonly log: Logger;
  private readonly pool: HbonePool;
  private readonly enrollment: Enrollment;
  private capture: AgentCapture | undefined;
  private dns: AgentDns | undefined;
  private current: MeshState;
  private http: Server[] = [];
  private boundPorts: { admin: number; metrics: number; readiness: number } | undefined;
  private draining = false;
  private started = false;
  private readonly signer: Signer;
  private captureCheck: CaptureCheck | undefined;
  private readonly sourceAddress: SourceAddress;
  /** Upgrade (handover.ts): listeners taken from the predecessor, our own hand-over socket, and the successor's pid. */
  private inherited: InheritedListeners | undefined;
  private handover: HandoverServer | undefined;
  private handedOverTo: number | undefined;

  constructor(private readonly opts: AgentOptions) {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(opts.node ?? '')) throw new AgentConfigError(`node name '${opts.node}' is not a Kubernetes node name`);
    this.log = childLogger('agent', opts.logger);
    this.registry = opts.registry ?? new Registry();
    const trustDomain = opts.trustDomain ?? 'cluster.local';
    this.current = emptyMeshState({ node: opts.node, trustDomain, ...(opts.rootNamespace ? { rootNamespace: opts.rootNamespace } : {}) });
    const target = {
      address: opts.control,
      ...(opts.controlTrustBundlePem !== undefined ? { trustBundlePem: opts.controlTrustBundlePem } : {}),
      ...(opts.controlIdentity !== undefined ? { expectedIdentity: opts.controlIdentity } : {}),
      ...(opts.tlsGroups !== undefined ? { tlsGroups: opts.tlsGroups } : {}),
    };
    this.signer = opts.signer ?? new GrpcSigner({ ...target, kind: 'agent', name: opts.node, token: opts.token });
    this.identities = new IdentityManager({
      signer: this.signer, trustDomain, registry: this.registry, logger: childLogger('agent.identity', opts.logger),
      ...(opts.certificateLifetimeSeconds !== undefined ? { lifetimeSeconds: opts.certificateLifetimeSeconds } : {}),
    });
    this.metrics = createAgentMetrics(this.registry, {
      certificates: () => this.identities.identities().map((id) => this.identities.current(id)).filter((c) => c !== undefined).map((c) => ({ identity: c.identity, notAfter: c.notAfter })),
    });
    this.tracker = new ConnectionTracker(this.metrics, new AccessLog(childLogger('agent.access', opts.logger)), (pod, mode) => this.state.telemetryFor(pod)[mode]);
    this.pool = new HbonePool({ credentials: this.identities, registry: this.registry, logger: childLogger('agent.pool', opts.logger), ...(opts.tlsGroups !== undefined ? { tlsGroups: opts.tlsGroups } : {}) });
    const ports = opts.ports ?? {};
    this.sourceAddress = new SourceAddress({ log: childLogger('agent.source-address', opts.logger), registry: this.registry, ...(opts.preserveSourceAddress !== undefined ? { enabled: opts.preserveSourceAddress } : {}) });
    const ctx: ProxyContext = {
      apps: this.sourceAddress,
      state: () => this.current,
      tracker: this.tracker,
      metrics: this.metrics,
      credentials: this.identities,
      pool: this.pool,
      resolver: new Resolver({ hbonePort: ports.hbone ?? 15008 }),
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      log: childLogger('agent.proxy', opts.logger),
    };
    const lookup: OriginalDestinationLookup = (socket) => {
      const d = this.capture?.originalDestination(socket) ?? null;
      return d === null ? null : { address: d.address, port: d.port };
    };
    this.enrollment = new Enrollment({
      capture: {
        enroll: (p, inherited) => this.requireCapture().enroll(p, inherited),
        release: (id) => this.requireCapture().release(id),
        pods: () => this.requireCapture().pods(),
      },
      credentials: this.identities,
      outbound: new OutboundProxy(ctx, lookup),
      inbound: new InboundHbone(ctx, this.registry, opts.tlsGroups),
      plaintext: new InboundPlaintext(ctx, lookup),
      metrics: this.metrics,
      log: childLogger('agent.enrollment', opts.logger),
      ...(opts.netnsOf !== undefined ? { netnsOf: opts.netnsOf } : {}),
      inherited: (id) => this.inherited?.takePod(id),
    });
    const stateDir = opts.stateDir ?? join('/var/lib/ambit/agent', opts.node);
    this.discovery = new DiscoveryClient({
      ...target, kind: 'agent', name: opts.node, token: opts.token, cacheFile: join(stateDir, 'view.json'),
      logger: childLogger('agent.discovery', opts.logger),
    });
    this.discovery.on('update', (change) => {
      this.current = new MeshState(this.discovery.view, { node: opts.node, trustDomain, ...(opts.rootNamespace ? { rootNamespace: opts.rootNamespace } : {}) });
      this.metrics.viewVersion.set(change.version);
      for (const p of this.current.problems) this.log.warn({ version: change.version }, p);
      this.tracker.pruneDisabled(this.current).catch((err: Error) => this.log.warn({ err: err.message }, 'cannot remove the series Telemetry disabled'));
      this.log.info({ version: change.version, source: change.source, full: change.full, upserted: change.upserted.length, removed: change.removed.length }, 'view updated');
      if (this.capture !== undefined && !this.draining && this.handedOverTo === undefined) void this.enrollment.update(this.current).then(() => this.afterEnrollment());
    });
    this.discovery.on('connected', () => { this.metrics.controlPlaneConnected.set(1); this.log.info({ control: opts.control }, 'connected to the control plane'); });
    this.discovery.on('disconnected', (reason) => { this.metrics.controlPlaneConnected.set(0); this.log.warn({ control: opts.control, reason }, 'lost the control plane; serving the last good view'); });
    this.metrics.controlPlaneConnected.set(0);
  }

  private requireCapture(): AgentCapture {
    if (this.capture === undefined) throw new AgentConfigError('capture is not open');
    return this.capture;
  }

  /** The view in force. */
  get state(): MeshState { return this.current; }

  get ports(): { admin: number; metrics: number; readiness: number } {
    if (this.boundPorts === undefined) throw new AgentConfigError('agent not started');
    return this.boundPorts;
  }

  readiness(): { ready: boolean; reason: string } {
    if (this.draining) return { ready: false, reason: 'draining' };
    if (this.handedOverTo !== undefined) return { ready: false, reason: `handed over to the agent with pid ${this.handedOverTo}` };
    if (!this.started) return { ready: false, reason: 'starting' };
    if (this.discovery.view.empty) return { ready: false, reason: 'waiting for the first view from the control plane' };
    if (this.enrollment.passes === 0) return { ready: false, reason: 'enrolling local pods' };
    const broken = this.captureCheck?.broken() ?? [];
    if (broken.length > 0) return { ready: false, reason: `capture broken for ${broken.map((b) => `${b.pod} (${b.missing.join('; ')})`).join(', ')}` };
    return { ready: true, reason: 'ready' };
  }

  async start(): Promise<void> {
    const ports = this.opts.ports ?? {};
    const nodeAddresses = this.opts.nodeAddresses ?? localAddresses();
    const handoverPath = join(this.opts.stateDir ?? join('/var/lib/ambit/agent', this.opts.node), HANDOVER_SOCKET);
    this.inherited = await takeOver(handoverPath, this.opts.node, this.log);
    this.capture = this.opts.capture ?? await Capture.open({
      pinDir: this.opts.pinDir ?? join('/sys/fs/bpf/ambit', this.opts.node),
      cgroupPath: this.opts.cgroupRoot ?? '/sys/fs/cgroup/kubepods.slice',
      nodeAddresses,
      ports: { outbound: ports.outbound ?? 15001, inboundPlain: ports.inboundPlain ?? 15006, inboundHbone: ports.hbone ?? 15008 },
      registry: this.registry,
      ...(this.opts.logger !== undefined ? { logger: this.opts.logger } : {}),
    });
    if (this.opts.capture === undefined) {
      this.dns = await AgentDns.open({
        pinDir: this.opts.pinDir ?? join('/sys/fs/bpf/ambit', this.opts.node),
        cgroupPath: this.opts.cgroupRoot ?? '/sys/fs/cgroup/kubepods.slice',
        enabled: this.opts.dnsCapture ?? true,
        registry: this.registry,
        logger: this.opts.logger ?? this.log,
        ...(this.opts.dnsPort !== undefined ? { port: this.opts.dnsPort } : {}),
        capturePort: ports.outbound ?? 15001,
        ...(this.opts.clusterDomain !== undefined ? { clusterDomain: this.opts.clusterDomain } : {}),
      });
    }
    this.sourceAddress.start();
    const handlers = {
      registry: this.registry,
      configDump: () => this.configDump(),
      certs: () => this.certs(),
      connections: () => this.tracker.list(),
      ready: () => this.readiness(),
    };
    const admin = adminServer(handlers);
    const metrics = metricsServer(handlers);
    const readiness = readinessServer(handlers);
    this.http = [admin, metrics, readiness];
    const serveHost = this.opts.serveHost ?? '0.0.0.0';
    const bind = (s: Server, name: NodePort, port: number, host: string) => {
      const fd = this.inherited?.takeNode(name);
      return fd !== undefined ? listenOnFd(s, fd) : listenHttp(s, port, host);
    };
    try {
      this.boundPorts = {
        admin: await bind(admin, 'admin', ports.admin ?? 15000, this.opts.adminHost ?? '127.0.0.1'),
        metrics: await bind(metrics, 'metrics', ports.metrics ?? 15020, serveHost),
        readiness: await bind(readiness, 'readiness', ports.readiness ?? 15021, serveHost),
      };
    } catch (err) {
      await Promise.all(this.http.map(closeHttp));
      await this.dns?.close();
      if (this.opts.capture === undefined) this.capture.close();
      throw new AgentConfigError(`cannot listen on the agent's ports: ${(err as Error).message}`, { cause: err });
    }
    this.started = true;
    this.startCaptureCheck();
    this.handover = new HandoverServer({
      path: handoverPath, node: this.opts.node, log: this.log,
      offer: () => ({ pods: this.enrollment.enrolled().map((p) => ({ id: p.key, fds: p.listeners })), node: { admin, metrics, readiness } }),
      // The successor owns capture from here on; it checks it (capture-check.ts), this agent stops.
      onHandedOver: (pid) => { this.handedOverTo = pid; this.enrollment.freeze(); this.captureCheck?.stop(); },
    });
    await this.handover.listen().catch((err: Error) => this.log.warn({ path: handoverPath, err: err.message }, 'no hand-over socket: an upgrade will restart capture listeners instead'));
    await this.discovery.start();
    if (!this.discovery.view.empty) void this.enrollment.update(this.current).then(() => this.afterEnrollment());
    this.log.info({ node: this.opts.node, ports: this.boundPorts, nodeAddresses, control: this.opts.control }, 'agent started');
  }

  /** After an enrollment pass: inherited listeners no longer needed go, pods' DNS follows enrollment. */
  private afterEnrollment(): void {
    this.dropInherited();
    if (this.dns !== undefined && !this.draining && this.handedOverTo === undefined) void this.dns.sync(this.current, this.enrollment.enrolled());
  }

  /** Closes inherited listeners of pods this agent does not capture (gone from the view). */
  private dropInherited(): void {
    if (this.inherited === undefined) return;
    const wanted = new Set(this.current.localWorkloads().filter((w) => typeof desiredCapture(w, this.opts.netnsOf) !== 'string').map((w) => w.key));
    const closed = this.inherited.closeUnless((id) => wanted.has(id));
    if (closed.length > 0) this.log.info({ pods: closed }, 'closed listeners handed over for pods no longer captured here');
  }

  private startCaptureCheck(): void {
    const inspect = this.capture?.inspect?.bind(this.capture);
    if (inspect === undefined) return;
    this.captureCheck = new CaptureCheck({
      inspect,
      pods: () => this.enrollment.enrolled(),
      registry: this.registry,
      log: childLogger('agent.capture-check', this.opts.logger),
    });
    this.captureCheck.start();
  }

  /** Resolves once a view was applied and the local pods were enrolled once. */
  async whenReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.readiness().ready) {
      if (Date.now() > deadline) throw new AgentConfigError(`agent not ready after ${timeoutMs} ms: ${this.readiness().reason}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Enrollment's current pass (tests and the demo wait for a view change to be applied). */
  async settled(): Promise<void> {
    await this.enrollment.update(this.current);
  }

  configDump(): Record<string, unknown> {
    const s = this.current;
    const captured = new Map(this.enrollment.enrolled().map((p) => [p.key, p]));
    return {
      node: this.opts.node,
      ready: this.readiness(),
      controlPlane: { address: this.opts.control, connected: this.discovery.connected },
      view: {
        epoch: this.discovery.view.epoch, version: this.discovery.view.version,
        workloads: s.workloads.size, services: s.services.size, waypoints: s.waypoints.size, outboundTrafficPolicy: s.outboundTrafficPolicy,
        authorizationPolicies: s.authorizationPolicies.map((p) => p.key), problems: s.problems,
      },
      localPods: s.localWorkloads().map((w) => {
        const c = captured.get(w.key);
        const d = desiredCapture(w, this.opts.netnsOf);
        const mtls = s.mtlsFor(w);
        const health = c !== undefined ? this.captureCheck?.podHealth(w.key) : undefined;
        return {
          pod: w.key, ip: w.ip, identity: w.identity, captured: c !== undefined,
          ...(c !== undefined ? { netns: c.netnsPath, netnsCookie: c.netnsCookie, since: c.enrolledAt } : { reason: typeof d === 'string' ? d : 'enrolling' }),
          ...(health !== undefined ? { captureHealthy: health.healthy } : {}),
          ...(c !== undefined ? { sourceAddressPreserved: this.sourceAddress.status()[w.key] ?? false } : {}),
          mtls: { mode: mtls.mode, source: mtls.source.level, ...(mtls.source.policy ? { policy: `${mtls.source.policy.namespace}/${mtls.source.policy.name}` } : {}) },
          authorizationPolicies: s.policiesFor(w).map((p) => `${p.key} (${p.action})`),
          telemetry: describeTelemetry(s.telemetryFor(w.key)),
        };
      }),
      capture: (() => { try { return this.capture?.stats(); } catch { return undefined; } })(),
      dns: this.dns?.dump() ?? { enabled: false },
      captureCheck: this.captureCheck?.dump(),
      ...captureGuardDump(this.capture as GuardSource | undefined),
      activeConnections: this.tracker.size,
      handover: { ...(this.inherited !== undefined ? { takenFromPid: this.inherited.fromPid } : {}), ...(this.handedOverTo !== undefined ? { handedOverToPid: this.handedOverTo } : {}) },
    };
  }

  certs(): unknown[] {
    return this.identities.identities().map((id) => {
      const c = this.identities.current(id);
      if (c === undefined) return { identity: id, state: 'pending' };
      return {
        identity: c.identity, serial: c.serial, notBefore: c.notBefore, notAfter: c.notAfter, renewAt: c.renewAt,
        chain: c.chainPem.length, trustBundle: c.trustBundlePem.length,
        expiresInSeconds: Math.round((c.notAfter.getTime() - Date.now()) / 1000),
      };
    });
  }

  /**
   * Drains and stops: readiness fails, listeners stop accepting, connections get `drainMs`.
   * Capture stays pinned for the next agent unless `cleanup` (then everything is removed).
   */
  async stop(opts: { cleanup?: boolean } = {}): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.captureCheck?.stop();
    const waitMs = this.opts.handoverWaitMs ?? 0;
    if (waitMs > 0 && this.handedOverTo === undefined && this.handover !== undefined) {
      this.log.info({ waitMs }, 'stopping: serving a little longer in case a new agent comes to take the listeners');
      const until = Date.now() + waitMs;
      while (this.handedOverTo === undefined && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    }
    this.handover?.close();
    this.inherited?.closeRest();
    // A successor serves the node ports from the same sockets: stop answering on them at once.
    if (this.handedOverTo !== undefined) for (const s of this.http) s.close();
    const drainMs = this.opts.drainMs ?? 30_000;
    this.log.info({ activeConnections: this.tracker.size, drainMs }, 'draining');
    await this.discovery.close();
    const started = Date.now();
    await this.enrollment.stop(drainMs);
    const { killed } = await this.tracker.drain(Math.max(0, drainMs - (Date.now() - started)));
    if (killed > 0) this.log.warn({ killed }, 'drain deadline passed; closed the remaining connections');
    this.pool.destroy();
    await this.dns?.close(opts);
    if (this.opts.capture === undefined) this.capture?.close(opts);
    else if (opts.cleanup === true) this.capture?.close(opts);
    this.identities.close();
    (this.signer as { close?: () => void }).close?.();
    await Promise.all(this.http.map(closeHttp));
    this.log.info('stopped');
  }
}
