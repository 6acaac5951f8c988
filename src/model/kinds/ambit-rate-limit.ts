/**
 * `LocalRateLimit` (`ambit.dev/v1alpha1`): a token bucket enforced by a waypoint, per Service or
 * per route, answering 429 when the bucket is empty. Istio has no first-class API for this
 * (EnvoyFilter is the usual workaround), so ambit defines a small kind of its own:
 *
 * ```yaml
 * apiVersion: ambit.dev/v1alpha1
 * kind: LocalRateLimit
 * metadata: { name: reviews-limit, namespace: bookinfo }
 * spec:
 *   targetRefs:                      # Services (or the waypoint Gateway: all its services)
 *   - { kind: Service, name: reviews }
 *   routeName: v2-only               # optional: only requests matched to this named route
 *   tokenBucket:
 *     maxTokens: 100                 # bucket size (burst)
 *     tokensPerFill: 10              # added every fillInterval (default 1)
 *     fillInterval: 1s
 *   statusCode: 429                  # optional, default 429
 * ```
 *
 * Invariants: the bucket is local to each waypoint replica (as Envoy's local rate limit is);
 * `maxTokens` >= 1, `tokensPerFill` >= 1, `fillInterval` >= 1ms; a target must be a Service or a
 * Gateway in the same namespace (cross-namespace targets are refused, as in Gateway API policy
 * attachment). Documented in examples/ratelimit/README.md.
 */
import { arr, duration, int, obj, opt, req, str, type Infer } from '../schema/dsl.js';
import type { Resource } from '../resource.js';
import { defineKind } from './kind.js';

const targetRef = obj(
  {
    group: opt(str()),
    kind: req(str({ minLength: 1 })),
    name: req(str({ minLength: 1, maxLength: 253 })),
  },
  {
    check(ref, path, ctx) {
      const group = ref.group ?? '';
      const service = ref.kind === 'Service' && (group === '' || group === 'core');
      const gateway = ref.kind === 'Gateway' && group === 'gateway.networking.k8s.io';
      if (!service && !gateway) {
        ctx.report('AMBIT_SCHEMA_INVALID', `a LocalRateLimit targets a Service (group "") or a waypoint Gateway (group gateway.networking.k8s.io), not ${group === '' ? '' : `${group}/`}${ref.kind}`, [...path, 'kind']);
      }
    },
  },
);

const tokenBucket = obj({
  maxTokens: req(int({ min: 1 })),
  tokensPerFill: opt(int({ min: 1 })),
  fillInterval: req(duration({ minMs: 1 })),
});

const localRateLimitSpec = obj({
  targetRefs: req(arr(targetRef, { minItems: 1 })),
  routeName: opt(str({ minLength: 1 })),
  tokenBucket: req(tokenBucket),
  statusCode: opt(int({ min: 400, max: 599 })),
});

export const localRateLimitKind = defineKind({
  group: 'ambit.dev',
  kind: 'LocalRateLimit',
  versions: ['v1alpha1'],
  namespaced: true,
  nameRule: 'dns1123-subdomain',
  spec: localRateLimitSpec,
  specRequired: true,
  summary: 'token-bucket rate limit per Service or route, enforced by the waypoint (429 when empty)',
});
export type LocalRateLimitSpec = Infer<typeof localRateLimitSpec>;
export type LocalRateLimitResource = Resource<LocalRateLimitSpec, undefined>;
