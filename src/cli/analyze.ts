/**
 * `ambit analyze PATH...`: validates mesh YAML before anything runs and prints every problem as
 * `file:line:col severity code message`, sorted by file and line, then a summary line.
 *
 * Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 unreadable input or bad usage
 * (missing path, permission denied, unknown option).
 */
import { analyzePaths } from '../model/analyze.js';
import { DIAGNOSTIC_CODES, type Diagnostic } from '../model/diagnostics.js';
import { AmbitError } from '../util/errors.js';
import { DEFAULT_MAX_FILE_BYTES } from '../model/load/load-paths.js';
import { compatibilityMarkdown } from '../model/compat-table.js';
import type { RouteStatus } from '../model/compile/route-status.js';

/** One line per route parent with a False condition: `status Kind ns/name parent ...: Type=False Reason: message`. */
export function routeStatusLines(statuses: readonly RouteStatus[]): string[] {
  const out: string[] = [];
  for (const s of statuses) {
    for (const p of s.parents) {
      const bad = p.conditions.filter((c) => c.status === 'False');
      if (bad.length === 0) continue;
      const parent = `${p.parentRef.kind ?? 'Gateway'} ${p.parentRef.namespace ?? s.route.namespace}/${p.parentRef.name}${p.parentRef.port !== undefined ? `:${p.parentRef.port}` : ''}`;
      out.push(`status ${s.route.kind} ${s.route.namespace}/${s.route.name} parent ${parent}: ${bad.map((c) => `${c.type}=False ${c.reason}: ${c.message}`).join('; ')}`);
    }
  }
  return out;
}

const HELP = `usage: ambit analyze PATH... [options]

Validates Kubernetes, Istio and Gateway API resources (files or folders of *.yaml, *.yml,
*.json) and reports every problem with file:line:col, severity, code and field path.
Gateway API routes get the status conditions ambit computes for each parentRef (Accepted,
ResolvedRefs): every route in --output json (routeStatus), those with a False condition in text.

options:
  --output text|json     output format (default text)
  --trust-domain D       SPIFFE trust domain of workload identities (default cluster.local)
  --cluster-domain D     cluster DNS domain of Service hostnames (default cluster.local)
  --root-namespace NS    namespace whose policies apply mesh-wide (default istio-system)
  --max-file-bytes N     refuse files larger than N bytes (default ${DEFAULT_MAX_FILE_BYTES})
  --allow-unknown-fields report fields the API does not define as warnings and ignore them
                         (default: an error that refuses the resource, as Istio does)
  --codes                list every diagnostic code with its severity and meaning
  --compat-table         print the compatibility table (docs/compatibility.md) generated
                         from the schema: every kind and field, and what ambit does with it
  -h, --help             show this help

exit status: 0 no errors (warnings allowed), 1 errors found, 2 unreadable input or bad usage
`;

interface Args {
  paths: string[];
  output: 'text' | 'json';
  trustDomain?: string;
  clusterDomain?: string;
  rootNamespace?: string;
  maxFileBytes?: number;
  allowUnknownFields: boolean;
  codes: boolean;
  compatTable: boolean;
  help: boolean;
}

class UsageError extends AmbitError {
  constructor(message: string) {
    super('AMBIT_ERR_CLI_USAGE', message);
  }
}

function parseArgs(argv: string[]): Args {
  const args: Args = { paths: [], output: 'text', allowUnknownFields: false, codes: false, compatTable: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        args.help = true;
        break;
      case '--codes':
        args.codes = true;
        break;
      case '--compat-table':
        args.compatTable = true;
        break;
      case '--allow-unknown-fields':
        args.allowUnknownFields = true;
        break;
      case '--output':
      case '-o': {
        const v = value();
        if (v !== 'text' && v !== 'json') throw new UsageError(`--output must be text or json, not ${JSON.stringify(v)}`);
        args.output = v;
        break;
      }
      case '--trust-domain':
        args.trustDomain = value();
        break;
      case '--cluster-domain':
        args.clusterDomain = value();
        break;
      case '--root-namespace':
        args.rootNamespace = value();
        break;
      case '--max-file-bytes': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`--max-file-bytes must be a positive integer, not ${JSON.stringify(v)}`);
        args.maxFileBytes = Number(v);
        break;
      }
      default:
        if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
        args.paths.push(a);
    }
  }
  return args;
}

function formatText(d: Diagnostic): string {
  const where = d.file !== undefined ? `${d.file}:${d.line ?? 1}:${d.column ?? 1} ` : '';
  const path = d.path !== undefined ? ` (at ${d.path})` : '';
  return `${where}${d.severity} ${d.code} ${d.message}${path}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export async function run(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`ambit analyze: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.codes) {
    for (const [code, info] of Object.entries(DIAGNOSTIC_CODES)) process.stdout.write(`${code.padEnd(42)} ${info.severity.padEnd(8)} ${info.summary}\n`);
    return 0;
  }
  if (args.compatTable) {
    process.stdout.write(compatibilityMarkdown());
    return 0;
  }
  if (args.paths.length === 0) {
    process.stderr.write(`ambit analyze: no PATH given\n\n${HELP}`);
    return 2;
  }
  let result;
  try {
    result = await analyzePaths(args.paths, {
      ...(args.trustDomain !== undefined ? { trustDomain: args.trustDomain } : {}),
      ...(args.clusterDomain !== undefined ? { clusterDomain: args.clusterDomain } : {}),
      ...(args.rootNamespace !== undefined ? { rootNamespace: args.rootNamespace } : {}),
      ...(args.maxFileBytes !== undefined ? { maxFileBytes: args.maxFileBytes } : {}),
      allowUnknownFields: args.allowUnknownFields,
    });
  } catch (err) {
    if (err instanceof AmbitError && err.code === 'AMBIT_ERR_MODEL_INPUT_UNREADABLE') {
      process.stderr.write(`ambit analyze: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { diagnostics, counts, files } = result;
  const routeStatus = result.snapshot.routeStatuses();
  if (args.output === 'json') {
    process.stdout.write(JSON.stringify({ diagnostics, routeStatus, summary: { ...counts, files: files.length } }, null, 2) + '\n');
  } else {
    for (const d of diagnostics) process.stdout.write(formatText(d) + '\n');
    for (const line of routeStatusLines(routeStatus)) process.stdout.write(line + '\n');
    process.stdout.write(
      `${plural(counts.error, 'error')}, ${plural(counts.warning, 'warning')}, ${plural(counts.info, 'info')} in ${plural(files.length, 'file')} (${plural(counts.resources, 'resource')})\n`,
    );
  }
  return counts.error > 0 ? 1 : 0;
}
