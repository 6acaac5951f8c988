/**
 * The whole mesh as discovery resources (what the control plane distributes), from either
 * - a folder of YAML (`--config DIR`): loaded, validated and compiled by the model, then projected
 *   exactly as the control plane's folder source does (src/control/projection.ts); or
 * - a running control plane: its `/config_dump?resources=1`, i.e. what it serves right now.
 *
 * The result is a discovery LocalView holding every resource (no per-subscriber scoping), so
 * `ambit why` can run the agents' and waypoints' own code on it (MeshState, Resolver,
 * decideInbound, configFromView): the explanation and the data path cannot drift apart.
 *
 * Invariant: a folder with errors is refused with the first problems (file:line), as the control
 * plane would refuse it; nothing is explained from a configuration that would not be served.
 */
import { LocalView } from '../../discovery/local-view.js';
import type { DiscoveryResponse__Output } from '../../gen/ambit/v1/DiscoveryResponse.js';
import { loadPaths } from '../../model/load/load-paths.js';
import { ModelCompiler } from '../../control/model-compiler.js';
import { Projector } from '../../control/projection.js';
import { RESOURCE_KINDS, type MeshKind } from '../../control/mesh-resource.js';
import { CliError } from './errors.js';
import { controlDump } from './targets.js';

export interface MeshViewOptions {
  /** Trust domain (default cluster.local). */
  trustDomain?: string;
  /** Istio root namespace (default istio-system). */
  rootNamespace?: string;
}

/** A LocalView holding `resources` (kind, name, JSON payload), as a full push would. */
export function viewOf(resources: Iterable<{ kind: string; name: string; json: string }>, version = 1, epoch = 'why'): LocalView {
  const kinds = new Set<string>(RESOURCE_KINDS);
  const upserts: DiscoveryResponse__Output['upserts'] = [];
  for (const r of resources) {
    if (!kinds.has(r.kind)) continue;
    upserts.push({ kind: r.kind as MeshKind, name: r.name, json: r.json } as DiscoveryResponse__Output['upserts'][number]);
  }
  const view = new LocalView();
  view.apply({ epoch, version, full: true, baseVersion: 0, upserts, removals: [], changedAtMs: Date.now(), replaceKinds: [] });
  return view;
}

/** The mesh of a folder of YAML, compiled and projected as the control plane would serve it. */
export async function viewFromFolder(dir: string, opts: MeshViewOptions = {}): Promise<LocalView> {
  const loaded = await loadPaths([dir]);
  const compiler = new ModelCompiler({ ...(opts.trustDomain !== undefined ? { trustDomain: opts.trustDomain } : {}), ...(opts.rootNamespace !== undefined ? { rootNamespace: opts.rootNamespace } : {}) });
  const compiled = compiler.compile(loaded.resources);
  const errors = [...loaded.diagnostics, ...compiled.diagnostics].filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    const first = errors.slice(0, 5).map((d) => `${d.file ?? dir}:${d.line ?? 0}:${d.column ?? 0}: ${d.message}`).join('\n  ');
    throw new CliError('AMBIT_ERR_CLI_CONFIG', `${dir} has ${errors.length} error(s); the control plane would refuse it (see \`ambit analyze ${dir}\`):\n  ${first}`);
  }
  if (loaded.resources.length === 0) throw new CliError('AMBIT_ERR_CLI_CONFIG', `no mesh resources in ${dir}`);
  if (compiled.mesh === undefined) throw new CliError('AMBIT_ERR_CLI_CONFIG', `the model could not compile ${dir}`);
  const projected = new Projector(opts.rootNamespace !== undefined ? { rootNamespace: opts.rootNamespace } : {}).project(compiled.mesh, loaded.resources);
  return viewOf(projected);
}

/** The mesh a running control plane serves (its /config_dump?resources=1). */
export async function viewFromControl(control: string): Promise<LocalView> {
  const dump = await controlDump(control, true, 10_000);
  if (dump.resourceList === undefined) throw new CliError('AMBIT_ERR_CLI_BAD_RESPONSE', `the control plane at ${control} did not list its resources (an older version?)`);
  return viewOf(dump.resourceList.map((r) => ({ kind: r.kind, name: r.name, json: JSON.stringify(r.value) })), dump.version, dump.epoch);
}
