/**
 * `ambit status`: is the mesh healthy, from an operator's seat. It asks the control plane's
 * /config_dump (reachability, readiness, config version, source problems, connected agents and
 * waypoints with the version each acked), the TLS port for the control plane's serving
 * certificate, and each agent's admin endpoint (/config_dump: view version, control-plane link,
 * enrolled pods; /certs: workload certificate expiries). Exit 0 when everything answered and is
 * in sync, 1 otherwise (the output says what is wrong), 2 on bad usage.
 */
import { connect } from 'node:tls';
import { agentTargets, controlDump, DEFAULT_CONTROL, parseAgentFlags, peerHost, type ControlDump } from './lib/targets.js';
import { baseUrl, getJson } from './lib/http.js';
import { duration, table } from './lib/format.js';
import { parseOptions } from './lib/options.js';

const HELP = `usage: ambit status [options]

  --control URL             control plane metrics port, serving /config_dump (default ${DEFAULT_CONTROL});
                            in a cluster: kubectl -n ambit-system port-forward deploy/ambit-control 15014
  --control-grpc HOST:PORT  its gRPC TLS port, for the serving certificate (default: same host, 15012)
  --agent NODE=HOST[:PORT]  an agent's admin address (repeatable; default port 15000); overrides the
                            address the control plane reports (agents' admin binds 127.0.0.1 by default:
                            kubectl -n ambit-system port-forward pod/<agent-pod> 15000)
  --admin-port N            agents' admin port when found through the control plane (default 15000)
  --timeout-ms N            per request (default 3000)
  --output text|json        (default text)
`;

interface AgentDump {
  node: string;
  ready: { ready: boolean; reason: string };
  controlPlane: { address: string; connected: boolean };
  view: { epoch: string; version: number; workloads: number; services: number; problems: string[] };
  localPods: { pod: string; captured: boolean; reason?: string }[];
  /** The agent's capture self-check (absent on agents without it). */
  captureCheck?: { pods: { pod: string; healthy: boolean; missing: string[] }[] };
}
interface AgentCert { identity: string; notAfter?: string; expiresInSeconds?: number; state?: string }

export interface StatusReport {
  control: { url: string; reachable: boolean; error?: string; ready?: boolean; version?: number; epoch?: string; source?: string; problems?: number; servingCertificate?: { identity?: string; notAfter: string; expiresInSeconds: number } | { error: string } };
  agents: { node: string; admin: string; reachable: boolean; error?: string; connected?: boolean; ready?: string; viewVersion?: number; ackedVersion?: number; pods?: { enrolled: number; total: number; notCaptured: string[]; captureBroken?: string[] }; certificates?: { identity: string; expiresInSeconds: number | undefined }[]; problems?: string[] }[];
  waypoints: { name: string; peer: string; version: number; acked: number; nacked?: string }[];
  healthy: boolean;
  problems: string[];
}

function servingCert(hostPort: string, timeoutMs: number): Promise<{ identity?: string; notAfter: string; expiresInSeconds: number } | { error: string }> {
  const m = /^(.*):(\d+)$/.exec(hostPort);
  const host = (m?.[1] ?? hostPort).replace(/^\[|\]$/g, '');
  const port = Number(m?.[2] ?? 15012);
  return new Promise((resolve) => {
    // Read-only look at the certificate: nothing is sent, so verification is not needed here.
    const s = connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], timeout: timeoutMs });
    const done = (v: { identity?: string; notAfter: string; expiresInSeconds: number } | { error: string }) => { s.destroy(); resolve(v); };
    s.once('secureConnect', () => {
      const c = s.getPeerCertificate();
      if (c === null || c.valid_to === undefined) { done({ error: 'no certificate presented' }); return; }
      const notAfter = new Date(c.valid_to);
      const uri = /URI:([^,]+)/.exec(c.subjectaltname ?? '')?.[1];
      done({ ...(uri !== undefined ? { identity: uri } : {}), notAfter: notAfter.toISOString(), expiresInSeconds: Math.round((notAfter.getTime() - Date.now()) / 1000) });
    });
    s.once('timeout', () => done({ error: `no TLS answer from ${hostPort} within ${timeoutMs} ms` }));
    s.once('error', (err: NodeJS.ErrnoException) => done({ error: `${hostPort}: ${err.code ?? err.message}` }));
  });
}

export async function collectStatus(o: { control: string; controlGrpc?: string; agents: string[]; adminPort: number; timeoutMs: number }): Promise<StatusReport> {
  const problems: string[] = [];
  const url = baseUrl(o.control, 15014);
  let dump: ControlDump | undefined;
  const report: StatusReport = { control: { url, reachable: false }, agents: [], waypoints: [], healthy: false, problems };
  try {
    dump = await controlDump(url, false, o.timeoutMs);
    const grpc = o.controlGrpc ?? `${new URL(url).hostname}:15012`;
    report.control = {
      url, reachable: true, ready: dump.ready, version: dump.version, epoch: dump.epoch,
      source: `${dump.source.kind} ${dump.source.location}${dump.source.synced ? '' : ' (not synced)'}`,
      problems: dump.lastRejected.length, servingCertificate: await servingCert(grpc, o.timeoutMs),
    };
    if (!dump.ready) problems.push('the control plane is not ready (no valid configuration accepted yet, or draining)');
    if (dump.lastRejected.length > 0) problems.push(`the last configuration change was rejected (${dump.lastRejected[0]?.message ?? ''}); the previous one keeps serving`);
  } catch (err) {
    report.control = { url, reachable: false, error: (err as Error).message };
    problems.push((err as Error).message);
  }
  for (const s of dump?.subscribers ?? []) {
    if (s.kind !== 'waypoint') continue;
    report.waypoints.push({ name: s.name, peer: peerHost(s.peer) ?? s.peer, version: s.version, acked: s.acked, ...(s.nacked ? { nacked: `v${s.nacked.version}: ${s.nacked.error}` } : {}) });
    if (s.nacked) problems.push(`waypoint ${s.name} rejected config version ${s.nacked.version}: ${s.nacked.error}`);
    else if (dump !== undefined && s.acked < s.version) problems.push(`waypoint ${s.name} has not acked version ${s.version} yet`);
  }
  const targets = agentTargets(dump, parseAgentFlags(o.agents), { admin: o.adminPort, metrics: 15020 }, 'admin');
  await Promise.all(targets.map(async (t) => {
    const node = t.node ?? new URL(t.admin).host;
    const entry: StatusReport['agents'][number] = { node, admin: t.admin, reachable: false, ...(t.subscriber !== undefined ? { ackedVersion: t.subscriber.acked } : {}) };
    report.agents.push(entry);
    try {
      const [d, certs] = await Promise.all([
        getJson<AgentDump>(`${t.admin}/config_dump`, `the agent of ${node}`, o.timeoutMs),
        getJson<AgentCert[]>(`${t.admin}/certs`, `the agent of ${node}`, o.timeoutMs),
      ]);
      entry.node = d.node;
      entry.reachable = true;
      entry.connected = d.controlPlane.connected;
      entry.ready = d.ready.ready ? 'ready' : d.ready.reason;
      entry.viewVersion = d.view.version;
      const notCaptured = d.localPods.filter((p) => !p.captured && p.reason !== 'not in the ambient mesh' && p.reason !== 'serves a waypoint').map((p) => `${p.pod}: ${p.reason ?? 'enrolling'}`);
      const captureBroken = (d.captureCheck?.pods ?? []).filter((p) => !p.healthy).map((p) => `${p.pod}: ${p.missing.join('; ')}`);
      entry.pods = { enrolled: d.localPods.filter((p) => p.captured).length, total: d.localPods.length, notCaptured, ...(captureBroken.length > 0 ? { captureBroken } : {}) };
      entry.certificates = certs.map((c) => ({ identity: c.identity, expiresInSeconds: c.expiresInSeconds }));
      entry.problems = d.view.problems;
      if (!d.controlPlane.connected) problems.push(`agent ${d.node} is not connected to the control plane (serving its last good view)`);
      if (!d.ready.ready) problems.push(`agent ${d.node} is not ready: ${d.ready.reason}`);
      if (t.subscriber === undefined && dump !== undefined) problems.push(`agent ${d.node} answers but is not connected to the control plane at ${url}`);
      else if (dump !== undefined && d.view.epoch === dump.epoch && d.view.version < dump.version) problems.push(`agent ${d.node} holds view version ${d.view.version}, the control plane is at ${dump.version}`);
      for (const p of notCaptured) problems.push(`agent ${d.node}: pod ${p}`);
      for (const p of captureBroken) problems.push(`agent ${d.node}: capture of pod ${p}`);
      for (const c of certs) if (c.expiresInSeconds !== undefined && c.expiresInSeconds < 3600) problems.push(`agent ${d.node}: certificate of ${c.identity} expires in ${duration(c.expiresInSeconds)}`);
    } catch (err) {
      entry.error = (err as Error).message;
      problems.push((err as Error).message);
    }
  }));
  report.agents.sort((a, b) => a.node.localeCompare(b.node));
  if (report.control.reachable && report.agents.length === 0) problems.push('no agent is connected to the control plane');
  report.healthy = problems.length === 0;
  return report;
}

export function renderStatus(r: StatusReport, width = 80): string {
  const out: string[] = [];
  const c = r.control;
  if (!c.reachable) {
    out.push(`control plane  ${c.url}  UNREACHABLE: ${c.error ?? ''}`);
  } else {
    const cert = c.servingCertificate;
    const certText = cert === undefined ? '' : 'error' in cert ? `serving cert: ${cert.error}` : `serving cert expires in ${duration(cert.expiresInSeconds)}${cert.identity ? ` (${cert.identity})` : ''}`;
    out.push(`control plane  ${c.url}  ${c.ready ? 'ready' : 'NOT READY'}  config v${c.version}`);
    out.push(`               source: ${c.source}`);
    if (certText !== '') out.push(`               ${certText}`);
  }
  out.push('', `agents (${r.agents.length})`);
  out.push(table([
    { title: 'NODE', flex: true }, { title: 'STATE' }, { title: 'VIEW', right: true }, { title: 'ACKED', right: true }, { title: 'PODS', right: true }, { title: 'CERT EXPIRY' },
  ], r.agents.map((a) => {
    if (!a.reachable) return [a.node, 'UNREACHABLE', '', a.ackedVersion !== undefined ? `v${a.ackedVersion}` : '-', '', ''];
    const exp = (a.certificates ?? []).map((x) => x.expiresInSeconds).filter((x): x is number => x !== undefined);
    return [a.node, `${a.ready}${a.connected ? '' : ', cp lost'}`, `v${a.viewVersion}`, a.ackedVersion !== undefined ? `v${a.ackedVersion}` : '-', `${a.pods?.enrolled}/${a.pods?.total}${a.pods?.captureBroken ? ` (${a.pods.captureBroken.length} broken)` : ''}`, exp.length === 0 ? '-' : `${duration(Math.min(...exp))} (${exp.length})`];
  }), width));
  out.push('', `waypoints (${r.waypoints.length})`);
  if (r.waypoints.length > 0) {
    out.push(table([{ title: 'WAYPOINT', flex: true }, { title: 'PEER' }, { title: 'SENT', right: true }, { title: 'ACKED', right: true }, { title: 'NACK', flex: true }],
      r.waypoints.map((w) => [w.name, w.peer, `v${w.version}`, `v${w.acked}`, w.nacked ?? '']), width));
  }
  out.push('', r.healthy ? 'healthy' : `${r.problems.length} problem(s):`);
  for (const p of r.problems) out.push(`  - ${p}`);
  return out.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOptions('status', HELP, argv, {
        control: { type: 'string' }, 'control-grpc': { type: 'string' }, agent: { type: 'string', multiple: true },
        'admin-port': { type: 'string' }, 'timeout-ms': { type: 'string' }, output: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (parsed === undefined) return 2;
  const { values } = parsed;
  if (values.help) { process.stdout.write(HELP); return 0; }
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') { process.stderr.write('ambit status: --output must be text or json\n'); return 2; }
  const timeoutMs = Number(values['timeout-ms'] ?? 3000);
  const adminPort = Number(values['admin-port'] ?? 15000);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || !Number.isInteger(adminPort) || adminPort <= 0 || adminPort > 65535) { process.stderr.write('ambit status: --timeout-ms and --admin-port must be positive integers\n'); return 2; }
  const r = await collectStatus({
    control: values.control ?? DEFAULT_CONTROL, agents: values.agent ?? [], adminPort, timeoutMs,
    ...(values['control-grpc'] !== undefined ? { controlGrpc: values['control-grpc'] } : {}),
  });
  process.stdout.write(output === 'json' ? JSON.stringify(r, null, 2) + '\n' : renderStatus(r, process.stdout.columns ?? 80) + '\n');
  return r.healthy ? 0 : 1;
}
