/**
 * How a subscriber reaches the control plane: TLS (port 15012) verified against the mesh root and
 * the control plane's SPIFFE ID, or plaintext (port 15010) for local development on loopback.
 * With TLS the server is identified by the URI SAN of its certificate, not by host name, like
 * every other mesh peer; a certificate from the right root naming another identity is refused.
 * The TLS link offers the same key-exchange groups as HBONE (X25519MLKEM768 first, then X25519,
 * unless configured otherwise): grpc-js's createSsl takes no TLS options, so the secure context
 * is built here and handed over with createFromSecureContext.
 */
import * as grpc from '@grpc/grpc-js';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { DiscoveryConfigError } from './errors.js';
import { ecdhCurve } from '../tunnel/tls-groups.js';

export interface ControlPlaneTarget {
  /** `host:port` of the control plane (required). */
  address: string;
  /** PEM roots that sign the control plane's certificate; omit for plaintext (loopback only). */
  trustBundlePem?: string | string[];
  /** SPIFFE ID the control plane must present (default spiffe://cluster.local/ns/ambit-system/sa/ambit-control). */
  expectedIdentity?: string;
  /** TLS key-exchange groups offered, in order, as parseTlsGroups returns them (default X25519MLKEM768, X25519). */
  tlsGroups?: readonly string[];
}

export const DEFAULT_CONTROL_IDENTITY = 'spiffe://cluster.local/ns/ambit-system/sa/ambit-control';

export function channelCredentials(t: ControlPlaneTarget): grpc.ChannelCredentials {
  if (t.trustBundlePem === undefined) {
    const host = t.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (!/^(127\.|localhost$|::1$)/.test(host)) {
      throw new DiscoveryConfigError(`plaintext to ${t.address} refused: plaintext is for loopback only; pass the mesh trust bundle to use TLS`);
    }
    return grpc.credentials.createInsecure();
  }
  const roots = Array.isArray(t.trustBundlePem) ? t.trustBundlePem.join('') : t.trustBundlePem;
  const expected = t.expectedIdentity ?? DEFAULT_CONTROL_IDENTITY;
  const context = createSecureContext({ ca: roots, ecdhCurve: ecdhCurve(t.tlsGroups), ...(process.env['GRPC_SSL_CIPHER_SUITES'] ? { ciphers: process.env['GRPC_SSL_CIPHER_SUITES'] } : {}) });
  return grpc.credentials.createFromSecureContext(context, {
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
      const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
      if (uris.includes(expected)) return undefined;
      return new Error(`control plane presented ${uris.length ? uris.join(', ') : 'no SPIFFE ID'}, expected ${expected}`);
    },
  });
}

/** Channel options shared by discovery and CA clients. */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.max_receive_message_length': -1,
  // The server is verified by SPIFFE ID, not name; a fixed SNI avoids sending an IP as server name.
  'grpc.ssl_target_name_override': 'ambit-control',
  // We reconnect ourselves with jittered backoff; keep grpc's own quick to retry under us.
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 5_000,
};
