/**
 * Generates TLS fixtures through ambit's own CA (no pasted PEM blobs): a root, and workload
 * certificates for a few identities, into test/fixtures/tls/ (or the directory given). Unit
 * tests mint their certificates at run time through the same code; these files are for manual
 * runs (stunnel, openssl s_client, curl) and for other subsystems' tests that want files.
 *
 *   npx tsx scripts/gen-test-certs.ts [OUT_DIR] [--lifetime SECONDS]
 *
 * Writes, all mode 0600: ca/root-cert.pem, ca/root-key.pem (the CA directory), trust-bundle.pem,
 * and per identity <ns>.<sa>.crt (chain) and <ns>.<sa>.key. Keys never belong in git: the
 * directory's .gitignore keeps them out.
 */
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdir } from 'node:fs/promises';
import { CertificateAuthority } from '../src/identity/ca.js';
import { IdentityManager } from '../src/identity/manager.js';
import { writeFileAtomic } from '../src/identity/atomic-file.js';
import { parseSpiffeId } from '../src/identity/spiffe.js';

const IDENTITIES = [
  'spiffe://cluster.local/ns/default/sa/client',
  'spiffe://cluster.local/ns/default/sa/server',
  'spiffe://cluster.local/ns/shop/sa/frontend',
  'spiffe://cluster.local/ns/shop/sa/cart',
];

async function main(argv: string[]): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const positional = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--lifetime');
  const out = resolve(positional[0] ?? join(here, '..', 'test', 'fixtures', 'tls'));
  const li = argv.indexOf('--lifetime');
  const lifetimeSeconds = li === -1 ? 24 * 3600 : Number(argv[li + 1]);
  if (!Number.isFinite(lifetimeSeconds) || lifetimeSeconds < 60) throw new Error(`--lifetime must be a number of seconds >= 60, got ${argv[li + 1]}`);
  await mkdir(out, { recursive: true, mode: 0o700 });
  const ca = await CertificateAuthority.open({ dir: join(out, 'ca') });
  const mgr = new IdentityManager({ signer: ca, lifetimeSeconds });
  try {
    await writeFileAtomic(join(out, 'trust-bundle.pem'), ca.trustBundlePem().join(''));
    for (const uri of IDENTITIES) {
      const id = parseSpiffeId(uri);
      const cert = await mgr.credentials(uri);
      const base = join(out, `${id.namespace}.${id.serviceAccount}`);
      await writeFileAtomic(`${base}.crt`, cert.chainPem.join(''));
      await writeFileAtomic(`${base}.key`, cert.keyPem);
      process.stdout.write(`${uri}  serial ${cert.serial}  until ${cert.notAfter.toISOString()}  -> ${base}.{crt,key}\n`);
    }
  } finally {
    mgr.close();
  }
  process.stdout.write(`trust bundle: ${join(out, 'trust-bundle.pem')}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`gen-test-certs: ${(err as { code?: string }).code ?? 'error'}: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
