/**
 * Fail-closed refusals as the kernel counted them (bpf/capture.bpf.c, ambit_failclosed): a
 * connection to or from an enrolled pod that was refused because the pod's agent listener was
 * missing (agent down, restarting, crashed). The per-CPU map is pinned, so what was refused while
 * no agent ran is still there for the next agent to report; a pod's entries go when it is released.
 */
import type { BpfMap } from './bpf-map.js';
import { decodeFailKey, type FailDirection } from './layout.js';

export interface FailClosedCount {
  /** Pod id, or `netns:<cookie>` for a netns this capture does not know (yet). */
  pod: string;
  netnsCookie: bigint;
  direction: FailDirection;
  count: number;
}

export function readFailClosed(map: BpfMap, pods: Iterable<{ id: string; netnsCookie: bigint }>): FailClosedCount[] {
  const byCookie = new Map<bigint, string>();
  for (const p of pods) byCookie.set(p.netnsCookie, p.id);
  const out: FailClosedCount[] = [];
  for (const key of map.keys()) {
    const values = map.lookupPerCpu(key);
    if (values === null) continue;
    const { netns, direction } = decodeFailKey(key);
    const count = Number(values.reduce((sum, b) => sum + b.readBigUInt64LE(0), 0n));
    out.push({ pod: byCookie.get(netns) ?? `netns:${netns}`, netnsCookie: netns, direction, count });
  }
  return out;
}
