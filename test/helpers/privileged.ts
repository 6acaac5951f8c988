/**
 * Gate for tests that need root or a kernel feature. Without the privilege the test is skipped
 * with a visible reason in its title; with AMBIT_REQUIRE_PRIVILEGED=1 (set by .ci/run as root)
 * a missing privilege fails the run instead of skipping.
 */
import test from 'ava';
import { existsSync } from 'node:fs';

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
export const requirePrivileged = process.env['AMBIT_REQUIRE_PRIVILEGED'] === '1';

/** Why privileged tests cannot run here, or undefined when they can. */
export function privilegeGap(needs: { root?: boolean; paths?: string[] } = { root: true }): string | undefined {
  if (needs.root !== false && !isRoot) return 'needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN)';
  for (const p of needs.paths ?? []) if (!existsSync(p)) return `needs ${p}`;
  return undefined;
}

/**
 * `privilegedTest(title, fn)` runs like `test.serial` when privileged; otherwise it skips with the
 * reason in the title, or fails when AMBIT_REQUIRE_PRIVILEGED=1.
 */
export function privilegedTest(
  title: string,
  fn: Parameters<typeof test.serial>[1],
  needs?: { root?: boolean; paths?: string[] },
): void {
  const gap = privilegeGap(needs);
  if (gap === undefined) {
    test.serial(title, fn as never);
  } else if (requirePrivileged) {
    test.serial(title, (t) => t.fail(`AMBIT_REQUIRE_PRIVILEGED=1 but ${gap}`));
  } else {
    test.skip(`${title} [${gap}]`, () => {});
  }
}
