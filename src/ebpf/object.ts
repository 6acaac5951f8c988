/**
 * A BPF object file in two stages, as cilium/ebpf separates CollectionSpec from Collection:
 * `ObjectSpec.open(path)` parses the ELF without touching the kernel (inspect programs and maps,
 * resize maps), and `spec.load()` turns it into a `LoadedObject` whose program and map fds are
 * usable. Loading consumes the spec. Maps declared with LIBBPF_PIN_BY_NAME are reused from, or
 * pinned into, `pinRoot`, which is how an agent restart keeps its state.
 *
 * Every handle has `close()`; closing a LoadedObject releases its fds only: pinned maps and links
 * created from its programs stay in the kernel.
 */
import { existsSync } from 'node:fs';
import { addon, type NativeBpfObject, type NativeMapSpec, type NativeProgramSpec } from './native.js';
import { fromNative, ObjectUnavailableError } from './errors.js';

export type ProgramSpec = NativeProgramSpec;
export type MapSpec = NativeMapSpec;

export interface ObjectSpecOptions {
  /** bpffs directory for maps pinned by name (default: none, maps are not pinned). */
  pinRoot?: string;
}

export class ObjectSpec {
  readonly path: string;
  #native: NativeBpfObject | undefined;

  private constructor(path: string, native: NativeBpfObject) {
    this.path = path;
    this.#native = native;
  }

  /** Parses `path`; throws ObjectUnavailableError when it does not exist. */
  static open(path: string, opts: ObjectSpecOptions = {}): ObjectSpec {
    if (!existsSync(path)) throw new ObjectUnavailableError(path);
    const { BpfObject } = addon();
    try {
      return new ObjectSpec(path, new BpfObject(path, opts.pinRoot === undefined ? {} : { pinRoot: opts.pinRoot }));
    } catch (err) {
      throw fromNative(err, `open BPF object ${path}`);
    }
  }

  #obj(): NativeBpfObject {
    if (this.#native === undefined) throw new Error(`BPF object spec ${this.path} was loaded or closed`);
    return this.#native;
  }

  programs(): ProgramSpec[] {
    return this.#obj().programs();
  }

  maps(): MapSpec[] {
    return this.#obj().maps().filter((m) => !m.internal);
  }

  setMaxEntries(map: string, maxEntries: number): void {
    try {
      this.#obj().setMaxEntries(map, maxEntries);
    } catch (err) {
      throw fromNative(err, `resize map ${map}`);
    }
  }

  /** Loads maps and programs into the kernel; a rejected program throws a VerifierError. */
  async load(): Promise<LoadedObject> {
    const native = this.#obj();
    try {
      await native.load();
    } catch (err) {
      native.close();
      this.#native = undefined;
      throw fromNative(err, `load BPF object ${this.path}`);
    }
    this.#native = undefined;
    return new LoadedObject(this.path, native);
  }

  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }
}

export class LoadedObject {
  readonly path: string;
  #native: NativeBpfObject | undefined;

  constructor(path: string, native: NativeBpfObject) {
    this.path = path;
    this.#native = native;
  }

  #obj(): NativeBpfObject {
    if (this.#native === undefined) throw new Error(`BPF object ${this.path} is closed`);
    return this.#native;
  }

  programs(): ProgramSpec[] {
    return this.#obj().programs();
  }

  /** Maps after load. */
  maps(): MapSpec[] {
    return this.#obj().maps().filter((m) => !m.internal);
  }

  programFd(name: string): number {
    try {
      return this.#obj().programFd(name);
    } catch (err) {
      throw fromNative(err, `program ${name}`);
    }
  }

  mapFd(name: string): number {
    try {
      return this.#obj().mapFd(name);
    } catch (err) {
      throw fromNative(err, `map ${name}`);
    }
  }

  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }
}
