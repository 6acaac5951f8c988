/**
 * Node/V8 flags for ambit's long-running processes, defined once and used wherever ambit starts
 * one: the `ambit` bin's shebang, the container image's entrypoint, the demo (which starts the
 * control plane, agents and waypoints as child processes) and the benchmarks.
 *
 * `--initial-old-space-size=64`: the data path allocates an ArrayBuffer per socket read (up to
 * 64 KiB) and per HTTP/2 DATA chunk, and the buffers in flight survive a scavenge or two. With
 * V8's small initial old-generation limit (a few MB above a ~10 MB heap), the bytes they promote
 * start a full mark-compact every few tens of MB carried: measured with `perf` and `--trace-gc`
 * on an HBONE client/server pair under iperf3, ~60 mark-compacts per GB tunnelled, 15-20% of the
 * CPU in marking and sweeping plus V8's concurrent-marking threads taking turns on the same cores.
 * With a 64 MB initial limit: ~2 per GB. The flag is a threshold, not a reservation: memory is
 * still committed only as used, and a full GC still runs once 64 MB of old objects accumulate.
 * V8 reads it when the heap is created, so it must be on the command line
 * (`v8.setFlagsFromString` at run time has no effect, and NODE_OPTIONS does not accept it).
 */

/** Flags for every long-running ambit process (the shebang and the image carry the same). */
export const LONG_RUNNING_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** `execArgv` plus each of LONG_RUNNING_NODE_FLAGS whose option it does not set already. */
export function withLongRunningFlags(execArgv: readonly string[]): string[] {
  const name = (flag: string) => flag.split('=')[0];
  const present = new Set(execArgv.map(name));
  return [...execArgv, ...LONG_RUNNING_NODE_FLAGS.filter((f) => !present.has(name(f)))];
}
