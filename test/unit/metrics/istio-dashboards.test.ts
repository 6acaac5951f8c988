/**
 * Istio's Grafana dashboards (test/e2e/istio-dashboards/) against ambit's metric registries,
 * without a mesh: every metric a supported panel query selects is registered by the agent or the
 * waypoint, and every label it matches on or groups by is one of that metric's labels. The e2e
 * test (test/e2e/istio-dashboards.test.ts) proves the same queries return data from a live mesh;
 * this one names the missing label at once, and runs everywhere.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { REPO_ROOT } from '../../../src/demo/mesh.js';
import { TCP_LABELS, createAgentMetrics } from '../../../src/agent/metrics.js';
import { ISTIO_REQUEST_LABELS, waypointMetrics } from '../../../src/waypoint/metrics.js';
import { GrafanaDashboard, type DashboardQuery } from '../../helpers/grafana-dashboard.js';

const DIR = join(REPO_ROOT, 'test', 'e2e', 'istio-dashboards');
const dashboards = ['istio-mesh-dashboard.gen.json', 'istio-service-dashboard.json', 'istio-workload-dashboard.json'].map((f) => new GrafanaDashboard(f, join(DIR, f)));
const unsupported = JSON.parse(readFileSync(join(DIR, 'unsupported.json'), 'utf8')) as DashboardQuery[];
const key = (q: DashboardQuery) => `${q.dashboard}\u0000${q.panel}\u0000${q.expr}`;
const listed = new Set(unsupported.map(key));

/** Metric name (histograms without their `_bucket`/`_sum`/`_count` suffix) -> its labels. */
async function exported(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  const agent = new Registry();
  createAgentMetrics(agent, { processMetrics: false });
  for (const m of await agent.getMetricsAsJSON()) if (m.name.startsWith('istio_')) out.set(m.name, new Set(TCP_LABELS));
  const waypoint = new Registry();
  waypointMetrics(waypoint);
  for (const m of await waypoint.getMetricsAsJSON()) if (m.name.startsWith('istio_')) out.set(m.name, new Set([...ISTIO_REQUEST_LABELS, ...(String(m.type) === 'histogram' ? ['le'] : [])]));
  return out;
}

const base = (name: string) => name.replace(/_(bucket|sum|count)$/, '');

test('each supported panel query selects metrics ambit exports, by labels those metrics carry', async (t) => {
  const metrics = await exported();
  t.true(metrics.has('istio_requests_total') && metrics.has('istio_tcp_sent_bytes_total') && metrics.has('istio_request_bytes'));
  const queries = dashboards.flatMap((d) => d.queries).filter((q) => !listed.has(key(q)));
  t.true(queries.length > 20, `${queries.length} supported queries`);
  for (const q of queries) {
    const where = `${q.dashboard} "${q.panel}": ${q.expr}`;
    // Selectors: metric{label op "value", ...}. A name ambit does not export must be an `or`
    // alternative of one it does (Istio's `istio_request_duration_seconds` fallback).
    const selectors = [...q.expr.matchAll(/\b(istio_[a-z_]+)\s*(?:\{([^}]*)\})?/g)].map((m) => ({ name: base(m[1] as string), matchers: m[2] ?? '' }));
    const known = selectors.filter((s) => metrics.has(s.name));
    t.true(known.length > 0, `${where}: selects a metric ambit exports`);
    for (const s of selectors.filter((x) => !metrics.has(x.name))) t.true(q.expr.includes(' or '), `${where}: ${s.name} is only an alternative`);
    for (const s of known) {
      const labels = metrics.get(s.name) as Set<string>;
      for (const m of s.matchers.matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) t.true(labels.has(m[1] as string), `${where}: ${s.name} has label ${m[1]}`);
    }
    // Grouping: by (a, b) names labels of the metrics the query aggregates.
    const grouped = new Set(known.flatMap((s) => [...(metrics.get(s.name) as Set<string>)]));
    for (const g of q.expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
      for (const l of (g[1] as string).split(',').map((x) => x.trim()).filter((x) => x !== '')) t.true(grouped.has(l), `${where}: grouped by ${l}, a label of ${known.map((s) => s.name).join(', ')}`);
    }
  }
});

test('the variables of the service and workload dashboards query labels ambit\'s metrics carry', async (t) => {
  const metrics = await exported();
  for (const d of dashboards) {
    for (const v of d.variables) {
      const q = typeof v.query === 'string' ? v.query : v.query?.query ?? '';
      for (const s of q.matchAll(/\b(istio_[a-z_]+)\s*(?:\{([^}]*)\})?\s*\)\s*by\s*\(([^)]*)\)/g)) {
        const labels = metrics.get(base(s[1] as string));
        t.truthy(labels, `${d.file} $${v.name}: ${s[1]} is exported`);
        for (const m of [...(s[2] ?? '').matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1] as string).concat((s[3] as string).split(',').map((x) => x.trim()))) {
          t.true(labels?.has(m) === true, `${d.file} $${v.name}: ${s[1]} has label ${m}`);
        }
      }
    }
  }
});
