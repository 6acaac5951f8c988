/**
 * Label selection, as Kubernetes and Istio define it: every `matchLabels` entry must be on the
 * object; an empty or absent selector selects everything for policies, and nothing for a
 * Service (a Service without selector has manually managed endpoints, which ambit does not read).
 */

export function matchesLabels(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const k in selector) {
    if (labels[k] !== selector[k]) return false;
  }
  return true;
}

export function isEmptySelector(selector: Readonly<Record<string, string>> | undefined): boolean {
  if (selector === undefined) return true;
  for (const _ in selector) return false;
  return true;
}

/** Orders objects the way Istio breaks ties: oldest creationTimestamp first, then namespace/name. */
export function compareAge(
  a: { metadata: { creationTimestamp?: string; name: string; namespace?: string } },
  b: { metadata: { creationTimestamp?: string; name: string; namespace?: string } },
): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) {
    if (ta === '') return 1;
    if (tb === '') return -1;
    return ta < tb ? -1 : 1;
  }
  const ka = `${a.metadata.namespace ?? ''}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace ?? ''}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
