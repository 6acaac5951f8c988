/**
 * TokenReview (authentication.k8s.io/v1) through @kubernetes/client-node's AuthenticationV1Api:
 * the API server tells whether a subscriber's projected service-account token is valid, whose it
 * is, and (with Kubernetes >= 1.32) which pod and node it is bound to. The reviewed token is the
 * request body only; it is never logged nor put in an error message.
 */
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { TokenReviewer, TokenReviewResult } from '../auth.js';
import { kubeApiError } from './api-error.js';
import { apiServerOf } from './kube-config.js';

export class KubeTokenReviewer implements TokenReviewer {
  private readonly api: AuthenticationV1Api;
  private readonly server: string;

  constructor(kc: KubeConfig) {
    this.api = kc.makeApiClient(AuthenticationV1Api);
    this.server = apiServerOf(kc);
  }

  async review(token: string, audiences?: string[]): Promise<TokenReviewResult> {
    let status;
    try {
      const r = await this.api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } },
      });
      status = r.status ?? {};
    } catch (err) {
      throw kubeApiError("TokenReview (the control plane's service account needs create on tokenreviews.authentication.k8s.io)", this.server, err);
    }
    const out: TokenReviewResult = { authenticated: status.authenticated === true };
    if (status.user?.username !== undefined) out.username = status.user.username;
    if (status.user?.extra !== undefined) out.extra = status.user.extra;
    if (status.error !== undefined) out.error = status.error;
    return out;
  }
}
