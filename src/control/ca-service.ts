/**
 * CertificateAuthority.Sign behind authentication and authorization.
 *
 * Who may have which identity:
 * - a node agent: identities of workloads the current snapshot places on its own node
 *   (namespace and service account of some pod with spec.nodeName == the agent's node);
 * - a waypoint: only its own identity (its Gateway's namespace and service account).
 * Everything else is PERMISSION_DENIED with the reason, logged and counted by reason. A missing
 * or wrong token is UNAUTHENTICATED. The CSR itself is checked by the CA (src/identity/ca.ts):
 * it must claim exactly the requested identity.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log.js';
import { childLogger } from '../util/log.js';
import { AmbitError } from '../util/errors.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import type { Signer } from '../identity/signer.js';
import type { Authenticator, Principal } from './auth.js';
import type { ControlMetrics } from './metrics.js';
import type { SignRequest__Output, SignResponse } from './proto.js';
import type { ResourceTable } from './resource-table.js';
import { PermissionDeniedError, UnauthenticatedError } from './errors.js';
import type { SubscriberKindName } from './views.js';

/** Metadata keys a CA caller sends (the token as `authorization: Bearer <token>`). */
export const SUBSCRIBER_KIND_HEADER = 'ambit-subscriber-kind';
export const SUBSCRIBER_NAME_HEADER = 'ambit-subscriber-name';

export interface CaServiceOptions {
  signer: Signer;
  table: ResourceTable;
  authenticator: Authenticator;
  metrics: ControlMetrics;
  /** Trust domain of identities handed out (default `cluster.local`). */
  trustDomain?: string;
  logger?: Logger;
}

type Refusal = { code: grpc.status; reason: string; message: string };

export class CaService {
  private readonly log: Logger;
  private readonly trustDomain: string;

  constructor(private readonly opts: CaServiceOptions) {
    this.log = childLogger('control.ca', opts.logger);
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      Sign: (call: grpc.ServerUnaryCall<SignRequest__Output, SignResponse>, cb: grpc.sendUnaryData<SignResponse>) => {
        this.sign(call.metadata, call.request).then(
          (res) => cb(null, res),
          (refusal: Refusal) => cb({ code: refusal.code, details: refusal.message }),
        );
      },
    };
  }

  /** Resolves with the signed chain, or rejects with a Refusal (never with a raw error). */
  async sign(md: grpc.Metadata, req: SignRequest__Output): Promise<SignResponse> {
    const kindRaw = String(md.get(SUBSCRIBER_KIND_HEADER)[0] ?? '');
    const name = String(md.get(SUBSCRIBER_NAME_HEADER)[0] ?? '');
    const auth = String(md.get('authorization')[0] ?? '');
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    const kind: SubscriberKindName | undefined = kindRaw === 'agent' || kindRaw === 'waypoint' ? kindRaw : undefined;
    const kindLabel = kind ?? 'unknown';
    const refuse = (code: grpc.status, reason: string, message: string): Refusal => {
      this.opts.metrics.certsRefused.inc({ kind: kindLabel, reason });
      this.log.warn({ subscriber: { kind: kindLabel, name }, identity: req.identity, reason, err: message }, 'certificate request refused');
      return { code, reason, message };
    };
    if (kind === undefined || name === '') {
      throw refuse(grpc.status.INVALID_ARGUMENT, 'bad_request', `send metadata ${SUBSCRIBER_KIND_HEADER} (agent|waypoint) and ${SUBSCRIBER_NAME_HEADER}`);
    }
    let principal: Principal;
    try {
      principal = await this.opts.authenticator.authenticate(token, { kind, name });
    } catch (err) {
      this.opts.metrics.authFailures.inc({ service: 'ca' });
      if (err instanceof UnauthenticatedError) throw refuse(grpc.status.UNAUTHENTICATED, 'unauthenticated', err.message);
      if (err instanceof PermissionDeniedError) throw refuse(grpc.status.PERMISSION_DENIED, 'token_claim', err.message);
      throw refuse(grpc.status.UNAVAILABLE, 'auth_unavailable', `cannot check the token now: ${(err as Error).message}`);
    }
    let id;
    try {
      id = parseSpiffeId(req.identity, { trustDomain: this.trustDomain });
    } catch (err) {
      throw refuse(grpc.status.INVALID_ARGUMENT, 'bad_identity', (err as Error).message);
    }
    const denied = this.authorize(principal, id.namespace, id.serviceAccount);
    if (denied !== undefined) throw refuse(grpc.status.PERMISSION_DENIED, denied.reason, denied.message);
    try {
      const signed = await this.opts.signer.sign(req.csrPem, id.uri, req.lifetimeSeconds === 0 ? 24 * 3600 : req.lifetimeSeconds);
      this.opts.metrics.certsSigned.inc({ kind });
      this.log.info({ subscriber: principal, identity: id.uri }, 'signed workload certificate');
      return { chainPem: signed.chainPem, trustBundlePem: signed.trustBundlePem };
    } catch (err) {
      if (err instanceof AmbitError) throw refuse(grpc.status.INVALID_ARGUMENT, 'bad_csr', err.message);
      throw refuse(grpc.status.INTERNAL, 'ca_error', `the CA failed to sign: ${(err as Error).message}`);
    }
  }

  private authorize(p: Principal, namespace: string, sa: string): { reason: string; message: string } | undefined {
    const want = `spiffe://${this.trustDomain}/ns/${namespace}/sa/${sa}`;
    if (p.kind === 'agent') {
      const local = this.opts.table.workloadsOn(p.name);
      if (local.some((e) => e.resource.workload?.namespace === namespace && e.resource.workload.serviceAccount === sa)) return undefined;
      return { reason: 'not_on_node', message: `agent of node '${p.name}' may not obtain ${want}: no pod with that service account is scheduled on node '${p.name}'` };
    }
    const b = this.opts.table.binding(p.name)?.resource.binding;
    if (b === undefined) return { reason: 'unknown_waypoint', message: `waypoint '${p.name}' is not declared (no Gateway with gatewayClassName ambit-waypoint by that name)` };
    const wpNs = p.name.slice(0, p.name.indexOf('/'));
    const ownSa = p.serviceAccount?.name ?? b.serviceAccount;
    if (namespace === wpNs && sa === ownSa && (p.serviceAccount === undefined || p.serviceAccount.namespace === wpNs)) return undefined;
    return { reason: 'not_own_identity', message: `waypoint '${p.name}' may only obtain its own identity spiffe://${this.trustDomain}/ns/${wpNs}/sa/${ownSa}, not ${want}` };
  }
}
