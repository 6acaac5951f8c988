/**
 * Envoy's response flags, the short codes Istio puts in access logs and in the `response_flags`
 * metric label, so existing dashboards and log queries keep working. A request carries a set of
 * flags; they are rendered comma-separated in a fixed order, `-` when empty.
 */

export const FLAG = {
  /** Upstream overflow: a connection-pool limit (circuit breaker) refused the request. */
  UPSTREAM_OVERFLOW: 'UO',
  /** Upstream connection failure. */
  UPSTREAM_CONNECT_FAILURE: 'UF',
  /** Upstream request timeout (route timeout). */
  UPSTREAM_REQUEST_TIMEOUT: 'UT',
  /** Upstream retry limit exceeded. */
  UPSTREAM_RETRY_LIMIT: 'URX',
  /** Upstream connection termination (reset mid request). */
  UPSTREAM_RESET: 'UC',
  /** Upstream protocol error: a response llhttp (or ambit on top) refused, a bad 101. */
  UPSTREAM_PROTOCOL_ERROR: 'UPE',
  /** No healthy upstream: every endpoint ejected, or none. */
  NO_HEALTHY_UPSTREAM: 'UH',
  /** No route matched. */
  NO_ROUTE: 'NR',
  /** Fault injection abort. */
  FAULT_ABORT: 'FI',
  /** Fault injection delay. */
  FAULT_DELAY: 'DI',
  /** Local rate limit. */
  RATE_LIMITED: 'RL',
  /** Denied by authorization (Envoy RBAC filter). */
  RBAC_DENIED: 'RBAC',
  /** Downstream connection termination. */
  DOWNSTREAM_TERMINATION: 'DC',
} as const;

export type ResponseFlag = (typeof FLAG)[keyof typeof FLAG];

const ORDER: readonly ResponseFlag[] = ['NR', 'RBAC', 'RL', 'FI', 'DI', 'UO', 'UH', 'UF', 'UT', 'UC', 'UPE', 'URX', 'DC'];

/** `UF,URX` style rendering; `-` when no flag is set. */
export function formatFlags(flags: ReadonlySet<ResponseFlag>): string {
  if (flags.size === 0) return '-';
  return ORDER.filter((f) => flags.has(f)).join(',');
}
