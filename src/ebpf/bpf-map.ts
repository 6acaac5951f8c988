/**
 * A typed handle on one BPF map fd: lookup/update/delete/iterate with Buffers, per-CPU values
 * sized for every possible CPU. It does not own the fd unless `owned` is set (maps of a
 * LoadedObject are closed with the object).
 */
import { addon } from './native.js';
import { fromNative } from './errors.js';

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export class BpfMap {
  readonly name: string;
  readonly fd: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly perCpu: boolean;
  readonly cpus: number;

  constructor(name: string, fd: number) {
    const info = addon().mapInfo(fd);
    this.name = name;
    this.fd = fd;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.perCpu = info.type.startsWith('percpu') || info.type.startsWith('lru_percpu');
    this.cpus = this.perCpu ? addon().numPossibleCpus() : 1;
  }

  /** Bytes of a lookup result: value size, or one 8-byte-aligned slot per possible CPU. */
  get lookupSize(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * this.cpus : this.valueSize;
  }

  lookup(key: Buffer): Buffer | null {
    try {
      return addon().mapLookup(this.fd, key, this.lookupSize);
    } catch (err) {
      throw fromNative(err, `lookup in map ${this.name}`);
    }
  }

  /** Per-CPU values of a per-CPU map, one Buffer per CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    const raw = this.lookup(key);
    if (raw === null) return null;
    const slot = Math.ceil(this.valueSize / 8) * 8;
    const out: Buffer[] = [];
    for (let i = 0; i < this.cpus; i++) out.push(raw.subarray(i * slot, i * slot + this.valueSize));
    return out;
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    try {
      addon().mapUpdate(this.fd, key, value, flags);
    } catch (err) {
      throw fromNative(err, `update map ${this.name}`);
    }
  }

  /** True when the key existed. */
  delete(key: Buffer): boolean {
    try {
      return addon().mapDelete(this.fd, key);
    } catch (err) {
      throw fromNative(err, `delete from map ${this.name}`);
    }
  }

  keys(): Buffer[] {
    try {
      return addon().mapKeys(this.fd, this.keySize);
    } catch (err) {
      throw fromNative(err, `iterate map ${this.name}`);
    }
  }

  /** Inserts a socket fd into a SOCKMAP/SOCKHASH. */
  insertSocket(key: Buffer, socketFd: number): void {
    try {
      addon().sockmapInsert(this.fd, key, socketFd);
    } catch (err) {
      throw fromNative(err, `insert socket into map ${this.name}`);
    }
  }
}
