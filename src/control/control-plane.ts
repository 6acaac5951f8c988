/**
 * `ambit control` as a library: a configuration source feeding the resource table, Discovery and
 * the CA served over gRPC (TLS on 15012 with a certificate from the mesh root; plaintext on
 * 15010, loopback only), metrics and /config_dump on 15014, readiness on 15021.
 *
 * Invariants:
 * - Ready (15021 answers 200) only after the first configuration was accepted and every port
 *   listens; not ready again once draining starts.
 * - Subscribers that connect before the first configuration wait for it; nobody ever receives
 *   an empty view because the source was slow.
 * - The plaintext port only ever binds a loopback address.
 * - `stop()` drains: readiness fails, streams end with UNAVAILABLE (subscribers reconnect to
 *   another replica or retry), in-flight Sign calls finish up to `drainMs`, then everything closes.
 */
import * as grpc from '@grpc/grpc-js';
import type { Server } from 'node:http';
import { Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import type { Signer } from '../identity/signer.js';
import type { Authenticator } from './auth.js';
import { CaService } from './ca-service.js';
import { DiscoveryService, discoveryServiceDefinition } from './discovery-service.js';
import { ControlConfigError } from './errors.js';
import { createControlMetrics, type ControlMetrics } from './metrics.js';
import { protos } from './proto.js';
import { ResourceTable, type ChangeSet } from './resource-table.js';
import { ServingCertificate } from './serving-cert.js';
import { DEFAULT_TLS_GROUPS } from '../tunnel/tls-groups.js';
import type { ConfigProblem, ConfigSource, SourceSink } from './source.js';
import { RESOURCE_KINDS, type MeshResource } from './mesh-resource.js';
import { closeHttp, listenHttp, metricsServer, readinessServer, type AdminHandlers } from './admin-server.js';
import { DEFAULT_MESH_CONFIG, meshConfigResource, type MeshConfig } from './mesh-config.js';

export interface ControlPlaneOptions {
  source: ConfigSource;
  authenticator: Authenticator;
  /** The mesh CA (src/identity CertificateAuthority or any Signer). */
  signer: Signer;
  /** Trust domain (default `cluster.local`). */
  trustDomain?: string;
  /** SPIFFE ID of the control plane's serving certificate (default spiffe://<td>/ns/ambit-system/sa/ambit-control). */
  identity?: string;
  /** Address for the TLS, metrics and readiness ports (default `0.0.0.0`). */
  host?: string;
  /** gRPC over TLS (default 15012; 0 picks a free port). */
  tlsPort?: number;
  /** Plaintext gRPC on 127.0.0.1 (default 15010; null disables it). */
  plaintextPort?: number | null;
  /** Loopback address for the plaintext port (default `127.0.0.1`; must be loopback). */
  plaintextHost?: string;
  /** Metrics and /config_dump (default 15014). */
  metricsPort?: number;
  /** Readiness (default 15021). */
  readinessPort?: number;
  /** TLS key-exchange groups the TLS port offers, in order, as parseTlsGroups returns them (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
  /** How long stop() lets in-flight calls finish, ms (default 5000). */
  drainMs?: number;
  /** History kept for resuming subscribers, in resource changes (default 200000). */
  maxHistory?: number;
  /** Mesh-wide settings pushed to every agent as the MESH_CONFIG resource (default DEFAULT_MESH_CONFIG: ALLOW_ANY). */
  mesh?: MeshConfig;
  /** Metrics registry (default: a new Registry). */
  registry?: Registry;
  logger?: Logger;
}

export interface ControlPlanePorts { tls: number; plaintext: number | undefined; metrics: number; readiness: number }

export class ControlPlane {
  readonly table: ResourceTable;
  readonly registry: Registry;
  readonly metrics: ControlMetrics;
  readonly discovery: DiscoveryService;
  readonly ca: CaService;
  readonly trustDomain: string;
  readonly identity: string;
  private readonly log: Logger;
  private readonly serving: ServingCertificate;
  private grpcServer: grpc.Server | undefined;
  private http: Server[] = [];
  private boundPorts: ControlPlanePorts | undefined;
  private accepted = false;
  private draining = false;
  private lastProblems: ConfigProblem[] = [];
  private configErrors = 0;

  constructor(private readonly opts: ControlPlaneOptions) {
    this.log = childLogger('control', opts.logger);
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    this.identity = opts.identity ?? `spiffe://${this.trustDomain}/ns/ambit-system/sa/ambit-control`;
    const plainHost = opts.plaintextHost ?? '127.0.0.1';
    if (!/^127\.|^::1$|^localhost$/.test(plainHost)) {
      throw new ControlConfigError(`the plaintext port must bind a loopback address, not '${plainHost}'; remote subscribers use the TLS port`);
    }
    this.registry = opts.registry ?? new Registry();
    this.metrics = createControlMetrics(this.registry);
    this.table = new ResourceTable({ ...(opts.maxHistory !== undefined ? { maxHistory: opts.maxHistory } : {}) });
    this.discovery = new DiscoveryService({ table: this.table, authenticator: opts.authenticator, metrics: this.metrics, logger: this.log });
    this.ca = new CaService({ signer: opts.signer, table: this.table, authenticator: opts.authenticator, metrics: this.metrics, trustDomain: this.trustDomain, logger: this.log });
    this.serving = new ServingCertificate({ signer: opts.signer, identity: this.identity, logger: this.log, ...(opts.tlsGroups !== undefined ? { tlsGroups: opts.tlsGroups } : {}) });
  }

  /** Ports actually bound (after start). */
  get ports(): ControlPlanePorts {
    if (this.boundPorts === undefined) throw new ControlConfigError('control plane not started');
    return this.boundPorts;
  }

  /** Root certificates subscribers should trust to verify the TLS port. */
  get trustBundlePem(): string[] { return this.serving.trustBundlePem; }

  get ready(): boolean { return this.accepted && this.boundPorts !== undefined && !this.draining; }

  async start(): Promise<void> {
    await this.serving.start();
    const server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_permit_without_calls': 1, 'grpc.max_send_message_length': -1 });
    const p = protos();
    server.addService(discoveryServiceDefinition(), this.discovery.handlers());
    server.addService(p.ca.ambit.v1.CertificateAuthority.service, this.ca.handlers());
    this.grpcServer = server;
    const host = this.opts.host ?? '0.0.0.0';
    const bind = (addr: string, creds: grpc.ServerCredentials) => new Promise<number>((resolve, reject) => {
      server.bindAsync(addr, creds, (err, port) => err ? reject(new ControlConfigError(`cannot listen on ${addr}: ${err.message}`, { cause: err })) : resolve(port));
    });
    const tls = await bind(`${host}:${this.opts.tlsPort ?? 15012}`, this.serving.serverCredentials());
    let plaintext: number | undefined;
    if (this.opts.plaintextPort !== null) {
      plaintext = await bind(`${this.opts.plaintextHost ?? '127.0.0.1'}:${this.opts.plaintextPort ?? 15010}`, grpc.ServerCredentials.createInsecure());
    }
    const admin: AdminHandlers = {
      registry: this.registry,
      configDump: (withResources) => this.configDump(withResources),
      ready: () => this.readiness(),
    };
    const ms = metricsServer(admin);
    const rs = readinessServer(admin);
    this.http = [ms, rs];
    const metrics = await listenHttp(ms, this.opts.metricsPort ?? 15014, host);
    const readiness = await listenHttp(rs, this.opts.readinessPort ?? 15021, host);
    this.boundPorts = { tls, plaintext, metrics, readiness };
    this.log.info({ ports: this.boundPorts, identity: this.identity, tlsGroups: (this.opts.tlsGroups ?? DEFAULT_TLS_GROUPS).join(':') }, 'control plane listening');
    await this.opts.source.start(this.sink());
  }

  private readiness(): { ready: boolean; reason: string } {
    if (this.draining) return { ready: false, reason: 'draining' };
    if (!this.accepted) return { ready: false, reason: 'waiting for the first valid configuration' };
    return { ready: true, reason: 'ready' };
  }

  private sink(): SourceSink {
    const accepted = (cs: ChangeSet | undefined) => {
      this.metrics.configReloads.inc({ source: this.opts.source.status().kind });
      this.lastProblems = [];
      if (cs !== undefined) {
        const counts = this.table.countByKind();
        for (const kind of RESOURCE_KINDS) this.metrics.resources.set({ kind }, counts[kind] ?? 0);
        this.discovery.publish(cs);
      }
      if (!this.accepted) {
        this.accepted = true;
        this.discovery.markReady();
        this.log.info({ version: this.table.version, resources: this.table.size }, 'first configuration accepted; serving');
      }
    };
    return {
      // The mesh settings are not the source's: they ride along with every complete set.
      replaceAll: (resources: Iterable<MeshResource>, changedAtMs: number) => accepted(this.table.replaceAll([...resources, meshConfigResource(this.opts.mesh ?? DEFAULT_MESH_CONFIG)], changedAtMs)),
      applyDelta: (upserts, removals, changedAtMs) => accepted(this.table.apply(upserts, removals, changedAtMs)),
      rejected: (problems: ConfigProblem[]) => {
        this.configErrors++;
        this.lastProblems = problems;
        this.metrics.configErrors.inc({ source: this.opts.source.status().kind });
        for (const p of problems.slice(0, 20)) {
          this.log.error({ file: p.file, line: p.line, column: p.column, path: p.path, code: p.code },
            `configuration rejected, last good configuration keeps serving: ${p.file ? `${p.file}:${p.line ?? 0}:${p.column ?? 0}: ` : ''}${p.message}`);
        }
      },
    };
  }

  configDump(withResources = false): Record<string, unknown> {
    const out: Record<string, unknown> = {
      epoch: this.table.epoch,
      version: this.table.version,
      historyFloor: this.table.historyFloor,
      ready: this.ready,
      identity: this.identity,
      source: this.opts.source.status(),
      configErrorsTotal: this.configErrors,
      lastRejected: this.lastProblems,
      resources: this.table.countByKind(),
      subscribers: this.discovery.sessionInfo(),
    };
    if (withResources) {
      // An INGRESS carries TLS private keys: the dump shows where each came from, never the key.
      const redact = (kind: string, v: unknown): unknown => (kind === 'INGRESS' ? JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'keyPem' ? '[redacted]' : x))) : v);
      out['resourceList'] = [...this.table.values()].map((e) => ({ kind: e.resource.kind, name: e.resource.name, version: e.version, value: redact(e.resource.kind, JSON.parse(e.resource.json)) }));
    }
    return out;
  }

  /** Drain and close everything this instance opened. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info('draining');
    this.discovery.closeAll();
    const server = this.grpcServer;
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, this.opts.drainMs ?? 5000);
        server.tryShutdown(() => { clearTimeout(timer); resolve(); });
      });
    }
    this.serving.close();
    await this.opts.source.close();
    await Promise.all(this.http.map(closeHttp));
    this.log.info('stopped');
  }
}
