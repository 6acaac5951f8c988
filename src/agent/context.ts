/**
 * What the proxy handlers (outbound, inbound, inbound-plaintext) share: the current view, the
 * connection tracker, metrics, credentials and the HBONE pool. The agent owns all of it; handlers
 * only read `state()` per connection, so a view update never changes a connection half-way.
 */
import type { Logger } from '../util/log.js';
import type { CredentialSource } from '../identity/manager.js';
import type { HbonePool } from '../tunnel/pool.js';
import type { ConnectionTracker } from './connections.js';
import type { MeshState } from './mesh-state.js';
import type { AgentMetrics } from './metrics.js';
import type { Resolver } from './resolve.js';
import type { SourceAddress } from './source-address.js';
import type { Destination } from './resolve.js';
import type { ListenOptions, Socket } from 'node:net';

/** The original destination of an accepted socket (Capture.originalDestination), or null. */
export type OriginalDestinationLookup = (socket: Socket) => Destination | null;

export interface ProxyContext {
  /** The view in force now. */
  state(): MeshState;
  tracker: ConnectionTracker;
  metrics: AgentMetrics;
  credentials: CredentialSource;
  pool: HbonePool;
  resolver: Resolver;
  /**
   * Connects to local apps with the client's address as the source (source-address.ts); absent,
   * apps are reached from the node's netns.
   */
  apps?: SourceAddress;
  /** Deadline for TCP connects to apps and passthrough destinations, ms. */
  connectTimeoutMs: number;
  log: Logger;
}

/** Where a proxy listens: an address (tests) or an fd made in a pod netns by Capture.enroll. */
export type ListenTarget = ListenOptions | { fd: number };
