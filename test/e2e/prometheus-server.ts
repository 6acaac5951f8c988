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
import { execIn, spawnIn } from '../../src/demo/cluster.js';

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
    return resultOf(r.body);
  }

  /**
   * Many instant queries, in order, from one process in the control netns (a process per query
   * costs more than the query); a query Prometheus rejects comes back as an Error.
   */
  async queryAll(qs: string[]): Promise<(PromVector[] | Error)[]> {
    if (qs.length === 0) return [];
    const script = "const urls=JSON.parse(require('fs').readFileSync(0,'utf8'));(async()=>{const out=[];for(const u of urls){try{const r=await fetch(u,{signal:AbortSignal.timeout(10000)});out.push({status:r.status,body:await r.text()})}catch(e){out.push({status:0,body:String(e)})}}process.stdout.write(JSON.stringify(out))})()";
    const urls = qs.map((q) => `http://${LISTEN}/api/v1/query?query=${encodeURIComponent(q)}`);
    const r = await execIn({ netns: this.mesh.cluster.controlNetns }, process.execPath, ['-e', script], { input: JSON.stringify(urls), timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`PromQL batch of ${qs.length}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
    const answers = JSON.parse(r.stdout) as { status: number; body: string }[];
    return answers.map((a, i) => a.status === 200 ? resultOf(a.body) : new Error(`PromQL ${qs[i]}: HTTP ${a.status} ${a.body.slice(0, 300)}`));
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

/** The series of a query answer (a scalar answer is one value without labels). */
function resultOf(text: string): PromVector[] {
  const body = JSON.parse(text) as { data: { resultType: string; result: PromVector[] | [number, string] } };
  return body.data.resultType === 'scalar' ? [{ metric: {}, value: body.data.result as [number, string] }] : body.data.result as PromVector[];
}

/** `{ node: value }` of a result grouped by the `node` label. */
export function byNode(v: PromVector[]): Record<string, number> {
  return Object.fromEntries(v.map((x) => [x.metric['node'] ?? '?', Number(x.value[1])]));
}
