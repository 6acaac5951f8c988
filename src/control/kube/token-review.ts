/**
 * TokenReview (authentication.k8s.io/v1) over the control plane's API connection: the API server
 * tells whether a subscriber's projected service-account token is valid, whose it is, and (with
 * Kubernetes >= 1.32) which pod and node it is bound to.
 */
import { KubeApiError } from '../errors.js';
import type { TokenReviewer, TokenReviewResult } from '../auth.js';
import type { KubeHttp } from './kube-http.js';

export class KubeTokenReviewer implements TokenReviewer {
  constructor(private readonly http: KubeHttp) {}

  async review(token: string, audiences?: string[]): Promise<TokenReviewResult> {
    const res = await this.http.request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview',
      spec: { token, ...(audiences ? { audiences } : {}) },
    }, 10_000);
    if (res.status !== 201 && res.status !== 200) {
      throw new KubeApiError(`TokenReview failed with HTTP ${res.status}; the control plane's service account needs create on tokenreviews`, res.status);
    }
    const status = (res.body as { status?: { authenticated?: boolean; error?: string; user?: { username?: string; extra?: Record<string, string[]> } } }).status ?? {};
    const out: TokenReviewResult = { authenticated: status.authenticated === true };
    if (status.user?.username !== undefined) out.username = status.user.username;
    if (status.user?.extra !== undefined) out.extra = status.user.extra;
    if (status.error !== undefined) out.error = status.error;
    return out;
  }
}
