/**
 * Option parsing shared by the commands (`agent`, `control`, `waypoint`, `status`, `config-dump`,
 * `top`): parse
 * with node:util's parseArgs, print the command's usage on a bad flag (exit 2), and read
 * numeric options with a message that names the flag and the accepted range.
 */
import { parseArgs } from 'node:util';

/** The flag specs a command accepts (strings and booleans; no positionals). */
export type OptionSpecs = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** Parsed flag values: strings for string flags, booleans for boolean flags. */
export type OptionValues<O extends OptionSpecs> = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : O[K]['multiple'] extends true ? string[] : string };

/**
 * Parses `argv` against `options`; on an unknown or malformed flag writes
 * `ambit COMMAND: <reason>` and the usage to stderr and returns undefined (exit code 2).
 */
export function parseOptions<O extends OptionSpecs>(command: string, help: string, argv: string[], options: O): { values: OptionValues<O> } | undefined {
  try {
    return { values: parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as OptionValues<O> };
  } catch (err) {
    process.stderr.write(`ambit ${command}: ${(err as Error).message}\n\n${help}`);
    return undefined;
  }
}

export interface NumberRange {
  /** Smallest accepted value (default 0). */
  min?: number;
  /** Largest accepted value (default Number.MAX_SAFE_INTEGER). */
  max?: number;
  /** Whole numbers only (default false). */
  integer?: boolean;
  /** What the number is, for the message (default "a number"). */
  what?: string;
}

/**
 * The value of numeric flag `--name`, or `fallback` when absent. Throws the error `fail` builds
 * when the value is not a number in range, naming the flag and the range.
 */
export function numberOption<F extends number | undefined>(value: string | undefined, name: string, fallback: F, range: NumberRange, fail: (message: string) => Error): number | F {
  if (value === undefined) return fallback;
  const { min = 0, max = Number.MAX_SAFE_INTEGER, integer = false, what = integer ? 'a whole number' : 'a number' } = range;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw fail(`--${name} must be ${what} ${min}-${max}, got '${value}'`);
  }
  return n;
}

/** A TCP port flag: a whole number 0-65535 (0 picks a free port). */
export const PORT: NumberRange = { min: 0, max: 65535, integer: true, what: 'a port number' };
