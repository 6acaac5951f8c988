/**
 * Subscriber authentication for Discovery and the CA.
 *
 * Folder mode: a bootstrap token file. Each non-empty, non-comment line is
 *   `<token>`                       any subscriber, which is trusted to name itself (development);
 *   `<token> agent <node>`          only the agent of that node;
 *   `<token> waypoint <ns>/<name>`  only that waypoint.
 * Tokens are compared in constant time (SHA-256 of both sides, timingSafeEqual, every entry
 * checked), and the file is re-read when its mtime changes, so tokens rotate without a restart.
 *
 * Kubernetes mode: the projected service-account token is sent to TokenReview. An agent must run
 * as one of the agent service accounts and the token must be bound to a pod on the node it claims
 * (`authentication.kubernetes.io/node-name`); a waypoint's principal is the service account of
 * its token, in the namespace it claims. Accepted reviews are cached briefly by token hash.
 *
 * Tokens are never logged; only their SHA-256 prefix appears in debug output.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ControlConfigError, PermissionDeniedError, UnauthenticatedError } from './errors.js';
import type { SubscriberId, SubscriberKindName } from './views.js';

export interface Principal extends SubscriberId {
  /** The service account the token proves (Kubernetes mode); undefined for bootstrap tokens. */
  serviceAccount?: { namespace: string; name: string };
}

export interface Authenticator {
  /**
   * Resolves to the principal for `token` acting as `claimed`, or rejects with
   * UnauthenticatedError (bad token) / PermissionDeniedError (good token, wrong claim).
   */
  authenticate(token: string, claimed: SubscriberId): Promise<Principal>;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

interface TokenEntry { digest: Buffer; kind?: SubscriberKindName; name?: string }

export function parseTokenFile(text: string, file: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    const [token, kind, name] = parts;
    if (token === undefined) return;
    if (parts.length === 1) { out.push({ digest: digest(token) }); return; }
    if (parts.length !== 3 || (kind !== 'agent' && kind !== 'waypoint') || name === undefined) {
      throw new ControlConfigError(`${file}:${i + 1}: expected '<token>' or '<token> agent|waypoint <name>'`);
    }
    out.push({ digest: digest(token), kind, name });
  });
  if (out.length === 0) throw new ControlConfigError(`${file}: no tokens; add at least one line '<token>'`);
  return out;
}

/** Bootstrap token file authenticator (folder mode). */
export class TokenFileAuthenticator implements Authenticator {
  private entries: TokenEntry[] = [];
  private mtimeMs = -1;

  /** `file`: path of the token file (required; read now, so a missing file fails start-up). */
  constructor(private readonly file: string) {
    this.reload();
  }

  private reload(): void {
    let st;
    try {
      st = statSync(this.file);
    } catch (err) {
      throw new ControlConfigError(`cannot read bootstrap token file ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    if (st.mtimeMs === this.mtimeMs) return;
    this.entries = parseTokenFile(readFileSync(this.file, 'utf8'), this.file);
    this.mtimeMs = st.mtimeMs;
  }

  async authenticate(token: string, claimed: SubscriberId): Promise<Principal> {
    try { this.reload(); } catch { /* keep the last good token set */ }
    if (token === '') throw new UnauthenticatedError('no token presented; pass the bootstrap token (--token-file)');
    const d = digest(token);
    let match: TokenEntry | undefined;
    for (const e of this.entries) {
      // Every entry is compared so timing does not reveal which one matched.
      if (timingSafeEqual(d, e.digest) && match === undefined) match = e;
    }
    if (match === undefined) throw new UnauthenticatedError('token rejected: it is not in the control plane\'s bootstrap token file');
    if (match.kind !== undefined && (match.kind !== claimed.kind || match.name !== claimed.name)) {
      throw new PermissionDeniedError(`token is bound to ${match.kind} '${match.name}', not ${claimed.kind} '${claimed.name}'`);
    }
    return { kind: claimed.kind, name: claimed.name };
  }
}

/** What the Kubernetes TokenReview API said about a token. */
export interface TokenReviewResult {
  authenticated: boolean;
  username?: string;
  extra?: Record<string, string[]>;
  error?: string;
}

export interface TokenReviewer {
  review(token: string, audiences?: string[]): Promise<TokenReviewResult>;
}

export interface TokenReviewAuthenticatorOptions {
  reviewer: TokenReviewer;
  /** Service accounts ("namespace/name") agents run as (default ["ambit-system/ambit-agent"]). */
  agentServiceAccounts?: string[];
  /** Audiences the token must carry (default: none requested, the API server's default). */
  audiences?: string[];
  /** How long an accepted review is reused, ms (default 60000). */
  cacheMs?: number;
}

const SA_PREFIX = 'system:serviceaccount:';

/** Kubernetes-mode authenticator (TokenReview). */
export class TokenReviewAuthenticator implements Authenticator {
  private readonly cache = new Map<string, { at: number; result: TokenReviewResult }>();
  private readonly agents: Set<string>;
  private readonly cacheMs: number;

  constructor(private readonly opts: TokenReviewAuthenticatorOptions) {
    this.agents = new Set(opts.agentServiceAccounts ?? ['ambit-system/ambit-agent']);
    this.cacheMs = opts.cacheMs ?? 60_000;
  }

  async authenticate(token: string, claimed: SubscriberId): Promise<Principal> {
    if (token === '') throw new UnauthenticatedError('no token presented; mount a projected service-account token');
    const key = digest(token).toString('hex');
    const now = Date.now();
    let result = this.cache.get(key);
    if (result === undefined || now - result.at > this.cacheMs) {
      const r = await this.opts.reviewer.review(token, this.opts.audiences);
      result = { at: now, result: r };
      if (r.authenticated) {
        this.cache.set(key, result);
        if (this.cache.size > 10_000) this.cache.delete(this.cache.keys().next().value as string);
      }
    }
    const r = result.result;
    if (!r.authenticated) throw new UnauthenticatedError(`TokenReview rejected the token${r.error ? `: ${r.error}` : ''}`);
    const user = r.username ?? '';
    if (!user.startsWith(SA_PREFIX)) throw new UnauthenticatedError(`token belongs to '${user}', not a service account`);
    const [ns, sa] = user.slice(SA_PREFIX.length).split(':');
    if (ns === undefined || sa === undefined) throw new UnauthenticatedError(`malformed service-account user '${user}'`);
    const serviceAccount = { namespace: ns, name: sa };
    if (claimed.kind === 'agent') {
      if (!this.agents.has(`${ns}/${sa}`)) {
        throw new PermissionDeniedError(`service account ${ns}/${sa} is not an agent service account (${[...this.agents].join(', ')})`);
      }
      const node = r.extra?.['authentication.kubernetes.io/node-name']?.[0];
      if (node === undefined) {
        throw new PermissionDeniedError('token carries no node binding (authentication.kubernetes.io/node-name); use a projected token from a pod on Kubernetes >= 1.32');
      }
      if (node !== claimed.name) throw new PermissionDeniedError(`token is bound to node '${node}', not '${claimed.name}'`);
      return { kind: 'agent', name: node, serviceAccount };
    }
    const slash = claimed.name.indexOf('/');
    if (slash <= 0 || claimed.name.slice(0, slash) !== ns) {
      throw new PermissionDeniedError(`waypoint '${claimed.name}' must be named '<namespace>/<name>' in its token's namespace '${ns}'`);
    }
    return { kind: 'waypoint', name: claimed.name, serviceAccount };
  }
}
