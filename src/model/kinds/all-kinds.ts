/**
 * The registry of kinds the model understands. To add a kind, write one file under
 * src/model/kinds/ that exports a `defineKind({...})` and add it to `KINDS` below (one line).
 */
import { namespaceKind, nodeKind, podKind, secretKind, serviceAccountKind, serviceKind } from './core.js';
import { authorizationPolicyKind, peerAuthenticationKind, requestAuthenticationKind } from './security.js';
import { destinationRuleKind, virtualServiceKind } from './networking.js';
import { istioGatewayKind } from './istio-gateway.js';
import { serviceEntryKind } from './service-entry.js';
import { gatewayKind, httpRouteKind } from './gateway-api.js';
import { grpcRouteKind, referenceGrantKind, tcpRouteKind, tlsRouteKind } from './gateway-routes.js';
import { localRateLimitKind } from './ambit-rate-limit.js';
import { telemetryKind } from './telemetry.js';
import { kindKey } from '../resource.js';
import type { KindDefinition } from './kind.js';

export const KINDS: readonly KindDefinition<unknown, unknown>[] = [
  namespaceKind,
  podKind,
  serviceKind,
  serviceAccountKind,
  nodeKind,
  secretKind,
  peerAuthenticationKind,
  authorizationPolicyKind,
  requestAuthenticationKind,
  virtualServiceKind,
  destinationRuleKind,
  istioGatewayKind,
  serviceEntryKind,
  httpRouteKind,
  grpcRouteKind,
  tcpRouteKind,
  tlsRouteKind,
  referenceGrantKind,
  gatewayKind,
  localRateLimitKind,
  telemetryKind,
] as readonly KindDefinition<unknown, unknown>[];

const BY_KEY = new Map<string, KindDefinition<unknown, unknown>>(KINDS.map((k) => [kindKey(k.group, k.kind), k]));
const BY_KIND = new Map<string, KindDefinition<unknown, unknown>[]>();
for (const k of KINDS) BY_KIND.set(k.kind, [...(BY_KIND.get(k.kind) ?? []), k]);

/** The definition of `group/kind`, if the model knows it. */
export function findKind(group: string, kind: string): KindDefinition<unknown, unknown> | undefined {
  return BY_KEY.get(kindKey(group, kind));
}

/** Definitions with this kind name in any group (to explain "wrong apiVersion"). */
export function kindsNamed(kind: string): readonly KindDefinition<unknown, unknown>[] {
  return BY_KIND.get(kind) ?? [];
}
