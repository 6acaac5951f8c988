import test from 'ava';
import { parseAuthority, formatAuthority } from '../../../src/tunnel/authority.js';
import { formatForwarded, parseForwardedFor, newTraceparent, isTraceparent } from '../../../src/tunnel/headers.js';

test('authorities: IPv4 and bracketed IPv6 parse and format symmetrically', (t) => {
  t.deepEqual(parseAuthority('198.19.1.5:8080'), { host: '198.19.1.5', port: 8080, family: 4 });
  t.deepEqual(parseAuthority('[2001:db8::1]:443'), { host: '2001:db8::1', port: 443, family: 6 });
  t.is(formatAuthority('2001:db8::1', 443), '[2001:db8::1]:443');
  t.is(formatAuthority('198.19.1.5', 80), '198.19.1.5:80');
});

test('authorities: host names, missing or bad ports, unbracketed IPv6 and zones are refused', (t) => {
  for (const bad of ['', 'svc.cluster.local:80', '198.19.1.5', '198.19.1.5:', '198.19.1.5:0', '198.19.1.5:65536', '198.19.1.5:080', '198.19.1.5:8a',
    '2001:db8::1:443', '[2001:db8::1]', '[2001:db8::1]443', '[fe80::1%eth0]:80', '[198.19.1.5]:80', ' 198.19.1.5:80']) {
    t.throws(() => parseAuthority(bad), { code: 'AMBIT_ERR_TUNNEL_INVALID_ARGUMENT' }, JSON.stringify(bad));
  }
  t.throws(() => formatAuthority('example.com', 80), { code: 'AMBIT_ERR_TUNNEL_INVALID_ARGUMENT' });
  t.throws(() => formatAuthority('198.19.1.5', 0), { code: 'AMBIT_ERR_TUNNEL_INVALID_ARGUMENT' });
});

test('forwarded: quoted for= with bracketed IPv6, parsed back leniently', (t) => {
  t.is(formatForwarded('198.19.1.5', 40000), 'for="198.19.1.5:40000"');
  t.is(formatForwarded('2001:db8::7', 1), 'for="[2001:db8::7]:1"');
  t.deepEqual(parseForwardedFor('for="[2001:db8::7]:1";proto=http'), { host: '2001:db8::7', port: 1, family: 6 });
  t.deepEqual(parseForwardedFor('by=x;for=198.19.1.5:9'), { host: '198.19.1.5', port: 9, family: 4 });
  t.is(parseForwardedFor('for=unknown'), undefined);
  t.is(parseForwardedFor(undefined), undefined);
});

test('traceparent: generated ones are valid and distinct; invalid ones are recognised', (t) => {
  const a = newTraceparent();
  const b = newTraceparent();
  t.true(isTraceparent(a));
  t.not(a, b);
  t.false(isTraceparent('00-00000000000000000000000000000000-b7ad6b7169203331-01'));
  t.false(isTraceparent('00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01'));
  t.false(isTraceparent('01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x'));
  t.false(isTraceparent('00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01'));
  t.true(isTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'));
});
