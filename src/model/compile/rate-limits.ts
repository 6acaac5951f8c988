/**
 * LocalRateLimits (`ambit.dev/v1alpha1`, kinds/ambit-rate-limit.ts) compiled into the rate
 * limits of a Service, which its waypoint enforces.
 *
 * Attachment follows Gateway API policy attachment, as the kind documents: a targetRef names a
 * Service (group "" or "core") or a waypoint Gateway (group gateway.networking.k8s.io) in the
 * LocalRateLimit's own namespace. A Gateway target applies to every Service bound to that
 * waypoint (whatever the Service's namespace), so one bucket, keyed by the LocalRateLimit, is
 * shared by all of them at the waypoint.
 *
 * Invariants: a Service's list holds each LocalRateLimit at most once (a limit naming both the
 * Service and its waypoint counts as `via: 'service'`); Service targets come first, then the
 * waypoint's, each by name; defaults are filled in (tokensPerFill 1, statusCode 429).
 */
import { parseDurationMs } from '../duration.js';
import type { LocalRateLimitResource } from '../kinds/ambit-rate-limit.js';
import type { RateLimitPolicy, WaypointBinding } from './types.js';

const NONE: readonly RateLimitPolicy[] = Object.freeze([]);

/** The default status of a refused request. */
export const DEFAULT_RATE_LIMIT_STATUS = 429;

/** Target keys (`Service|ns/name`, `Gateway|ns/name`) of a LocalRateLimit, without repeats. */
export function rateLimitTargets(rl: LocalRateLimitResource): string[] {
  const out = new Set<string>();
  for (const t of rl.spec.targetRefs) {
    const group = t.group ?? '';
    if (t.kind === 'Service' && (group === '' || group === 'core')) out.add(`Service|${rl.ref.namespace}/${t.name}`);
    else if (t.kind === 'Gateway' && group === 'gateway.networking.k8s.io') out.add(`Gateway|${rl.ref.namespace}/${t.name}`);
  }
  return [...out];
}

function compileOne(rl: LocalRateLimitResource, via: RateLimitPolicy['via']): RateLimitPolicy {
  const tb = rl.spec.tokenBucket;
  return Object.freeze({
    key: `${rl.ref.namespace}/${rl.ref.name}`,
    source: rl.ref,
    via,
    ...(rl.spec.routeName !== undefined ? { routeName: rl.spec.routeName } : {}),
    maxTokens: tb.maxTokens,
    tokensPerFill: tb.tokensPerFill ?? 1,
    // The schema accepted the duration (>= 1ms), so it parses.
    fillIntervalMs: parseDurationMs(tb.fillInterval) as number,
    statusCode: rl.spec.statusCode ?? DEFAULT_RATE_LIMIT_STATUS,
  });
}

/**
 * The rate limits of the Service `serviceKey` bound to `waypoint` (undefined: not bound, so only
 * its own targets count). `targeting` looks LocalRateLimits up by target key.
 */
export function serviceRateLimits(
  serviceKey: string,
  waypoint: WaypointBinding | undefined,
  targeting: (target: string) => readonly LocalRateLimitResource[],
): readonly RateLimitPolicy[] {
  const own = targeting(`Service|${serviceKey}`);
  const viaWaypoint = waypoint === undefined ? [] : targeting(`Gateway|${waypoint.namespace}/${waypoint.name}`);
  if (own.length === 0 && viaWaypoint.length === 0) return NONE;
  const seen = new Set(own.map((r) => r.key));
  return Object.freeze([...own.map((r) => compileOne(r, 'service')), ...viaWaypoint.filter((r) => !seen.has(r.key)).map((r) => compileOne(r, 'waypoint'))]);
}
