/**
 * The waypoint's HTTP/1.1 codec never accepts a message that node:http's strict llhttp parser
 * rejects, nor frames one differently (request smuggling, response splitting): requests through
 * H1Server vs http.createServer, responses through H1Pool vs http.request, both over loopback
 * sockets, every input split into the same reads on both sides. Inputs are valid messages built
 * from parts and then mutated (fast-check, fixed seed), plus the security review's findings as
 * named cases. Refusing what node accepts is allowed and only logged; a connection the waypoint
 * keeps open after its peer closed while node's closed (a stalled parser) fails. The generators, runners
 * and the comparison rules are in h1-differential-cases.ts; `npm run bench -- fuzz-h1` runs the
 * same properties with any seed and many more cases.
 */
import test from 'ava';
import fc from 'fast-check';
import {
  REQUEST_REGRESSIONS, RESPONSE_REGRESSIONS, RequestDifferential, ResponseDifferential, Tally,
  compare, differentialProperty, explain, requestCases, responseCases, type NamedCase, type Pair, type WireCase,
} from './h1-differential-cases.js';

const SEED = 20261203;
/** Sized for well under a minute on 2 cores (a request case takes ~10 ms, a response ~2 ms). */
const REQUEST_RUNS = 500;
const RESPONSE_RUNS = 1_000;

async function table(t: import('ava').ExecutionContext, cases: readonly NamedCase[], run: (c: WireCase) => Promise<Pair>): Promise<void> {
  const failed: string[] = [];
  const stricter: string[] = [];
  const hangs: string[] = [];
  for (const c of cases) {
    const p = await run(c);
    const v = compare(p);
    if (v.kind === 'fail') failed.push(`[${c.name}] ${explain(c, p, v)}`);
    else if (v.kind === 'stricter') stricter.push(`${c.name}: ${v.reasons[0] ?? ''}`);
    if (p.waypoint.timedOut && !p.node.timedOut) hangs.push(c.name);
  }
  if (stricter.length > 0) t.log(`stricter than node (allowed):\n  ${stricter.join('\n  ')}`);
  t.deepEqual(failed.map((f) => f.slice(1, f.indexOf(']'))), [], `differentials:\n${failed.join('\n')}`);
  t.deepEqual(hangs, [], "the waypoint's connection stayed open after the peer closed (node's closed)");
}

test('requests: known regression inputs frame as llhttp frames them', async (t) => {
  const diff = await RequestDifferential.start();
  t.teardown(() => diff.close());
  await table(t, REQUEST_REGRESSIONS, (c) => diff.run(c));
});

test('responses: known regression inputs frame as llhttp frames them', async (t) => {
  const diff = await ResponseDifferential.start();
  t.teardown(() => diff.close());
  await table(t, RESPONSE_REGRESSIONS, (c) => diff.run(c));
});

test('requests: generated and mutated streams, split at random reads, agree with llhttp', async (t) => {
  const diff = await RequestDifferential.start();
  t.teardown(() => diff.close());
  const tally = new Tally();
  try {
    await fc.assert(differentialProperty(requestCases(), diff, tally), { seed: SEED, numRuns: REQUEST_RUNS, includeErrorInReport: true });
  } finally {
    t.log(tally.summary(`requests (seed ${SEED})`));
  }
  t.is(tally.hangs.length, 0, "the waypoint's connection stayed open after the peer closed (node's closed)");
});

test('responses: generated and mutated streams, split at random reads, agree with llhttp', async (t) => {
  const diff = await ResponseDifferential.start();
  t.teardown(() => diff.close());
  const tally = new Tally();
  try {
    await fc.assert(differentialProperty(responseCases(), diff, tally), { seed: SEED, numRuns: RESPONSE_RUNS, includeErrorInReport: true });
  } finally {
    t.log(tally.summary(`responses (seed ${SEED})`));
  }
  t.is(tally.hangs.length, 0, "the waypoint's connection stayed open after the peer closed (node's closed)");
});
