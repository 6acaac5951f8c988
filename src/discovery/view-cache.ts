/**
 * The last good view on disk, so a restarted agent or waypoint serves traffic before (or
 * without) reaching the control plane. Writes are atomic (temporary file in the same
 * directory, fsync, rename): a crash leaves either the old file or the new one, never half.
 */
import { open, readFile, rename, rm, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ViewCacheError } from './errors.js';
import type { ViewSnapshot } from './local-view.js';

const FORMAT = 'ambit.dev/discovery-view/v1';

export async function writeViewCache(file: string, snap: ViewSnapshot): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify({ format: FORMAT, savedAt: new Date().toISOString(), ...snap }));
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** The cached view, or undefined when there is none; ViewCacheError when it is unusable. */
export async function readViewCache(file: string): Promise<ViewSnapshot | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ViewCacheError(`cannot read the cached view ${file}: ${(err as Error).message}`, { cause: err });
  }
  let obj: { format?: unknown; epoch?: unknown; version?: unknown; resources?: unknown };
  try {
    obj = JSON.parse(text) as typeof obj;
  } catch (err) {
    throw new ViewCacheError(`cached view ${file} is not valid JSON (${(err as Error).message}); delete it to start empty`, { cause: err });
  }
  if (obj.format !== FORMAT || typeof obj.epoch !== 'string' || typeof obj.version !== 'number' || typeof obj.resources !== 'object' || obj.resources === null) {
    throw new ViewCacheError(`cached view ${file} is not a ${FORMAT} file; delete it to start empty`);
  }
  return { epoch: obj.epoch, version: obj.version, resources: obj.resources as ViewSnapshot['resources'] };
}
