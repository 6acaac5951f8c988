/**
 * A real Prometheus (Debian's /usr/bin/prometheus) for the e2e tests: it runs in the demo
 * cluster's control netns (which routes to every node and pod address) with a private config and
 * a temporary storage directory, listening on that netns's loopback, in the cluster's cgroup so
 * the cluster teardown kills it even if the test process dies. PromQL goes over its HTTP API
 * from inside the same netns. `stop()` kills it and removes its directory; it is safe to call
 * twice and after a failed start.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DemoMesh } from '../../src/demo/mesh.js';
import { spawnIn } from '../../src/demo/cluster.js';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
const LISTEN = '127.0.0.1:9090';

export interface PromVector { metric: Record<string, string>; value: [number, string] }

/** One scrape job: its name and `address:port` targets, each with its own labels. */
export interface ScrapeJob { job: string; targets: { address: string; labels: Record<string, string> }[] }

/** The agents of every node of the mesh, scraped on 15020 with a `node` label. */
export function agentJob(mesh: DemoMesh): ScrapeJob {
  return { job: 'ambit-agent', targets: mesh.cluster.nodes.map((n) => ({ address: `${n.address}:15020`, labels: { node: n.name } })) };
}

export class Prometheus {
  private constructor(
    private readonly mesh: DemoMesh,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts Prometheus scraping `jobs` every second. */
  static start(mesh: DemoMesh, jobs: ScrapeJob[]): Prometheus {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-prometheus-'));
    const scrape = jobs.map((j) => `  - job_name: ${j.job}\n    static_configs:\n${j.targets.map((x) => `      - targets: ['${x.address}']\n        labels: ${JSON.stringify(x.labels)}`).join('\n')}`).join('\n');
    writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\nscrape_configs:\n${scrape}\n`);
    const child = spawnIn({ netns: mesh.cluster.controlNetns, cgroup: mesh.cluster.systemCgroup() }, PROMETHEUS_BIN, [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${LISTEN}`, '--storage.tsdb.retention.time=1h', '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Prometheus(mesh, dir, child);
  }

  /** An instant PromQL query; throws on a query Prometheus rejects. */
  async query(q: string): Promise<PromVector[]> {
    const r = await this.mesh.httpGet(this.mesh.cluster.controlNetns, `http://${LISTEN}/api/v1/query?query=${encodeURIComponent(q)}`);
    if (r.status !== 200) throw new Error(`PromQL ${q}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
    const body = JSON.parse(r.body) as { status: string; data: { resultType: string; result: PromVector[] | [number, string] } };
    // A scalar result (e.g. `vector(0)` folded by a scalar function) is one value, not series.
    return body.data.resultType === 'scalar' ? [{ metric: {}, value: body.data.result as [number, string] }] : body.data.result as PromVector[];
  }

  /** Waits until `q` returns series satisfying `ok`; the last result, or throws after `timeoutMs`. */
  async until(q: string, ok: (v: PromVector[]) => boolean, timeoutMs = 20_000): Promise<PromVector[]> {
    const deadline = Date.now() + timeoutMs;
    let last: PromVector[] = [];
    while (Date.now() < deadline) {
      last = await this.query(q).catch(() => []);
      if (ok(last)) return last;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`${q}: condition not met in ${timeoutMs} ms; last ${JSON.stringify(last)}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await new Promise((r) => { this.child.once('exit', r); setTimeout(r, 3000); });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `{ node: value }` of a result grouped by the `node` label. */
export function byNode(v: PromVector[]): Record<string, number> {
  return Object.fromEntries(v.map((x) => [x.metric['node'] ?? '?', Number(x.value[1])]));
}
