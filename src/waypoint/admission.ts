/**
 * Admission: the steps a plain request and an upgrade share before anything is forwarded. In
 * Envoy's filter order: the service binding (404 NR when none), JWT authentication (401), L7
 * authorization with the model's evaluator (403, the deciding policy in the log), route match
 * (404 NR) and the local rate limit (429 RL).
 *
 * Invariants:
 * - Admission settles synchronously (no promise) unless a JWT has to be validated, so requests
 *   to services without RequestAuthentication never wait a loop turn.
 * - One JWT authenticator per service binding (built on first use or when a config is set) and
 *   one JWKS cache shared by all of them, so a config change does not refetch keys.
 * - A refusal is a value (`ok: false` with status, flag and detail), never a throw; the caller
 *   answers it.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { evaluateAuthorization } from '../model/authz/evaluate.js';
import type { Decision } from '../model/authz/types.js';
import type { Route } from '../model/compile/types.js';
import { logPath } from './access-log.js';
import type { ServiceBinding, WaypointConfig, WaypointServiceInfo } from './config.js';
import { FLAG, type ResponseFlag } from './flags.js';
import { JwtAuthenticator, type JwtAuthenticatorOptions, type JwtIdentity, type JwtResult } from './jwt.js';
import { parseCookies } from './jwt-location.js';
import { LocalRateLimiter } from './rate-limit.js';
import type { DownstreamInfo, DownstreamRequest, RequestState } from './request-state.js';
import { selectRoute, splitPath, type RouteChoice } from './router.js';

/** The outcome of the admission steps shared by plain requests and upgrades. */
export type Admission =
  | { readonly ok: false; readonly status: number; readonly flag: ResponseFlag | undefined; readonly detail: string; readonly headers?: OutgoingHttpHeaders }
  | { readonly ok: true; readonly binding: ServiceBinding; readonly choice: RouteChoice; readonly jwt: JwtIdentity | undefined };

const NO_JWT: JwtResult = { kind: 'none' };

function routeName(r: Route): string {
  return `${r.source.kind}/${r.source.namespace}/${r.source.name}${r.name !== undefined ? `#${r.name}` : ''}@${r.path}`;
}

/** The route a service without routes uses: everything to the service itself. */
function defaultRoute(svc: WaypointServiceInfo): Route {
  return {
    source: { group: '', kind: 'Service', namespace: svc.namespace, name: svc.name },
    path: 'default',
    name: undefined,
    matches: [],
    action: { type: 'forward', destinations: [{ host: svc.hostname, subset: undefined, port: undefined, weight: 100 }] },
    timeoutMs: undefined,
    retries: undefined,
    fault: undefined,
    mirrors: [],
    rewrite: undefined,
    requestHeaders: undefined,
    responseHeaders: undefined,
  };
}

/** The binding a request is for: by the CONNECT address, else by its authority. */
function bindingFor(config: WaypointConfig, down: DownstreamInfo, authority: string): ServiceBinding | undefined {
  const byAddr = config.bindingByAddress(down.destinationIp, down.destinationPort);
  if (byAddr !== undefined) return byAddr;
  const host = authority.replace(/:\d+$/, '').toLowerCase();
  const svc = config.serviceByHost(host);
  return svc === undefined ? undefined : config.binding(svc.key);
}

/** One per proxy: the JWT authenticators, the JWKS cache, the rate limiter and the default routes. */
export class Admitter {
  private readonly limiter: LocalRateLimiter;
  private readonly authenticators = new WeakMap<ServiceBinding, JwtAuthenticator>();
  private readonly jwksCaches = new Map<string, unknown>();
  private readonly defaultRoutes = new WeakMap<WaypointServiceInfo, Route>();

  constructor(
    /** `namespace/name` of the waypoint, for refusals. */
    private readonly name: string,
    private readonly log: Logger,
    private readonly jwt: JwtAuthenticatorOptions | undefined,
    now: () => number,
  ) {
    this.limiter = new LocalRateLimiter(now);
  }

  /** The JWT authenticator of a binding, built on first use. */
  authenticator(b: ServiceBinding): JwtAuthenticator {
    let a = this.authenticators.get(b);
    if (a === undefined) {
      const rules = b.requestAuthentication.flatMap((s) => s.jwtRules ?? []);
      a = new JwtAuthenticator(rules, { ...(this.jwt ?? {}), logger: this.log }, this.jwksCaches);
      for (const p of a.problems) this.log.error({ service: b.service.key, reason: p }, 'RequestAuthentication has an unusable JWKS; tokens of its issuer are refused');
      this.authenticators.set(b, a);
    }
    return a;
  }

  /** JWT, authorization, route match: what plain requests and upgrades share. */
  /** Settles synchronously (no promise) unless a JWT has to be validated. */
  admit(config: WaypointConfig, req: DownstreamRequest, st: RequestState, header: (n: string) => string | undefined): Admission | Promise<Admission> {
    const binding = bindingFor(config, st.down, st.authority);
    if (binding === undefined) {
      return { ok: false, status: 404, flag: FLAG.NO_ROUTE, detail: `no service bound to waypoint ${this.name} at ${st.down.destinationIp}:${st.down.destinationPort} (authority ${st.authority})` };
    }
    st.service = binding.service;
    const authn = this.authenticator(binding);
    // Identity headers the waypoint sets from verified tokens: a client's own copies are forged.
    if (authn.outputHeaderNames.size > 0) {
      const h = req.headers as Record<string, unknown>;
      for (const n of authn.outputHeaderNames) delete h[n];
    }
    if (authn.empty) return this.authorizeAndRoute(req, st, header, binding, authn, NO_JWT);
    const { query } = splitPath(st.target);
    const cookie = (n: string) => {
      const c = req.headers.cookie;
      return parseCookies(Array.isArray(c) ? c.join('; ') : c).get(n);
    };
    return authn.authenticate({ header, param: (n) => query.get(n), cookie }).then((jwt) => this.authorizeAndRoute(req, st, header, binding, authn, jwt));
  }

  /** L7 authorization, route match and rate limit, once the JWT (if any) is known. */
  private authorizeAndRoute(req: DownstreamRequest, st: RequestState, header: (n: string) => string | undefined, binding: ServiceBinding, authn: JwtAuthenticator, jwt: JwtResult): Admission {
    if (jwt.kind === 'invalid') {
      return { ok: false, status: 401, flag: undefined, detail: jwt.reason, headers: { 'www-authenticate': 'Bearer error="invalid_token"' } };
    }
    const identity = jwt.kind === 'valid' ? jwt.identity : undefined;
    if (binding.authorization.length > 0) {
      const headers = req.headers as Record<string, string | string[] | undefined>;
      const decision: Decision = evaluateAuthorization(
        binding.authorization,
        {
          source: { ...(st.down.peerIdentity !== undefined ? { principal: st.down.peerIdentity } : {}), ip: st.down.sourceIp },
          destination: { ip: st.down.destinationIp, port: st.down.destinationPort, namespace: binding.service.namespace },
          request: {
            method: st.method,
            path: st.target,
            host: st.authority,
            headers,
            ...(identity !== undefined ? { principal: identity.principal, audiences: identity.audiences, claims: identity.claims, ...(identity.presenter !== undefined ? { presenter: identity.presenter } : {}) } : {}),
          },
        },
        { layer: 'L7' },
      );
      if (!decision.allow) {
        st.policy = decision.policy === undefined ? undefined : `${decision.policy.namespace}/${decision.policy.name}`;
        // Denied, with or without a token: 403 as Istio (only an invalid token is a 401, above).
        this.log.warn({ service: binding.service.key, policy: st.policy ?? '-', code: decision.code, reason: decision.reason, method: st.method, path: logPath(st.target), source: st.down.peerIdentity ?? st.down.sourceIp, requestId: st.requestId }, 'request denied by authorization policy');
        return { ok: false, status: 403, flag: FLAG.RBAC_DENIED, detail: decision.reason };
      }
    }
    let choice: RouteChoice | undefined;
    if (binding.routes.length === 0) {
      let r = this.defaultRoutes.get(binding.service);
      if (r === undefined) {
        r = defaultRoute(binding.service);
        this.defaultRoutes.set(binding.service, r);
      }
      choice = { route: r, index: 0, match: undefined };
    } else {
      choice = selectRoute(binding.routes, { method: st.method, path: st.target, authority: st.authority, scheme: 'http', header, port: st.down.destinationPort });
    }
    if (choice === undefined) return { ok: false, status: 404, flag: FLAG.NO_ROUTE, detail: `no route of ${binding.service.key} matches ${st.method} ${logPath(st.target)}` };
    st.route = routeName(choice.route);
    const rl = this.limiter.check(binding.rateLimits, choice.route.name);
    if (!rl.allowed) {
      st.rateLimit = rl.limit;
      return { ok: false, status: rl.status ?? 429, flag: FLAG.RATE_LIMITED, detail: `rate limited by LocalRateLimit ${rl.limit ?? '-'}` };
    }
    return { ok: true, binding, choice, jwt: identity };
  }
}
