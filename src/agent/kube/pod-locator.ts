/**
 * Kubernetes-mode pod discovery for the node agent: from a pod UID (the model's `Workload.uid`)
 * to the path of that pod's network namespace, which capture enrolls.
 *
 * Pods and the agent start in any order:
 * - pods running before the agent are found by the first scan;
 * - a pod that appears later (or whose sandbox was recreated) is a cache miss or a stale entry,
 *   which triggers a rescan; rescans are rate-limited (`minRescanMs`) so a pod that is in the
 *   view but not yet on the node costs one scan per interval, not one per lookup. Enrollment
 *   retries such pods with backoff, so they are captured as soon as their sandbox exists.
 *
 * Invariants:
 * - A returned path was checked against the scan that produced it: the process still exists and
 *   is still in the same netns (`net:[inode]`) when returned; a recycled pid never leaks a wrong
 *   netns because the inode would differ and force a rescan.
 * - hostNetwork pods are never returned (their netns is the node's).
 * - The locator never throws on a lookup: an unreadable /proc is logged once and reported as
 *   "not found" with the reason in `lastError`.
 */
import { readlinkSync } from 'node:fs';
import type { Logger } from '../../util/log.js';
import { scanPods, type PodLocation } from './proc-scan.js';

export interface PodLocatorOptions {
  /** The node's procfs (default `/host/proc` when it exists in a pod, else `/proc`; see `defaultProcRoot`). */
  procRoot: string;
  /** Least time between two rescans triggered by misses, ms (default 1000). */
  minRescanMs?: number;
  /** The node's own netns identity, `net:[inode]` (default: read from `<procRoot>/1/ns/net`). */
  hostNetns?: string;
  /** Clock in ms (default Date.now; tests move it). */
  now?: () => number;
  logger?: Logger;
}

/** Why a pod cannot be located yet (shown in the agent's /config_dump). */
export type LocateResult = { found: true; location: PodLocation } | { found: false; reason: string; retry: boolean };

export class PodLocator {
  private pods = new Map<string, PodLocation>();
  private lastScan = Number.NEGATIVE_INFINITY;
  private readonly minRescanMs: number;
  private readonly now: () => number;
  private warned = false;
  /** Last scan error, if the last scan failed. */
  lastError: string | undefined;
  /** Scans done (metrics and tests). */
  scans = 0;

  constructor(private readonly opts: PodLocatorOptions) {
    this.minRescanMs = opts.minRescanMs ?? 1000;
    this.now = opts.now ?? Date.now;
  }

  /** Rescans /proc now (also called by a periodic refresh, if the caller wants one). */
  refresh(): void {
    this.lastScan = this.now();
    this.scans++;
    try {
      this.pods = scanPods({ procRoot: this.opts.procRoot, ...(this.opts.hostNetns !== undefined ? { hostNetns: this.opts.hostNetns } : {}) });
      this.lastError = undefined;
      this.warned = false;
    } catch (err) {
      this.lastError = (err as Error).message;
      if (!this.warned) this.opts.logger?.error({ procRoot: this.opts.procRoot, err: this.lastError }, 'cannot scan the node\'s processes for pods');
      this.warned = true;
    }
  }

  private valid(loc: PodLocation): boolean {
    try {
      return readlinkSync(loc.netnsPath) === loc.netns;
    } catch {
      return false;
    }
  }

  /** Where pod `uid` lives, rescanning (at most once per `minRescanMs`) on a miss or a stale entry. */
  locate(uid: string | undefined): LocateResult {
    if (uid === undefined || uid === '') return { found: false, reason: 'the pod has no metadata.uid in the view', retry: false };
    const key = uid.toLowerCase();
    let loc = this.pods.get(key);
    if ((loc === undefined || !this.valid(loc)) && this.now() - this.lastScan >= this.minRescanMs) {
      this.refresh();
      loc = this.pods.get(key);
      if (loc !== undefined && !this.valid(loc)) loc = undefined;
    } else if (loc !== undefined && !this.valid(loc)) {
      loc = undefined;
    }
    if (loc === undefined) {
      return { found: false, retry: true, reason: this.lastError !== undefined ? `pod discovery failed: ${this.lastError}` : `no process of pod ${key} on this node yet (sandbox not started, or already gone)` };
    }
    if (loc.hostNetwork) return { found: false, reason: 'the pod uses the node\'s network namespace (hostNetwork)', retry: false };
    return { found: true, location: loc };
  }

  /** The netns path of pod `uid`, or undefined (see `locate` for the reason). */
  netnsPath(uid: string | undefined): string | undefined {
    const r = this.locate(uid);
    return r.found ? r.location.netnsPath : undefined;
  }

  /** Every pod found by the last scan. */
  known(): PodLocation[] {
    return [...this.pods.values()];
  }
}

/** The node's procfs as the agent sees it: `/host/proc` when mounted (DaemonSet), else `/proc`. */
export function defaultProcRoot(exists: (p: string) => boolean): string {
  return exists('/host/proc/1') ? '/host/proc' : '/proc';
}
