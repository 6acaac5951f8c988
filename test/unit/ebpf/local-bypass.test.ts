/**
 * The device the local-SYN recorder attaches to: the directly connected route to a pod, never
 * one through a gateway (the default route), whatever the table order.
 */
import test from 'ava';
import { directRouteDevice } from '../../../src/ebpf/local-bypass.js';

// /proc/net/route: addresses and masks as little-endian hex of the network-order words.
const V4 = [
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
  'eth0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0', // default via 198.18.0.1
  'eth0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 198.18.0.0/24
  'pods\t000213C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 198.19.2.0/24 on the pod bridge
  'vethA\t0A0213C6\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0', // 198.19.2.10/32 (a veth route)
  'down0\t000313C6\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 198.19.3.0/24, not RTF_UP
].join('\n');

const V6 = [
  'fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     pods',
  '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0',
].join('\n');

test('the longest gateway-less IPv4 route wins; the default route never qualifies', (t) => {
  t.is(directRouteDevice('198.19.2.10', { v4: V4 }), 'vethA');
  t.is(directRouteDevice('198.19.2.11', { v4: V4 }), 'pods');
  t.is(directRouteDevice('198.18.0.7', { v4: V4 }), 'eth0');
  t.is(directRouteDevice('198.19.3.4', { v4: V4 }), null, 'a route that is not up');
  t.is(directRouteDevice('198.18.200.1', { v4: V4 }), null, 'only reachable through a gateway');
});

test('IPv6 pods resolve through /proc/net/ipv6_route the same way', (t) => {
  t.is(directRouteDevice('fd00::2:10', { v6: V6 }), 'pods');
  t.is(directRouteDevice('fd01::1', { v6: V6 }), null, 'the default route (via a next hop) never qualifies');
});
