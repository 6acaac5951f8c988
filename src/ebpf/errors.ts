/**
 * Typed errors of the eBPF capture. The native addon throws plain errors carrying `code` (errno
 * name), `errno`, `syscall` and, for a rejected program, `verifierLog`; `fromNative()` turns them
 * into AmbitError subclasses that keep that data (`errnoName`, `errno`, `syscall`, `verifierLog`)
 * while `code` stays a stable `AMBIT_ERR_EBPF_...` so callers match on it. Messages say what an
 * operator should check.
 */
import { AmbitError } from '../util/errors.js';
import type { AmbitErrorCode } from '../util/error-codes.js';

/** The codes of the capture (`AMBIT_ERR_EBPF_*`), listed with their meaning in src/util/error-codes.ts. */
export type EbpfErrorCode = Extract<AmbitErrorCode, `AMBIT_ERR_EBPF_${string}`>;

/** Capture used wrongly or in the wrong state (closed, already enrolled, port in use, wrong build's maps). */
export class CaptureError extends AmbitError {
  declare readonly code: EbpfErrorCode;

  constructor(code: EbpfErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CaptureError';
  }
}

/** The raw error shape the addon throws. */
export interface NativeErrorShape {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  verifierLog?: string;
  libbpfLog?: string;
}

/** A failed syscall or libbpf call, with the kernel's errno. */
export class EbpfSyscallError extends AmbitError {
  readonly errnoName: string;
  readonly errno: number;
  readonly syscall: string;
  readonly libbpfLog: string | undefined;

  constructor(code: EbpfErrorCode, message: string, native: NativeErrorShape, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'EbpfSyscallError';
    this.errnoName = native.code ?? 'EINVAL';
    this.errno = native.errno ?? 0;
    this.syscall = native.syscall ?? 'unknown';
    this.libbpfLog = native.libbpfLog;
  }
}

/** The kernel verifier rejected a program; `verifierLog` holds its log. */
export class VerifierError extends EbpfSyscallError {
  readonly verifierLog: string;

  constructor(message: string, native: NativeErrorShape, options?: { cause?: unknown }) {
    super('AMBIT_ERR_EBPF_VERIFIER', message, native, options);
    this.name = 'VerifierError';
    this.verifierLog = native.verifierLog ?? '';
  }
}

/** The process lacks the privilege for a BPF or namespace operation. */
export class EbpfPermissionError extends EbpfSyscallError {
  constructor(what: string, native: NativeErrorShape, options?: { cause?: unknown }) {
    super(
      'AMBIT_ERR_EBPF_PERMISSION',
      `${what}: permission denied (${native.code ?? 'EPERM'} from ${native.syscall ?? 'bpf'}); ` +
        'the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (run it privileged or as root)',
      native,
      options,
    );
    this.name = 'EbpfPermissionError';
  }
}

/** The running kernel lacks a feature capture needs. */
export class MissingKernelFeatureError extends AmbitError {
  readonly feature: string;
  readonly minimumKernel: string;
  readonly kernelRelease: string;

  constructor(feature: string, minimumKernel: string, kernelRelease: string) {
    super(
      'AMBIT_ERR_EBPF_MISSING_FEATURE',
      `kernel ${kernelRelease} lacks ${feature}, which capture needs (available since Linux ${minimumKernel})`,
    );
    this.name = 'MissingKernelFeatureError';
    this.feature = feature;
    this.minimumKernel = minimumKernel;
    this.kernelRelease = kernelRelease;
  }
}

/** Bad configuration or input (cgroup path, pod, pin dir). */
export class CaptureConfigError extends AmbitError {
  readonly field: string;

  constructor(code: EbpfErrorCode, field: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CaptureConfigError';
    this.field = field;
  }
}

/** The addon was not built or cannot be loaded. */
export class AddonUnavailableError extends AmbitError {
  constructor(path: string, cause: unknown) {
    super(
      'AMBIT_ERR_EBPF_ADDON_UNAVAILABLE',
      `native addon ${path} cannot be loaded: run \`npm run build\` (scripts/build-native.sh needs clang, libbpf-dev, bpftool, cmake)`,
      { cause },
    );
    this.name = 'AddonUnavailableError';
  }
}

/** A BPF object file is missing; the build did not run. */
export class ObjectUnavailableError extends AmbitError {
  constructor(path: string) {
    super('AMBIT_ERR_EBPF_OBJECT_UNAVAILABLE', `BPF object ${path} does not exist: run \`npm run build\``);
    this.name = 'ObjectUnavailableError';
  }
}

function isNativeShape(err: unknown): err is NativeErrorShape & Error {
  return err instanceof Error && typeof (err as { errno?: unknown }).errno === 'number';
}

/**
 * Translates an addon error into the matching AmbitError. `what` names the operation for the
 * operator ("attach cgroup/connect4 to /sys/fs/cgroup/unified/kubepods"). Non-native errors pass
 * through unchanged.
 */
export function fromNative(err: unknown, what: string): unknown {
  if (err instanceof AmbitError || !isNativeShape(err)) return err;
  const code = err.code ?? 'EINVAL';
  if (err.verifierLog !== undefined && err.verifierLog !== '') {
    return new VerifierError(`${what}: ${err.message}; see verifierLog`, err, { cause: err });
  }
  if (code === 'EPERM' || code === 'EACCES') return new EbpfPermissionError(what, err, { cause: err });
  return new EbpfSyscallError('AMBIT_ERR_EBPF_SYSCALL', `${what}: ${err.message}`, err, { cause: err });
}
