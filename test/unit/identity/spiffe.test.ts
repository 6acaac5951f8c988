import test from 'ava';
import { parseSpiffeId, formatSpiffeId, isSpiffeId, DEFAULT_TRUST_DOMAIN } from '../../../src/identity/spiffe.js';

test('parses a canonical workload identity into its parts', (t) => {
  const id = parseSpiffeId('spiffe://cluster.local/ns/default/sa/web-frontend');
  t.deepEqual({ ...id }, { uri: 'spiffe://cluster.local/ns/default/sa/web-frontend', trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'web-frontend' });
  t.true(Object.isFrozen(id));
});

test('service accounts may be dotted subdomains; trust domains may hold _ and -', (t) => {
  t.is(parseSpiffeId('spiffe://prod_eu-1.example/ns/a1/sa/svc.acct-2').serviceAccount, 'svc.acct-2');
});

test('format builds a valid ID with the default trust domain and round-trips', (t) => {
  const uri = formatSpiffeId({ namespace: 'shop', serviceAccount: 'cart' });
  t.is(uri, `spiffe://${DEFAULT_TRUST_DOMAIN}/ns/shop/sa/cart`);
  t.is(formatSpiffeId(parseSpiffeId(uri)), uri);
  t.throws(() => formatSpiffeId({ namespace: 'Shop', serviceAccount: 'cart' }), { code: 'AMBIT_ERR_IDENTITY_INVALID' });
});

const invalid: Array<[string, unknown, RegExp]> = [
  ['not a string', 42, /must be a string/],
  ['empty', '', /empty/],
  ['upper-case scheme', 'SPIFFE://cluster.local/ns/a/sa/b', /scheme/],
  ['other scheme', 'https://cluster.local/ns/a/sa/b', /scheme/],
  ['no path', 'spiffe://cluster.local', /path is missing/],
  ['empty trust domain', 'spiffe:///ns/a/sa/b', /trust domain is empty/],
  ['port in trust domain', 'spiffe://cluster.local:443/ns/a/sa/b', /trust domain/],
  ['user info', 'spiffe://me@cluster.local/ns/a/sa/b', /trust domain/],
  ['upper-case trust domain', 'spiffe://Cluster.local/ns/a/sa/b', /trust domain/],
  ['trailing slash', 'spiffe://cluster.local/ns/a/sa/b/', /exactly/],
  ['empty segment', 'spiffe://cluster.local/ns//sa/b', /namespace/],
  ['dot segment', 'spiffe://cluster.local/ns/a/sa/..', /service account/],
  ['query', 'spiffe://cluster.local/ns/a/sa/b?x=1', /query/],
  ['fragment', 'spiffe://cluster.local/ns/a/sa/b#f', /fragment/],
  ['percent-encoding', 'spiffe://cluster.local/ns/a%2Fb/sa/b', /percent/],
  ['wrong layout', 'spiffe://cluster.local/sa/b/ns/a', /exactly/],
  ['extra segment', 'spiffe://cluster.local/ns/a/sa/b/c', /exactly/],
  ['upper-case namespace', 'spiffe://cluster.local/ns/Default/sa/b', /namespace/],
  ['namespace too long', `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/b`, /namespace/],
  ['leading dash', 'spiffe://cluster.local/ns/-a/sa/b', /namespace/],
  ['too long', `spiffe://cluster.local/ns/a/sa/${'b'.repeat(2100)}`, /longer than 2048/],
];
for (const [name, input, why] of invalid) {
  test(`rejects ${name}`, (t) => {
    const err = t.throws(() => parseSpiffeId(input), { code: 'AMBIT_ERR_IDENTITY_INVALID' });
    t.regex(err?.message ?? '', why);
    t.false(isSpiffeId(input));
  });
}

test('enforces an expected trust domain when asked', (t) => {
  t.notThrows(() => parseSpiffeId('spiffe://a.example/ns/x/sa/y', { trustDomain: 'a.example' }));
  t.throws(() => parseSpiffeId('spiffe://b.example/ns/x/sa/y', { trustDomain: 'a.example' }), { message: /not the expected "a.example"/ });
});
