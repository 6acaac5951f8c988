/**
 * Effective PeerAuthentication per workload and port, with Istio's precedence: the workload's
 * own policy (selector in its namespace) over the namespace's (no selector) over the mesh's (no
 * selector, root namespace); a mode of UNSET (or no mtls) inherits from the next level; the
 * default is PERMISSIVE. Port-level modes (`portLevelMtls`) apply to container ports and only
 * on a workload policy; a port-level UNSET inherits the workload's effective mode. Ties between
 * policies at the same level go to the oldest (then by name), as in Istio.
 */
import type { PeerAuthenticationResource } from '../kinds/security.js';
import { compareAge, isEmptySelector, matchesLabels } from './selectors.js';
import type { EffectiveMtls, EffectiveMtlsMode, MtlsSource } from './types.js';

/** PeerAuthentications relevant to one namespace, pre-sorted oldest first. */
export interface PeerAuthnScope {
  /** Root namespace, no selector (the first is the mesh-wide policy). */
  readonly mesh: readonly PeerAuthenticationResource[];
  /** The namespace, no selector. */
  readonly namespace: readonly PeerAuthenticationResource[];
  /** The namespace, with selector. */
  readonly workload: readonly PeerAuthenticationResource[];
}

export function peerAuthnScope(all: readonly PeerAuthenticationResource[], namespace: string, rootNamespace: string): PeerAuthnScope {
  const mesh: PeerAuthenticationResource[] = [];
  const ns: PeerAuthenticationResource[] = [];
  const wl: PeerAuthenticationResource[] = [];
  for (const pa of all) {
    const noSelector = isEmptySelector(pa.spec.selector?.matchLabels);
    if (pa.ref.namespace === rootNamespace && noSelector) mesh.push(pa);
    if (pa.ref.namespace === namespace) {
      if (noSelector) {
        if (namespace !== rootNamespace) ns.push(pa);
      } else {
        wl.push(pa);
      }
    }
  }
  return { mesh: mesh.sort(compareAge), namespace: ns.sort(compareAge), workload: wl.sort(compareAge) };
}

const DEFAULT: EffectiveMtls = Object.freeze({ mode: 'PERMISSIVE', source: Object.freeze({ level: 'default' }), ports: Object.freeze({}) });

export function effectiveMtls(scope: PeerAuthnScope, labels: Readonly<Record<string, string>>): EffectiveMtls {
  const workloadPolicy = scope.workload.find((pa) => matchesLabels(pa.spec.selector?.matchLabels ?? {}, labels));
  const levels: [MtlsSource['level'], PeerAuthenticationResource | undefined][] = [
    ['workload', workloadPolicy],
    ['namespace', scope.namespace[0]],
    ['mesh', scope.mesh[0]],
  ];
  let mode: EffectiveMtlsMode = 'PERMISSIVE';
  let source: MtlsSource = DEFAULT.source;
  for (const [level, pa] of levels) {
    const m = pa?.spec.mtls?.mode;
    if (pa !== undefined && m !== undefined && m !== 'UNSET') {
      mode = m;
      source = { level, policy: pa.ref };
      break;
    }
  }
  const ports: Record<number, EffectiveMtlsMode> = {};
  if (workloadPolicy?.spec.portLevelMtls !== undefined) {
    for (const [port, setting] of Object.entries(workloadPolicy.spec.portLevelMtls)) {
      const m = setting.mode;
      ports[Number(port)] = m === undefined || m === 'UNSET' ? mode : m;
    }
  }
  if (source === DEFAULT.source && Object.keys(ports).length === 0) return DEFAULT;
  return { mode, source, ports };
}
