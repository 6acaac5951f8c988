/**
 * What the agent reports about fail-closed capture and the narrow inbound bypass
 * (bpf/capture.bpf.c, src/ebpf/local-bypass.ts) in `/config_dump`: the rules as they are enforced,
 * where the local-SYN recorder is attached for each pod, and how many connections the kernel
 * refused per pod and direction because the agent's listener was missing (also exported as
 * `ambit_capture_fail_closed_total{pod,direction}` by src/ebpf/capture-metrics.ts).
 *
 * Reading never throws: a closed or absent capture yields `undefined` fields, so /config_dump keeps
 * answering while capture is broken (that is when an operator needs it).
 */
import type { Capture } from '../ebpf/capture.js';

export const FAIL_CLOSED_RULE =
  'an enrolled pod\'s traffic never goes around the agent: while its agent listener is missing (agent down, restarting, crashed) ' +
  'inbound SYNs are refused with a RST and outbound connects fail with ECONNREFUSED';

export interface CaptureGuardDump {
  failClosed: { rule: string; refused: { pod: string; direction: string; count: number }[] | undefined };
  inboundBypass: ReturnType<Capture['localBypass']> | undefined;
}

/** The parts of capture this reads; optional so capture backends without them (tests) report nothing. */
export interface GuardSource {
  failClosed?(): { pod: string; direction: string; count: number }[];
  localBypass?(): ReturnType<Capture['localBypass']>;
}

export function captureGuardDump(capture: GuardSource | undefined): CaptureGuardDump {
  let refused: CaptureGuardDump['failClosed']['refused'];
  let bypass: CaptureGuardDump['inboundBypass'];
  try { refused = capture?.failClosed?.().map(({ pod, direction, count }) => ({ pod, direction, count })); } catch { refused = undefined; }
  try { bypass = capture?.localBypass?.(); } catch { bypass = undefined; }
  return { failClosed: { rule: FAIL_CLOSED_RULE, refused }, inboundBypass: bypass };
}
