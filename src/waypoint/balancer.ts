/**
 * Load balancing among the endpoints of one destination (service, subset, port): ROUND_ROBIN,
 * LEAST_REQUEST (power of two choices over in-flight requests, Envoy's default algorithm for
 * it), RANDOM, and consistent hashing on a header, a cookie or the source IP, with a ring (Ketama
 * style, `minimumRingSize` virtual nodes) or a Maglev lookup table (`tableSize`, prime).
 *
 * Invariants:
 * - `pick` only returns one of the `eligible` endpoints (not ejected, not already tried by this
 *   request); undefined when none is eligible.
 * - Consistent hashing is computed over the full endpoint set, so ejecting or excluding one
 *   endpoint moves only the keys that mapped to it (they walk to the next eligible entry).
 *   Hash structures are rebuilt only when the endpoint set changes.
 * - Without a hash key (the header is absent) a hashing balancer falls back to round robin.
 */
import { createHash } from 'node:crypto';
import type { LoadBalancerPolicy } from '../model/compile/types.js';

/** Istio `LoadBalancerSettings.ConsistentHashLB` (the subset ambit implements). */
export interface ConsistentHashPolicy {
  readonly httpHeaderName?: string;
  readonly httpCookie?: { readonly name: string };
  readonly useSourceIp?: boolean;
  /** Ring hash (the default when neither is given). */
  readonly ringHash?: { readonly minimumRingSize?: number };
  readonly maglev?: { readonly tableSize?: number };
}

export interface Pickable {
  readonly key: string;
  /** Requests in flight to this endpoint (LEAST_REQUEST). */
  readonly active: number;
}

export interface Balancer<E extends Pickable> {
  /**
   * Chooses among `all` the endpoints for which `eligible` holds. `hashKey` is used by
   * consistent-hash balancers only.
   */
  pick(all: readonly E[], eligible: (e: E) => boolean, hashKey?: string): E | undefined;
}

function hash64(s: string): bigint {
  return createHash('sha256').update(s).digest().readBigUInt64BE(0);
}

function hash32(s: string, seed: string): number {
  return createHash('sha256').update(seed).update(s).digest().readUInt32BE(0);
}

class RoundRobin<E extends Pickable> implements Balancer<E> {
  private next = 0;
  pick(all: readonly E[], eligible: (e: E) => boolean): E | undefined {
    const n = all.length;
    for (let i = 0; i < n; i++) {
      const e = all[(this.next + i) % n] as E;
      if (eligible(e)) {
        this.next = (this.next + i + 1) % n;
        return e;
      }
    }
    return undefined;
  }
}

class RandomPick<E extends Pickable> implements Balancer<E> {
  constructor(private readonly rand: () => number) {}
  pick(all: readonly E[], eligible: (e: E) => boolean): E | undefined {
    const ok = all.filter(eligible);
    return ok[Math.floor(this.rand() * ok.length)];
  }
}

/** Power of two choices: two random eligible endpoints, the one with fewer requests in flight. */
class LeastRequest<E extends Pickable> implements Balancer<E> {
  constructor(private readonly rand: () => number) {}
  pick(all: readonly E[], eligible: (e: E) => boolean): E | undefined {
    const ok = all.filter(eligible);
    if (ok.length <= 1) return ok[0];
    const a = ok[Math.floor(this.rand() * ok.length)] as E;
    let b = ok[Math.floor(this.rand() * (ok.length - 1))] as E;
    if (b === a) b = ok[ok.length - 1] as E;
    return b.active < a.active ? b : a;
  }
}

/** Ketama-style ring: each endpoint owns `minimumRingSize / n` points. */
class RingHash<E extends Pickable> implements Balancer<E> {
  private builtFor = '';
  private ring: { point: bigint; index: number }[] = [];
  private readonly fallback = new RoundRobin<E>();
  constructor(private readonly minimumRingSize: number) {}

  private build(all: readonly E[]): void {
    const sig = all.map((e) => e.key).join('|');
    if (sig === this.builtFor) return;
    this.builtFor = sig;
    const per = Math.max(1, Math.ceil(this.minimumRingSize / Math.max(1, all.length)));
    const ring: { point: bigint; index: number }[] = [];
    all.forEach((e, index) => {
      for (let v = 0; v < per; v++) ring.push({ point: hash64(`${e.key}_${v}`), index });
    });
    ring.sort((x, y) => (x.point < y.point ? -1 : x.point > y.point ? 1 : 0));
    this.ring = ring;
  }

  pick(all: readonly E[], eligible: (e: E) => boolean, hashKey?: string): E | undefined {
    if (hashKey === undefined || all.length === 0) return this.fallback.pick(all, eligible);
    this.build(all);
    const h = hash64(hashKey);
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ring[mid] as { point: bigint }).point < h) lo = mid + 1;
      else hi = mid;
    }
    for (let i = 0; i < this.ring.length; i++) {
      const e = all[(this.ring[(lo + i) % this.ring.length] as { index: number }).index] as E;
      if (eligible(e)) return e;
    }
    return undefined;
  }
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

/** Maglev (Eisenbud et al., 2016): a prime-sized lookup table filled by per-endpoint permutations. */
class Maglev<E extends Pickable> implements Balancer<E> {
  private builtFor = '';
  private table: Int32Array = new Int32Array(0);
  private readonly fallback = new RoundRobin<E>();
  private readonly size: number;
  constructor(tableSize: number) {
    let m = Math.max(7, tableSize);
    while (!isPrime(m)) m++;
    this.size = m;
  }

  private build(all: readonly E[]): void {
    const sig = all.map((e) => e.key).join('|');
    if (sig === this.builtFor) return;
    this.builtFor = sig;
    const m = this.size;
    const n = all.length;
    const table = new Int32Array(m).fill(-1);
    const offset = all.map((e) => hash32(e.key, 'offset') % m);
    const skip = all.map((e) => (hash32(e.key, 'skip') % (m - 1)) + 1);
    const next = new Array<number>(n).fill(0);
    let filled = 0;
    while (filled < m) {
      for (let i = 0; i < n && filled < m; i++) {
        let c = ((offset[i] as number) + (next[i] as number) * (skip[i] as number)) % m;
        while (table[c] !== -1) {
          next[i] = (next[i] as number) + 1;
          c = ((offset[i] as number) + (next[i] as number) * (skip[i] as number)) % m;
        }
        table[c] = i;
        next[i] = (next[i] as number) + 1;
        filled++;
      }
    }
    this.table = table;
  }

  pick(all: readonly E[], eligible: (e: E) => boolean, hashKey?: string): E | undefined {
    if (hashKey === undefined || all.length === 0) return this.fallback.pick(all, eligible);
    this.build(all);
    const start = Number(hash64(hashKey) % BigInt(this.size));
    for (let i = 0; i < this.size; i++) {
      const e = all[this.table[(start + i) % this.size] as number] as E;
      if (eligible(e)) return e;
    }
    return undefined;
  }
}

export interface BalancerOptions {
  /** Simple policy (default LEAST_REQUEST, Istio's default since 1.14). */
  policy?: LoadBalancerPolicy;
  /** Consistent hashing; takes precedence over `policy` (default none). */
  consistentHash?: ConsistentHashPolicy;
  /** Random source in [0,1) (default Math.random). */
  rand?: () => number;
}

/** A balancer for one destination. */
export function createBalancer<E extends Pickable>(o: BalancerOptions = {}): Balancer<E> {
  const rand = o.rand ?? Math.random;
  if (o.consistentHash !== undefined) {
    if (o.consistentHash.maglev !== undefined) return new Maglev<E>(o.consistentHash.maglev.tableSize ?? 65537);
    return new RingHash<E>(o.consistentHash.ringHash?.minimumRingSize ?? 1024);
  }
  switch (o.policy) {
    case 'ROUND_ROBIN':
      return new RoundRobin<E>();
    case 'RANDOM':
      return new RandomPick<E>(rand);
    default:
      return new LeastRequest<E>(rand);
  }
}

/** The hash key of a request under a consistent-hash policy (undefined: fall back to round robin). */
export function hashKeyOf(policy: ConsistentHashPolicy | undefined, req: { header(name: string): string | undefined; sourceIp: string }): string | undefined {
  if (policy === undefined) return undefined;
  if (policy.httpHeaderName !== undefined) return req.header(policy.httpHeaderName.toLowerCase());
  if (policy.httpCookie !== undefined) {
    const cookies = req.header('cookie');
    if (cookies === undefined) return undefined;
    for (const part of cookies.split(/;\s*/)) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === policy.httpCookie.name) return part.slice(eq + 1);
    }
    return undefined;
  }
  if (policy.useSourceIp === true) return req.sourceIp;
  return undefined;
}
