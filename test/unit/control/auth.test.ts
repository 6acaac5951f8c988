import test from 'ava';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { TokenFileAuthenticator, TokenReviewAuthenticator, parseTokenFile, type TokenReviewer } from '../../../src/control/auth.js';

function tokenFile(t: import('ava').ExecutionContext, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'tokens');
  writeFileSync(f, text);
  return f;
}

test('token file: shared and bound tokens, rotation on rewrite, bad lines named', async (t) => {
  const f = tokenFile(t, '# comment\nshared\nbound agent node-a\nwp waypoint shop/wp\n');
  const a = new TokenFileAuthenticator(f);
  t.like(await a.authenticate('shared', { kind: 'agent', name: 'anything' }), { kind: 'agent', name: 'anything' });
  t.like(await a.authenticate('bound', { kind: 'agent', name: 'node-a' }), { name: 'node-a' });
  await t.throwsAsync(a.authenticate('bound', { kind: 'agent', name: 'node-b' }), { code: 'AMBIT_ERR_PERMISSION_DENIED' });
  await t.throwsAsync(a.authenticate('wp', { kind: 'agent', name: 'shop/wp' }), { code: 'AMBIT_ERR_PERMISSION_DENIED' });
  await t.throwsAsync(a.authenticate('nope', { kind: 'agent', name: 'x' }), { code: 'AMBIT_ERR_UNAUTHENTICATED' });
  await t.throwsAsync(a.authenticate('', { kind: 'agent', name: 'x' }), { code: 'AMBIT_ERR_UNAUTHENTICATED' });
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(f, 'rotated\n');
  await t.throwsAsync(a.authenticate('shared', { kind: 'agent', name: 'x' }), { code: 'AMBIT_ERR_UNAUTHENTICATED' });
  t.truthy(await a.authenticate('rotated', { kind: 'agent', name: 'x' }));
  t.throws(() => parseTokenFile('tok agent\n', 'f'), { message: /f:1: expected/ });
  t.throws(() => parseTokenFile('# nothing\n', 'f'), { message: /no tokens/ });
  t.throws(() => new TokenFileAuthenticator('/nonexistent/tokens'), { code: 'AMBIT_ERR_CONTROL_CONFIG' });
});

test('TokenReview: agents must be the agent service account bound to the node they claim; waypoints stay in their namespace', async (t) => {
  const reviews: Record<string, { username: string; extra?: Record<string, string[]> }> = {
    agent: { username: 'system:serviceaccount:ambit-system:ambit-agent', extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } },
    unbound: { username: 'system:serviceaccount:ambit-system:ambit-agent' },
    app: { username: 'system:serviceaccount:shop:web' },
    user: { username: 'alice' },
  };
  let calls = 0;
  const reviewer: TokenReviewer = {
    review: async (token) => { calls++; const r = reviews[token]; return r ? { authenticated: true, ...r } : { authenticated: false, error: 'invalid' }; },
  };
  const a = new TokenReviewAuthenticator({ reviewer });
  t.like(await a.authenticate('agent', { kind: 'agent', name: 'node-a' }), { kind: 'agent', name: 'node-a' });
  await a.authenticate('agent', { kind: 'agent', name: 'node-a' });
  t.is(calls, 1, 'accepted reviews are cached');
  await t.throwsAsync(a.authenticate('agent', { kind: 'agent', name: 'node-b' }), { message: /bound to node 'node-a'/ });
  await t.throwsAsync(a.authenticate('unbound', { kind: 'agent', name: 'node-a' }), { message: /no node binding/ });
  await t.throwsAsync(a.authenticate('app', { kind: 'agent', name: 'node-a' }), { message: /not an agent service account/ });
  await t.throwsAsync(a.authenticate('user', { kind: 'agent', name: 'node-a' }), { code: 'AMBIT_ERR_UNAUTHENTICATED' });
  await t.throwsAsync(a.authenticate('forged', { kind: 'agent', name: 'node-a' }), { code: 'AMBIT_ERR_UNAUTHENTICATED' });
  t.like(await a.authenticate('app', { kind: 'waypoint', name: 'shop/wp' }), { serviceAccount: { namespace: 'shop', name: 'web' } });
  await t.throwsAsync(a.authenticate('app', { kind: 'waypoint', name: 'other/wp' }), { code: 'AMBIT_ERR_PERMISSION_DENIED' });
});
