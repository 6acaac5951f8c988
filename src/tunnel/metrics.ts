/**
 * `ambit_tunnel_*` metrics, registered once per injected prom-client Registry (several pools
 * and servers in one process share them). No per-connection labels: peers and authorities would
 * make the series unbounded; Istio-standard per-workload metrics are the agent's job.
 * `ambit_tls_handshakes_total{group,role}` is the one metric here without the `tunnel` infix: it
 * counts every completed HBONE handshake (agent and waypoint alike, as both build their pools
 * and servers with their registry) by the key-exchange group negotiated, so an operator can see
 * how much of the mesh runs post-quantum.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface TunnelMetrics {
  clientSessions: Gauge;
  clientSessionsOpened: Counter<'result'>;
  clientStreams: Counter<'result'>;
  clientActiveStreams: Gauge;
  clientSetupSeconds: Histogram;
  serverHandshakes: Counter<'result'>;
  serverStreams: Counter<'code'>;
  serverActiveStreams: Gauge;
  serverBytes: Counter<'direction'>;
  tlsHandshakes: Counter<'group' | 'role'>;
}

const byRegistry = new WeakMap<Registry, TunnelMetrics>();

/** The tunnel metrics in `registry`, registering them on first use. */
export function tunnelMetrics(registry: Registry): TunnelMetrics {
  let m = byRegistry.get(registry);
  if (m !== undefined) return m;
  const registers = [registry];
  m = {
    clientSessions: new Gauge({ name: 'ambit_tunnel_client_sessions', help: 'Open HBONE client HTTP/2 sessions', registers }),
    clientSessionsOpened: new Counter({ name: 'ambit_tunnel_client_sessions_opened_total', help: 'HBONE client session attempts by result (ok or error code)', labelNames: ['result'], registers }),
    clientStreams: new Counter({ name: 'ambit_tunnel_client_streams_total', help: 'HBONE CONNECT streams opened by the client, by result (ok or error code)', labelNames: ['result'], registers }),
    clientActiveStreams: new Gauge({ name: 'ambit_tunnel_client_active_streams', help: 'HBONE client streams currently open', registers }),
    clientSetupSeconds: new Histogram({ name: 'ambit_tunnel_client_setup_seconds', help: 'Time from connect() to an answered CONNECT (includes the handshake when a session is opened)', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5], registers }),
    serverHandshakes: new Counter({ name: 'ambit_tunnel_server_handshakes_total', help: 'HBONE server TLS handshakes by result (accepted, or the refusal reason class)', labelNames: ['result'], registers }),
    serverStreams: new Counter({ name: 'ambit_tunnel_server_streams_total', help: 'HBONE CONNECT requests answered by the server, by status code', labelNames: ['code'], registers }),
    serverActiveStreams: new Gauge({ name: 'ambit_tunnel_server_active_streams', help: 'HBONE server streams currently spliced to an upstream', registers }),
    serverBytes: new Counter({ name: 'ambit_tunnel_server_bytes_total', help: 'Bytes spliced by the HBONE server (to_upstream, from_upstream), counted on upstream sockets', labelNames: ['direction'], registers }),
    tlsHandshakes: new Counter({ name: 'ambit_tls_handshakes_total', help: 'Completed HBONE TLS handshakes by negotiated key-exchange group (e.g. X25519MLKEM768, X25519, unknown) and role (client: sessions we opened; server: peers we accepted)', labelNames: ['group', 'role'], registers }),
  };
  byRegistry.set(registry, m);
  return m;
}
