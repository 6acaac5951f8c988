/**
 * Output headers: the names the proxy strips from every request (client copies are forged
 * identity), the payload header as Istio writes it, and claim values as Envoy writes them, with
 * values that could split a header line (or turn into CR/LF when written as latin1) left out.
 */
import test from 'ava';
import { authn, bearer, goodToken, rule } from './jwt-fixtures.js';

const outputs = rule({
  outputPayloadToHeader: 'X-Jwt-Payload',
  outputClaimToHeaders: [
    { header: 'X-Sub', claim: 'sub' },
    { header: 'x-count', claim: 'count' },
    { header: 'x-ratio', claim: 'ratio' },
    { header: 'x-admin', claim: 'admin' },
    { header: 'x-team', claim: 'org.team' },
    { header: 'x-groups', claim: 'groups' },
    { header: 'x-evil', claim: 'evil' },
  ],
});

async function headersOf(extra: Record<string, unknown>): Promise<Record<string, string>> {
  const r = await authn(outputs).authenticate(bearer(goodToken(extra)));
  if (r.kind !== 'valid') throw new Error(`expected a valid token, got ${JSON.stringify(r)}`);
  return { ...r.identity.outputHeaders };
}

test('jwt output: outputHeaderNames lists every output header of every rule, lower case', (t) => {
  const a = authn([outputs, { issuer: 'https://b.example', jwks: '{"keys":[]}', outputPayloadToHeader: 'X-B-Payload' }]);
  t.deepEqual([...a.outputHeaderNames].sort(), ['x-admin', 'x-b-payload', 'x-count', 'x-evil', 'x-groups', 'x-jwt-payload', 'x-ratio', 'x-sub', 'x-team']);
  t.is(authn(rule()).outputHeaderNames.size, 0);
});

test('jwt output: outputPayloadToHeader carries the base64url payload of the token', async (t) => {
  const token = goodToken();
  const r = await authn(outputs).authenticate(bearer(token));
  if (r.kind !== 'valid') return t.fail(r.kind);
  t.is(r.identity.outputHeaders['x-jwt-payload'], token.split('.')[1]);
  t.deepEqual(JSON.parse(Buffer.from(r.identity.outputHeaders['x-jwt-payload'] as string, 'base64url').toString()), r.identity.claims);
});

test('jwt output: claims are written as Envoy writes them: strings, integers, decimals, booleans, nested', async (t) => {
  const h = await headersOf({ count: 42, ratio: 1.5, admin: true, org: { team: 'payments' }, groups: ['a', 'b'] });
  t.like(h, { 'x-sub': 'alice', 'x-count': '42', 'x-ratio': '1.500000', 'x-admin': 'true', 'x-team': 'payments' });
  t.false('x-groups' in h, 'lists and objects are not written');
  t.like(await headersOf({ 'org.team': 'flat wins' }), { 'x-team': 'flat wins' });
});

test('jwt output: claim values with CR, LF, NUL or other unsafe characters are omitted', async (t) => {
  for (const evil of ['a\r\nx-injected: 1', 'a\nb', 'nul\0', 'tab\tok?', '\u010d\u010a', 'caf\u00e9', '']) {
    const h = await headersOf({ evil });
    if (evil === 'tab\tok?') t.is(h['x-evil'], evil);
    else t.false('x-evil' in h, JSON.stringify(evil));
    t.is(h['x-sub'], 'alice', 'the other headers are still written');
  }
});

test('jwt output: the token header is removed upstream unless forwardOriginalToken', async (t) => {
  const dropped = await authn(rule()).authenticate(bearer(goodToken()));
  t.like(dropped, { kind: 'valid', identity: { removeHeaders: ['authorization'], source: { header: 'authorization', forward: false } } });
  const kept = await authn(rule({ forwardOriginalToken: true })).authenticate(bearer(goodToken()));
  t.like(kept, { kind: 'valid', identity: { removeHeaders: [], source: { forward: true } } });
});
