/**
 * IP addresses and CIDR blocks as numbers, for authorization matching without string work on the
 * hot path.
 *
 * Addresses and blocks are parsed by src/util/cidr.ts.
 *
 * Invariants:
 * - A `CidrSet` holds sorted, merged, non-overlapping inclusive ranges per family; matching is a
 *   binary search, so a policy with thousands of blocks costs O(log n).
 */
import type { ParsedCidr, ParsedIp } from '../../util/cidr.js';

function cmp6(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < 4; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

function next6(a: readonly number[]): number[] | undefined {
  const out = [...a];
  for (let i = 3; i >= 0; i--) {
    if ((out[i] as number) < 0xffffffff) {
      out[i] = (out[i] as number) + 1;
      return out;
    }
    out[i] = 0;
  }
  return undefined;
}

/** A set of CIDR blocks, matched by binary search over merged ranges. */
export class CidrSet {
  /** IPv4 range bounds, interleaved [lo0, hi0, lo1, hi1, ...], sorted and disjoint. */
  private readonly v4: Float64Array;
  /** IPv6 ranges, sorted and disjoint. */
  private readonly v6: ReadonlyArray<{ lo: readonly number[]; hi: readonly number[] }>;

  constructor(cidrs: readonly ParsedCidr[]) {
    const r4: [number, number][] = [];
    const r6: { lo: readonly number[]; hi: readonly number[] }[] = [];
    for (const c of cidrs) {
      if (c.family === 4) r4.push([c.lo, c.hi]);
      else r6.push({ lo: c.lo, hi: c.hi });
    }
    r4.sort((a, b) => a[0] - b[0]);
    const m4: number[] = [];
    for (const [lo, hi] of r4) {
      const last = m4.length - 1;
      if (last > 0 && lo <= (m4[last] as number) + 1) m4[last] = Math.max(m4[last] as number, hi);
      else m4.push(lo, hi);
    }
    this.v4 = Float64Array.from(m4);
    r6.sort((a, b) => cmp6(a.lo, b.lo));
    const m6: { lo: readonly number[]; hi: readonly number[] }[] = [];
    for (const r of r6) {
      const last = m6[m6.length - 1];
      const after = last === undefined ? undefined : next6(last.hi);
      if (last !== undefined && (after === undefined || cmp6(r.lo, after) <= 0)) {
        if (cmp6(r.hi, last.hi) > 0) last.hi = r.hi;
      } else {
        m6.push({ lo: r.lo, hi: r.hi });
      }
    }
    this.v6 = m6;
  }

  /** True when the set holds no block. */
  get empty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  /** True when `ip` lies in one of the blocks. */
  has(ip: ParsedIp): boolean {
    if (ip.family === 4) {
      const r = this.v4;
      const x = ip.v4;
      let lo = 0;
      let hi = r.length / 2 - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (x < (r[2 * mid] as number)) hi = mid - 1;
        else if (x > (r[2 * mid + 1] as number)) lo = mid + 1;
        else return true;
      }
      return false;
    }
    const r = this.v6;
    let lo = 0;
    let hi = r.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const range = r[mid] as { lo: readonly number[]; hi: readonly number[] };
      if (cmp6(ip.v6, range.lo) < 0) hi = mid - 1;
      else if (cmp6(ip.v6, range.hi) > 0) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
