/**
 * deploy/prometheus and deploy/grafana: the scrape configuration passes `promtool check config`
 * (Debian's Prometheus is built without Kubernetes service discovery, so the check runs on a copy
 * whose kubernetes_sd_configs are swapped for file_sd_configs; relabelling, jobs and everything
 * else are checked as written), and every metric the dashboard queries is one the agent really
 * exports (read from the agent's own metrics registry), grouped by the `node` label the scrape
 * configuration adds.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { Registry } from 'prom-client';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { createAgentMetrics } from '../../../src/agent/metrics.js';
import { requirePrivileged } from '../../helpers/privileged.js';

const execFileP = promisify(execFile);
const PROM = join(REPO_ROOT, 'deploy', 'prometheus', 'prometheus.yml');
const DASH = join(REPO_ROOT, 'deploy', 'grafana', 'ambit-nodes.json');

interface ScrapeConfig { job_name: string; kubernetes_sd_configs?: unknown[]; file_sd_configs?: unknown[]; relabel_configs: { source_labels?: string[]; target_label?: string; action?: string; regex?: string }[] }

test('the scrape configuration has a job per component, each adding the node label', (t) => {
  const cfg = parse(readFileSync(PROM, 'utf8')) as { scrape_configs: ScrapeConfig[] };
  t.deepEqual(cfg.scrape_configs.map((s) => s.job_name).sort(), ['ambit-agent', 'ambit-control', 'ambit-waypoint']);
  for (const s of cfg.scrape_configs) {
    t.true(s.relabel_configs.some((r) => r.target_label === 'node' && r.source_labels?.[0] === '__meta_kubernetes_pod_node_name'), `${s.job_name} labels series with node`);
  }
  const agent = cfg.scrape_configs.find((s) => s.job_name === 'ambit-agent');
  t.true(agent?.relabel_configs.some((r) => r.action === 'keep' && r.regex === '15020'), 'agents are scraped on 15020');
});

// promtool comes with Debian's prometheus package, which scripts/setup.sh installs: without it
// the check is skipped with the reason in its title (a failure under AMBIT_REQUIRE_PRIVILEGED=1).
const PROMTOOL_GAP = existsSync('/usr/bin/promtool') ? undefined : 'needs /usr/bin/promtool (Debian package prometheus, installed by scripts/setup.sh)';
function promtoolTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  if (PROMTOOL_GAP === undefined) test(title, fn);
  else if (requirePrivileged) test(title, (t) => t.fail(`AMBIT_REQUIRE_PRIVILEGED=1 but ${PROMTOOL_GAP}`));
  else test.skip(`${title} [${PROMTOOL_GAP}]`, () => {});
}

promtoolTest('promtool check config passes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-prom-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = parse(readFileSync(PROM, 'utf8')) as { scrape_configs: ScrapeConfig[] };
  writeFileSync(join(dir, 'targets.json'), '[]');
  for (const s of cfg.scrape_configs) {
    if (s.kubernetes_sd_configs === undefined) continue;
    delete s.kubernetes_sd_configs;
    s.file_sd_configs = [{ files: [join(dir, 'targets.json')] }];
  }
  writeFileSync(join(dir, 'prometheus.yml'), stringify(cfg));
  const r = await execFileP('/usr/bin/promtool', ['check', 'config', join(dir, 'prometheus.yml')]).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: `FAILED ${e.stderr ?? ''}` }));
  t.false(r.stderr.includes('FAILED'), `${r.stdout}${r.stderr}`);
  t.regex(r.stdout, /SUCCESS/);
});

test('the Grafana dashboard is valid JSON whose queries use only metrics the agent exports, per node', async (t) => {
  const dash = JSON.parse(readFileSync(DASH, 'utf8')) as { uid: string; panels: { type: string; title: string; targets?: { expr: string }[]; gridPos: { w: number } }[]; templating: { list: { name: string }[] } };
  t.is(dash.uid, 'ambit-nodes');
  t.true(dash.templating.list.some((v) => v.name === 'node'));
  const registry = new Registry();
  createAgentMetrics(registry);
  const exported = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
  const exprs = dash.panels.flatMap((p) => p.targets?.map((x) => ({ title: p.title, expr: x.expr })) ?? []);
  t.true(exprs.length >= 10);
  for (const { title, expr } of exprs) {
    const names = [...expr.matchAll(/\b((?:istio|ambit)_[a-z_]+)\b/g)].map((m) => m[1] as string);
    t.true(names.length > 0, `${title}: queries a metric`);
    for (const n of names) t.true(exported.has(n), `${title}: ${n} is exported by the agent`);
    t.true(expr.includes('node'), `${title}: per node`);
  }
  for (const p of dash.panels) t.true(p.gridPos.w <= 24);
  for (const needed of ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total', 'ambit_agent_denials_total', 'istio_tcp_connections_opened_total']) {
    t.true(exprs.some((e) => e.expr.includes(needed)), `dashboard shows ${needed}`);
  }
});
