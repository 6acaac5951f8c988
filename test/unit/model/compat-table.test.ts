/**
 * docs/compatibility.md is generated from the schema (src/model/compat-table.ts): this test
 * fails when the file differs from what the generator produces now, so it cannot drift.
 * Regenerate with `npx tsx src/cli/main.ts analyze --compat-table > docs/compatibility.md`.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compatibilityMarkdown } from '../../../src/model/compat-table.js';
import { KINDS, findKind } from '../../../src/model/kinds/all-kinds.js';
import { UNMODELLED_KINDS } from '../../../src/model/kinds/unmodelled.js';

const DOC = fileURLToPath(new URL('../../../docs/compatibility.md', import.meta.url));

test('docs/compatibility.md is what the generator produces from the schema now', (t) => {
  const expected = compatibilityMarkdown().split('\n');
  const actual = readFileSync(DOC, 'utf8').split('\n');
  const i = Math.max(expected.length, actual.length);
  const first = Array.from({ length: i }, (_, k) => k).find((k) => actual[k] !== expected[k]);
  const where = first === undefined ? undefined : `line ${first + 1}: expected ${JSON.stringify(expected[first])}, found ${JSON.stringify(actual[first])}`;
  t.is(where, undefined, 'docs/compatibility.md is out of date; regenerate it with: npx tsx src/cli/main.ts analyze --compat-table > docs/compatibility.md');
});

test('the table covers every kind, with each field status from the schema', (t) => {
  const md = compatibilityMarkdown();
  for (const k of KINDS) t.true(md.includes(`\n## ${k.kind} (`), `section for ${k.kind}`);
  for (const k of UNMODELLED_KINDS) t.true(md.includes(`| ${k.kind} | ${k.group === '' ? 'core' : k.group} |`), `ignored kind ${k.kind}`);
  const row = (field: string): string | undefined => md.split('\n').find((l) => l.startsWith(`| \`${field}\` |`));
  t.regex(row('spec.rules[].from[].source.trustDomains') ?? '', /\| supported \|/);
  t.regex(row('spec.trafficPolicy.connectionPool.http.http2KeepAlive') ?? '', /\| accepted, not applied \| the waypoint sends no HTTP\/2 PINGs/);
  t.regex(row('spec.trafficPolicy.tls.credentialName') ?? '', /\| not implemented \(warning\) \|/);
  t.regex(row('spec.mirror_percent') ?? row('spec.http[].mirror_percent') ?? '', /\| supported, deprecated \| use mirrorPercentage/);
  t.regex(row('spec.{volumes, restartPolicy, terminationGracePeriodSeconds, activeDeadlineSeconds, dnsPolicy, nodeSelector, automountServiceAccountToken, securityContext, imagePullSecrets, hostname, subdomain, affinity, schedulerName, tolerations, hostAliases, priorityClassName, priority, dnsConfig, readinessGates, runtimeClassName, enableServiceLinks, preemptionPolicy, overhead, topologySpreadConstraints, setHostnameAsFQDN, os, hostUsers, schedulingGates, resourceClaims, hostPID, hostIPC, shareProcessNamespace, ephemeralContainers, resources}') ?? '', /\| ignored \|/);
  t.regex(row('spec.action') ?? '', /not implemented: CUSTOM/);
  t.is(row('spec.trafficPolicy.circuitBreaker'), undefined, 'unknown fields are not in the table');
});

test('no kind is both modelled and listed as ignored', (t) => {
  for (const k of UNMODELLED_KINDS) t.is(findKind(k.group, k.kind), undefined, `${k.group}/${k.kind}`);
});
