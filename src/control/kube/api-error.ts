/**
 * Turns what @kubernetes/client-node throws into a KubeApiError an operator can act on: the
 * HTTP status and the API server's own Status message for an answered request (ApiException,
 * or the Watch class's Error with `statusCode`), and the network cause (connection refused, TLS
 * verification, timeout) with the server's address for one that never got an answer.
 * The library's ApiException message carries the response headers; that text is never used.
 */
import { ApiException } from '@kubernetes/client-node';
import { KubeApiError } from '../errors.js';

const HINTS: Record<number, string> = {
  401: 'the API server rejected the credentials (expired or wrong token or client certificate?)',
  403: "RBAC: the control plane's ClusterRole must allow it, see deploy/rbac.yaml",
};

/** The HTTP status of a failed client-node call, or undefined when no answer came back. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code as number;
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** `what` names the request ("list pods", "TokenReview"); `server` is the API server URL. */
export function kubeApiError(what: string, server: string, err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const status = statusOf(err);
  if (status !== undefined) {
    const body = err instanceof ApiException ? statusMessage(err.body) : (err as Error).message;
    const hint = HINTS[status];
    return new KubeApiError(`${what}: HTTP ${status}${body ? `: ${body}` : ''}${hint ? ` (${hint})` : ''}`, status, { cause: err });
  }
  return new KubeApiError(`${what}: cannot reach the Kubernetes API server at ${server}: ${networkCause(err)}`, undefined, { cause: err });
}

/** The innermost cause's message: undici reports "fetch failed" with the socket error as cause. */
function networkCause(err: unknown): string {
  let e = err as { message?: string; cause?: unknown; name?: string } | undefined;
  for (let i = 0; i < 5 && e?.cause !== undefined; i++) e = e.cause as typeof e;
  if (e?.name === 'TimeoutError') return 'no answer before the request timeout';
  return e?.message ?? String(err);
}

function statusMessage(body: unknown): string {
  if (typeof body !== 'string') return typeof body === 'object' && body !== null ? ((body as { message?: string }).message ?? '') : '';
  try {
    const s = JSON.parse(body) as { message?: string; reason?: string };
    return s.message ?? s.reason ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}
