/**
 * The HBONE `:authority`: the destination of a CONNECT, always a literal `ip:port` (IPv6 in
 * brackets). Host names are refused: the tunnel carries captured connections, whose original
 * destination is an address, and resolving names at either end would let a client steer the
 * server's upstream connect somewhere policy never saw.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { TunnelError } from './errors.js';

export interface Authority {
  /** Address without brackets. */
  host: string;
  port: number;
  family: 4 | 6;
}

/** Parses `ip:port` / `[ipv6]:port`; throws TunnelError AMBIT_ERR_TUNNEL_INVALID_ARGUMENT. */
export function parseAuthority(input: string): Authority {
  const bad = (why: string): never => {
    throw new TunnelError('AMBIT_ERR_TUNNEL_INVALID_ARGUMENT', `invalid authority ${JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}...` : input)}: ${why}; expected ip:port or [ipv6]:port`);
  };
  if (typeof input !== 'string' || input.length === 0) bad('empty');
  if (input.length > 64) bad('too long');
  let host: string;
  let portText: string;
  if (input.startsWith('[')) {
    const end = input.indexOf(']');
    if (end === -1 || input[end + 1] !== ':') bad('IPv6 address must be written [addr]:port');
    host = input.slice(1, end);
    portText = input.slice(end + 2);
    if (!isIPv6(host) || host.includes('%')) bad(`"${host}" is not an IPv6 address`);
  } else {
    const colon = input.lastIndexOf(':');
    if (colon === -1) bad('port is missing');
    host = input.slice(0, colon);
    portText = input.slice(colon + 1);
    if (isIPv6(host)) bad('IPv6 addresses must be in brackets');
    if (!isIPv4(host)) bad(`"${host}" is not an IP address (host names are not accepted)`);
  }
  if (!/^[1-9][0-9]{0,4}$/.test(portText)) bad(`port "${portText}" is not a number in 1..65535`);
  const port = Number(portText);
  if (port > 65535) bad(`port ${port} is out of range`);
  return { host, port, family: isIPv6(host) ? 6 : 4 };
}

/** Formats an address and port as an authority, bracketing IPv6. */
export function formatAuthority(host: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TunnelError('AMBIT_ERR_TUNNEL_INVALID_ARGUMENT', `port ${port} is not in 1..65535`);
  }
  if (isIPv6(host)) return `[${host}]:${port}`;
  if (isIPv4(host)) return `${host}:${port}`;
  throw new TunnelError('AMBIT_ERR_TUNNEL_INVALID_ARGUMENT', `"${host}" is not an IP address`);
}
