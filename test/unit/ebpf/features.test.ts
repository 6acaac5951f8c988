/**
 * Feature checks and native error translation: a kernel lacking a program type is reported by
 * name with the kernel that has it; addon errors become typed AmbitErrors keeping errno data.
 */
import test from 'ava';
import { checkFeatures } from '../../../src/ebpf/features.js';
import { EbpfPermissionError, EbpfSyscallError, MissingKernelFeatureError, VerifierError, fromNative } from '../../../src/ebpf/errors.js';

const full = {
  progTypes: { cgroup_sock_addr: true, sock_ops: true, cgroup_sockopt: true, sk_lookup: true },
  mapTypes: { hash: true, lru_hash: true, percpu_array: true, lpm_trie: true, sockhash: true },
  permission: true,
  kernelRelease: '6.1.0-13-amd64',
};

test('a complete kernel passes', (t) => {
  t.notThrows(() => checkFeatures(full));
});

test('a kernel without sk_lookup is named with the version that has it', (t) => {
  const e = t.throws(() => checkFeatures({ ...full, progTypes: { ...full.progTypes, sk_lookup: false }, kernelRelease: '5.4.0' }), { instanceOf: MissingKernelFeatureError });
  t.is(e?.code, 'AMBIT_ERR_EBPF_MISSING_FEATURE');
  t.is(e?.minimumKernel, '5.9');
  t.regex(e?.message ?? '', /sk_lookup.*5\.9/);
});

test('an old kernel with every type still fails on the minimum release', (t) => {
  const e = t.throws(() => checkFeatures({ ...full, kernelRelease: '5.10.0' }), { instanceOf: MissingKernelFeatureError });
  t.is(e?.minimumKernel, '5.17');
});

test('no privilege is a permission error, not a missing feature', (t) => {
  t.throws(() => checkFeatures({ ...full, permission: false }), { instanceOf: EbpfPermissionError, code: 'AMBIT_ERR_EBPF_PERMISSION' });
});

test('native errors keep errno, syscall and the verifier log', (t) => {
  const raw = Object.assign(new Error('bpf_object__load: Permission denied'), { code: 'EACCES', errno: 13, syscall: 'bpf_object__load', verifierLog: '0: R1=ctx\ninvalid bpf_context access' });
  const v = fromNative(raw, 'load capture.bpf.o') as VerifierError;
  t.true(v instanceof VerifierError);
  t.is(v.code, 'AMBIT_ERR_EBPF_VERIFIER');
  t.is(v.errnoName, 'EACCES');
  t.is(v.errno, 13);
  t.regex(v.verifierLog, /invalid bpf_context access/);
  const s = fromNative(Object.assign(new Error('bpf_link_create: Bad file descriptor'), { code: 'EBADF', errno: 9, syscall: 'bpf_link_create' }), 'attach') as EbpfSyscallError;
  t.is(s.code, 'AMBIT_ERR_EBPF_SYSCALL');
  t.is(s.syscall, 'bpf_link_create');
  t.true(fromNative(Object.assign(new Error('x'), { code: 'EPERM', errno: 1 }), 'attach') instanceof EbpfPermissionError);
  const plain = new Error('not native');
  t.is(fromNative(plain, 'x'), plain);
});
