/**
 * Mesh-wide settings (Istio's MeshConfig) that the control plane pushes to every agent as one
 * MESH_CONFIG resource named `mesh`. Only the settings ambit implements are read:
 * `outboundTrafficPolicy.mode` (ALLOW_ANY, the default, or REGISTRY_ONLY).
 *
 * Sources, later ones winning: a MeshConfig YAML file (`--mesh-config FILE`: either the MeshConfig
 * itself, as in the `mesh` key of Istio's `istio` ConfigMap, or that ConfigMap), then flags
 * (`--outbound-traffic-policy`).
 *
 * Invariants: the resource is always present in a view served by a control plane that knows it, so
 * an agent that finds none is talking to an older control plane and keeps ALLOW_ANY (what agents
 * did before the setting existed); the JSON carries only fields with a value.
 */
import { parse as parseYaml } from 'yaml';
import { ControlConfigError } from './errors.js';
import type { MeshResource } from './mesh-resource.js';

export const OUTBOUND_TRAFFIC_POLICY_MODES = ['ALLOW_ANY', 'REGISTRY_ONLY'] as const;
export type OutboundTrafficPolicyMode = (typeof OUTBOUND_TRAFFIC_POLICY_MODES)[number];

/** The mesh settings agents receive. */
export interface MeshConfig {
  /**
   * What an enrolled pod may reach outside the registry (mesh services, pods, ServiceEntries):
   * ALLOW_ANY passes such connections through, REGISTRY_ONLY refuses them (default ALLOW_ANY).
   */
  outboundTrafficPolicy: { mode: OutboundTrafficPolicyMode };
}

export const DEFAULT_MESH_CONFIG: MeshConfig = Object.freeze({ outboundTrafficPolicy: Object.freeze({ mode: 'ALLOW_ANY' as const }) });

/** Name of the one MESH_CONFIG resource. */
export const MESH_CONFIG_NAME = 'mesh';

/** Checks a mode value; throws ControlConfigError naming `where`. */
export function outboundTrafficPolicyMode(v: unknown, where: string): OutboundTrafficPolicyMode {
  if (typeof v === 'string' && (OUTBOUND_TRAFFIC_POLICY_MODES as readonly string[]).includes(v)) return v as OutboundTrafficPolicyMode;
  throw new ControlConfigError(`${where}: ${JSON.stringify(v)} is not an outbound traffic policy mode (ALLOW_ANY or REGISTRY_ONLY)`);
}

/**
 * MeshConfig settings from YAML text: a MeshConfig mapping, or a ConfigMap whose `data.mesh` holds
 * one. Settings ambit does not implement are ignored. Throws ControlConfigError on YAML that is
 * not a mapping or a mode that is not ALLOW_ANY / REGISTRY_ONLY.
 */
export function parseMeshConfig(text: string, file: string): Partial<MeshConfig> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ControlConfigError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ControlConfigError(`${file}: expected a MeshConfig mapping (or Istio's istio ConfigMap)`);
  const o = doc as Record<string, unknown>;
  if (o['kind'] === 'ConfigMap') {
    const mesh = (o['data'] as Record<string, unknown> | undefined)?.['mesh'];
    if (typeof mesh !== 'string') throw new ControlConfigError(`${file}: the ConfigMap has no data.mesh (Istio keeps the MeshConfig there)`);
    return parseMeshConfig(mesh, `${file} (data.mesh)`);
  }
  const otp = o['outboundTrafficPolicy'];
  if (otp === undefined || otp === null) return {};
  if (typeof otp !== 'object' || Array.isArray(otp)) throw new ControlConfigError(`${file}: outboundTrafficPolicy must be a mapping with a mode`);
  const mode = (otp as Record<string, unknown>)['mode'];
  if (mode === undefined) return {};
  return { outboundTrafficPolicy: { mode: outboundTrafficPolicyMode(mode, `${file}: outboundTrafficPolicy.mode`) } };
}

/** The MESH_CONFIG resource every agent receives. */
export function meshConfigResource(cfg: MeshConfig): MeshResource {
  return { kind: 'MESH_CONFIG', name: MESH_CONFIG_NAME, json: JSON.stringify({ outboundTrafficPolicy: { mode: cfg.outboundTrafficPolicy.mode } }) };
}
