/**
 * The contract between a configuration source (a folder of YAML, the Kubernetes API) and the
 * control plane. A source turns what it reads into MeshResources and hands the control plane
 * either a complete set or a per-resource delta; it reports rejected configuration instead of
 * delivering it, so a broken edit never reaches a subscriber.
 */
import type { MeshResource } from './mesh-resource.js';

/** A configuration problem, as logged and shown on /config_dump. */
export interface ConfigProblem {
  message: string;
  /** Diagnostic code from the model, or a source-specific one. */
  code?: string;
  file?: string;
  line?: number;
  column?: number;
  /** Field path within the resource (`spec.rules[0]`). */
  path?: string;
}

export interface SourceSink {
  /** The complete set of resources now (anything not listed is removed). */
  replaceAll(resources: Iterable<MeshResource>, changedAtMs: number): void;
  /** Only these resources changed (removals are resourceKey() keys). */
  applyDelta(upserts: Iterable<MeshResource>, removals: Iterable<string>, changedAtMs: number): void;
  /** A load was rejected; the previous configuration keeps serving. */
  rejected(problems: ConfigProblem[]): void;
}

/** What /config_dump shows about a source. */
export interface SourceStatus {
  kind: string;
  /** Where it reads from (folder path, API server URL). */
  location: string;
  /** True once a first configuration was accepted. */
  synced: boolean;
  lastAcceptedAt?: string;
  lastRejectedAt?: string;
  /** Problems of the last rejected load; empty after a later load is accepted. */
  problems: ConfigProblem[];
  /** Source-specific details (per-kind resource versions, watch state). */
  details?: Record<string, unknown>;
}

export interface ConfigSource {
  /** Start reading; resolves once a first configuration was delivered or rejected. */
  start(sink: SourceSink): Promise<void>;
  status(): SourceStatus;
  close(): Promise<void>;
}
