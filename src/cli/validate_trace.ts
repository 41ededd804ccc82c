// `balloonlab validate` (issue #5): the real side's discard syscalls and balloon virtqueue
// requests, counted from QEMU's own trace events. Debian's QEMU 7.2 is built with the "log"
// trace backend: `-trace enable=NAME` turns an event on and `-D FILE` sends every event, one
// line each, to FILE (flushed per event: qemu_log_unlock fflushes), so the file can be read at
// any snapshot and holds every event up to then.
//
// Three events, none of them per-instruction and only one per 4 KiB page (the discard itself):
//   ram_block_discard_range "%s@%p + 0x%zx: madvise: %d fallocate: %d ret: %d"
//     (softmmu/physmem.c) one per successful call: the RAMBlock, host address and length, and
//     whether it called fallocate(PUNCH_HOLE) (rb->fd != -1) and madvise(DONTNEED) (RAMBlock
//     page size == host page size). A failed call logs an error on stderr instead, no event.
//   virtio_queue_notify "vdev %p n %d vq %p" (hw/virtio/virtio.c) one per guest kick: which
//     device and which queue index a VirtQueue pointer is. Under TCG there is no ioeventfd
//     (virtio-pci drops it without KVM), so every kick comes through here and the device's
//     handler runs from it.
//   virtqueue_pop "vq %p elem %p in_num %u out_num %u" one per element the device takes.
// The balloon device is the one with a queue whose elements are out-only (inflate, deflate and
// the stats buffer: one out descriptor; a virtio-blk request always ends in an in status byte).
// Its queue indices are QEMU's order of virtio_add_queue: 0 inflate, 1 deflate, 2 stats, then
// free page hinting (never enabled here) and free page reporting (3 here).
//
// What the model counts (src/host/discard.ts, src/sim/result_json.ts): `host.syscalls.madvise`
// and `fallocate` are ram_block_discard_range calls with need_madvise / need_fallocate (one each
// per call, so one per inflated 4 KiB page and one per reported block), and `balloon.requests`
// are the inflate, deflate and report elements (one per guest tell_host / report); deflate's
// MADV_WILLNEED and the stats queue are not counted. Counted the same way here.

/** The events `qemuTraceArgs` enables. */
export const TRACE_EVENTS = ["ram_block_discard_range", "virtio_queue_notify", "virtqueue_pop"];

/** QEMU's arguments that write the events to `file` (log trace backend). */
export function qemuTraceArgs(file: string): string[] {
  return ["-D", file, ...TRACE_EVENTS.flatMap((event) => ["-trace", `enable=${event}`])];
}

/** Balloon queue index -> the queue's name (QEMU 7.2's virtio_add_queue order). */
export function balloonQueueNames(freePageReporting: boolean): Record<number, string> {
  return freePageReporting
    ? { 0: "inflate", 1: "deflate", 2: "stats", 3: "report" }
    : { 0: "inflate", 1: "deflate", 2: "stats" };
}

/** What the trace says up to one moment (validation.json `real.trace.<snapshot>`). */
export interface TraceCounts {
  /** ram_block_discard_range calls with need_madvise / need_fallocate. */
  readonly madvise: number;
  readonly fallocate: number;
  /** All ram_block_discard_range events, and the bytes they discarded. */
  readonly discards: number;
  readonly discardBytes: number;
  /** Discards per RAMBlock name. */
  readonly discardsByBlock: Record<string, number>;
  /** Balloon elements popped per queue name (inflate, deflate, stats, report). */
  readonly balloonPops: Record<string, number>;
  /** inflate + deflate + report: the model's `balloon.requests`. */
  readonly requests: number;
  /** Elements popped by other devices (the virtio-blk disk). */
  readonly otherPops: number;
  /** Elements popped from a queue no virtio_queue_notify named (0 expected). */
  readonly unknownPops: number;
  /** Balloon elements whose shape is not the queue's (report: in only; others: out only). */
  readonly oddElements: number;
  /** Lines read (complete ones), and lines that matched none of the events. */
  readonly lines: number;
  readonly otherLines: number;
}

// A line may carry the log backend's "PID@SEC.USEC:" prefix (with -msg timestamp=on).
const PREFIX = String.raw`^(?:\d+@[\d.]+:)?`;
const DISCARD = new RegExp(
  `${PREFIX}ram_block_discard_range (\\S*)@(\\S+) \\+ 0x([0-9a-f]+): madvise: (-?\\d+) fallocate: (-?\\d+) ret: (-?\\d+)`,
);
const NOTIFY = new RegExp(`${PREFIX}virtio_queue_notify vdev (\\S+) n (\\d+) vq (\\S+)`);
const POP = new RegExp(`${PREFIX}virtqueue_pop vq (\\S+) elem \\S+ in_num (\\d+) out_num (\\d+)`);

/**
 * Counts the events of a trace file's text. Only complete lines count (QEMU may be writing the
 * last one). Queues are resolved after the whole text is read, so a pop before the first
 * balloon element of its device still counts.
 */
export function countTrace(text: string, freePageReporting: boolean): TraceCounts {
  const end = text.lastIndexOf("\n");
  const lines = end < 0 ? [] : text.slice(0, end).split("\n");
  let madvise = 0;
  let fallocate = 0;
  let discards = 0;
  let discardBytes = 0;
  let otherLines = 0;
  const discardsByBlock: Record<string, number> = {};
  const queues = new Map<string, { vdev: string; index: number }>();
  /** vq -> [elements, out-only elements, in-only elements]. */
  const pops = new Map<string, [number, number, number]>();
  for (const line of lines) {
    const discard = DISCARD.exec(line);
    if (discard) {
      discards++;
      discardBytes += Number.parseInt(discard[3]!, 16);
      if (discard[4] !== "0") madvise++;
      if (discard[5] !== "0") fallocate++;
      discardsByBlock[discard[1]!] = (discardsByBlock[discard[1]!] ?? 0) + 1;
      continue;
    }
    const pop = POP.exec(line);
    if (pop) {
      const counts = pops.get(pop[1]!) ?? [0, 0, 0];
      const inNum = Number(pop[2]);
      const outNum = Number(pop[3]);
      counts[0]++;
      if (inNum === 0 && outNum > 0) counts[1]++;
      if (outNum === 0 && inNum > 0) counts[2]++;
      pops.set(pop[1]!, counts);
      continue;
    }
    const notify = NOTIFY.exec(line);
    if (notify) {
      queues.set(notify[3]!, { vdev: notify[1]!, index: Number(notify[2]) });
      continue;
    }
    if (line.trim() !== "") otherLines++;
  }
  // The balloon: the device with out-only elements on one of its queues.
  const balloonDevices = new Set<string>();
  for (const [vq, [, outOnly]] of pops) {
    const queue = queues.get(vq);
    if (queue !== undefined && outOnly > 0) balloonDevices.add(queue.vdev);
  }
  const names = balloonQueueNames(freePageReporting);
  const balloonPops: Record<string, number> = {};
  let otherPops = 0;
  let unknownPops = 0;
  let oddElements = 0;
  for (const [vq, [elements, outOnly, inOnly]] of pops) {
    const queue = queues.get(vq);
    if (queue === undefined) {
      unknownPops += elements;
      continue;
    }
    if (!balloonDevices.has(queue.vdev)) {
      otherPops += elements;
      continue;
    }
    const name = names[queue.index] ?? `queue${queue.index}`;
    balloonPops[name] = (balloonPops[name] ?? 0) + elements;
    oddElements += elements - (name === "report" ? inOnly : outOnly);
  }
  const requests =
    (balloonPops.inflate ?? 0) + (balloonPops.deflate ?? 0) + (balloonPops.report ?? 0);
  return {
    madvise,
    fallocate,
    discards,
    discardBytes,
    discardsByBlock,
    balloonPops,
    requests,
    otherPops,
    unknownPops,
    oddElements,
    lines: lines.length,
    otherLines,
  };
}
