/**
 * `--tls-groups LIST`, shared by `ambit agent`, `ambit waypoint` and `ambit control`: the TLS
 * key-exchange groups offered, in order, colon- or comma-separated (default
 * X25519MLKEM768:X25519). Validated at start-up against this runtime's OpenSSL, so a typo stops
 * the process with the bad group's name instead of failing every handshake later.
 */
import { DEFAULT_TLS_GROUPS, parseTlsGroups, TlsGroupsError } from '../../tunnel/tls-groups.js';

/** The usage lines each command prints, descriptions starting at `column` as in its other options. */
export function tlsGroupsHelp(column: number, where: string): string {
  const flag = '  --tls-groups LIST';
  const pad = ' '.repeat(Math.max(1, column - flag.length));
  return `${flag}${pad}TLS key-exchange groups offered, in order, on ${where}\n` +
    `${' '.repeat(flag.length + pad.length)}(colon- or comma-separated; default ${DEFAULT_TLS_GROUPS.join(':')})\n`;
}

/** The groups `--tls-groups` names (the default when absent); throws a TlsGroupsError naming the flag and the bad group. */
export function tlsGroupsOption(value: string | undefined): string[] {
  if (value === undefined) return [...DEFAULT_TLS_GROUPS];
  try {
    return parseTlsGroups(value);
  } catch (err) {
    if (err instanceof TlsGroupsError) throw new TlsGroupsError(`--tls-groups: ${err.message}`, err.group);
    throw err;
  }
}
