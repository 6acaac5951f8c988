/**
 * Helpers for the model tests: parse YAML text the way loadPaths does (with positions, file name
 * "test.yaml"), compile it, and temporary folders that are removed after each test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { compile } from '../../../src/model/compile/compile.js';
import type { CompileOptions } from '../../../src/model/compile/options.js';
import type { Snapshot } from '../../../src/model/compile/snapshot.js';
import type { Diagnostic } from '../../../src/model/diagnostics.js';
import { dropDuplicates } from '../../../src/model/load/load-paths.js';
import { parseObject } from '../../../src/model/load/parse-object.js';
import { parseYamlText } from '../../../src/model/load/yaml-text.js';
import type { Resource } from '../../../src/model/resource.js';

export interface Parsed {
  resources: Resource[];
  diagnostics: Diagnostic[];
}

export function parseYaml(text: string, file = 'test.yaml'): Parsed {
  const y = parseYamlText(text, file);
  const diagnostics = [...y.diagnostics];
  const all: Resource[] = [];
  for (const o of y.objects) {
    const r = parseObject(o.value, { origin: o.origin });
    diagnostics.push(...r.diagnostics);
    if (r.resource !== undefined) all.push(r.resource);
  }
  return { resources: dropDuplicates(all, diagnostics), diagnostics };
}

/** Parses, requires no load errors, compiles. */
export function compileYaml(t: ExecutionContext, text: string, opts?: CompileOptions): Snapshot {
  const p = parseYaml(text);
  const errors = p.diagnostics.filter((d) => d.severity === 'error');
  t.deepEqual(errors.map((d) => `${d.code} ${d.message}`), [], 'fixture YAML must load without errors');
  return compile(p.resources, opts);
}

/** Every diagnostic (load + cross-reference) of YAML text. */
export function analyzeYaml(text: string, opts?: CompileOptions): Diagnostic[] {
  const p = parseYaml(text);
  return [...p.diagnostics, ...compile(p.resources, opts).diagnostics()];
}

export function codes(ds: readonly Diagnostic[]): string[] {
  return ds.map((d) => d.code);
}

/** A temporary folder removed when the test ends (pass or fail). */
export function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-model-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** YAML for a namespace, pods and a Service, the common ground of many tests. */
export function ns(name: string, labels: Record<string, string> = {}): string {
  return `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels: ${JSON.stringify(labels)}\n---\n`;
}

export function node(name: string, address: string): string {
  return `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${name}\nstatus:\n  addresses: [{type: InternalIP, address: ${address}}]\n---\n`;
}

export function pod(namespace: string, name: string, ip: string, labels: Record<string, string>, extra: { node?: string; sa?: string; ports?: Record<string, number>; phase?: string } = {}): string {
  const ports = Object.entries(extra.ports ?? { http: 8080 }).map(([n, p]) => `{name: ${n}, containerPort: ${p}}`).join(', ');
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${namespace}
  labels: ${JSON.stringify(labels)}
spec:
  nodeName: ${extra.node ?? 'node-1'}
${extra.sa !== undefined ? `  serviceAccountName: ${extra.sa}\n` : ''}  containers:
    - name: app
      ports: [${ports}]
status:
  phase: ${extra.phase ?? 'Running'}
  podIP: ${ip}
---
`;
}

export function service(namespace: string, name: string, vip: string, selector: Record<string, string>, ports = '[{name: http, port: 80, targetPort: http}]', labels: Record<string, string> = {}): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${namespace}
  labels: ${JSON.stringify(labels)}
spec:
  clusterIP: ${vip}
  selector: ${JSON.stringify(selector)}
  ports: ${ports}
---
`;
}
