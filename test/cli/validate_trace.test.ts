// Goal: the real side's discard syscalls and balloon requests are counted from QEMU's trace as
// the model counts them: madvise/fallocate per ram_block_discard_range event by its flags, and
// requests as the elements popped from the balloon's inflate, deflate and report queues only
// (not its stats queue, not the virtio-blk disk); the verdicts' tolerances are 5 % of the
// model's count plus a slack, and only given when the real side traced.
// Method: hand-made trace text in the log backend's format (lines as QEMU 7.2 writes them).
import { describe, expect, test } from "vitest";
import { executeScenario } from "../../src/cli/scenario_execution.ts";
import { parseScenarioText } from "../../src/cli/scenario_file.ts";
import { compareSnapshot, TOLERANCES } from "../../src/cli/validate_compare.ts";
import { NOT_MEASURED } from "../../src/cli/validate_snapshot.ts";
import { countTrace, qemuTraceArgs, TRACE_EVENTS } from "../../src/cli/validate_trace.ts";
import { qemuArgs } from "../../src/cli/validate_vm.ts";

const BALLOON = "0x55b42e1ebe50";
const BLK = "0x55b42e3a0000";
const IVQ = "0x7f6a0588f000";
const DVQ = "0x7f6a0588f068";
const SVQ = "0x7f6a0588f140";
const RVQ = "0x7f6a0588f1d8";
const BLKQ = "0x7f6a05990000";

const notify = (vdev: string, n: number, vq: string) =>
  `virtio_queue_notify vdev ${vdev} n ${n} vq ${vq}`;
const pop = (vq: string, inNum: number, outNum: number) =>
  `virtqueue_pop vq ${vq} elem 0x7f69b0252760 in_num ${inNum} out_num ${outNum}`;
const discard = (length: number, madvise: number, fallocate: number) =>
  `ram_block_discard_range ram0@0x7f69d5200000 + 0x${length.toString(16)}: madvise: ${madvise} fallocate: ${fallocate} ret: 0`;

describe("QEMU trace counts", () => {
  test("discards by flag; requests from inflate, deflate and report queues only", () => {
    const lines = [
      notify(BALLOON, 2, SVQ),
      pop(SVQ, 0, 1), // the stats buffer: not a request
      notify(BLK, 0, BLKQ),
      pop(BLKQ, 2, 1), // a disk read: another device
      pop(BLKQ, 2, 1),
      notify(BALLOON, 3, RVQ),
      pop(RVQ, 32, 0),
      discard(0x400000, 1, 0),
      discard(0x400000, 1, 0),
      notify(BALLOON, 0, IVQ),
      pop(IVQ, 0, 1),
      discard(0x1000, 1, 1),
      discard(0x1000, 1, 1),
      discard(0x200000, 0, 1),
      notify(BALLOON, 1, DVQ),
      pop(DVQ, 0, 1),
      "some other log line",
    ];
    const counts = countTrace(`${lines.join("\n")}\n`, true);
    expect(counts).toMatchObject({
      madvise: 4,
      fallocate: 3,
      discards: 5,
      discardBytes: 2 * 0x400000 + 2 * 0x1000 + 0x200000,
      discardsByBlock: { ram0: 5 },
      balloonPops: { stats: 1, report: 1, inflate: 1, deflate: 1 },
      requests: 3,
      otherPops: 2,
      unknownPops: 0,
      oddElements: 0,
      lines: lines.length,
      otherLines: 1,
    });
  });
  test("an unfinished last line is left for the next read; a queue is named after its pop", () => {
    const text = `${pop(IVQ, 0, 1)}\n${notify(BALLOON, 0, IVQ)}\n${discard(0x1000, 1, 0).slice(0, 30)}`;
    const counts = countTrace(text, false);
    expect(counts.discards).toBe(0);
    expect(counts.balloonPops).toEqual({ inflate: 1 });
    expect(counts.requests).toBe(1);
    expect(countTrace("", false).requests).toBe(0);
  });
  test("timestamped lines (-msg timestamp=on) and odd element shapes", () => {
    const text = [
      `1234@1700000000.000001:${notify(BALLOON, 0, IVQ)}`,
      `1234@1700000000.000002:${pop(IVQ, 0, 1)}`,
      `1234@1700000000.000003:${discard(0x1000, 1, 0)}`,
      pop(IVQ, 1, 1), // not an inflate element's shape
      pop("0x1", 0, 1), // no notify named this queue
    ].join("\n");
    const counts = countTrace(`${text}\n`, false);
    expect(counts).toMatchObject({ madvise: 1, requests: 2, oddElements: 1, unknownPops: 1 });
  });
  test("QEMU gets -D and one -trace enable= per event", () => {
    expect(qemuTraceArgs("/w/t.log")).toEqual([
      "-D",
      "/w/t.log",
      ...TRACE_EVENTS.flatMap((event) => ["-trace", `enable=${event}`]),
    ]);
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - snapshot: s\n",
      "inline.yaml",
    );
    const kernel = { packageName: "k", release: "r", vmlinuz: "/k", modulesDir: "/m" };
    const files = { initramfs: "/i", workDir: "/w", backend: "memory-backend-ram,id=ram0" };
    expect(qemuArgs(scenario, kernel, { ...files, trace: "/w/t.log" })).toContain("/w/t.log");
    expect(qemuArgs(scenario, kernel, files)).not.toContain("-D");
  });
});

describe("verdicts of the counts", () => {
  const scenario = parseScenarioText(
    "guest: { memory: 512MiB }\nsteps:\n  - balloon: { target: 384MiB }\n  - snapshot: s\n",
    "inline.yaml",
  );
  const snapshot = executeScenario(scenario).result.snapshots[0]!;
  test("the model's counts are those of its discards and requests", () => {
    expect(snapshot.host.syscalls.madvise).toBe(32768);
    expect(snapshot.balloon.requests).toBe(128);
    expect(NOT_MEASURED).not.toContain("host.syscalls");
    expect(NOT_MEASURED).not.toContain("balloon.requests");
  });
  test("5 % of the model's count plus a slack; none without a trace", () => {
    const without = compareSnapshot(snapshot, snapshot, scenario.guest.memoryBytes, "cgroup-v1");
    expect(without.some((v) => v.quantity === "balloon.requests")).toBe(false);
    const off = structuredClone(snapshot);
    off.host.syscalls.madvise += 32768 * TOLERANCES.counts + TOLERANCES.syscallSlack + 1;
    off.host.syscalls.fallocate += TOLERANCES.syscallSlack;
    off.balloon.requests += Math.floor(128 * TOLERANCES.counts + TOLERANCES.requestSlack);
    const verdicts = compareSnapshot(
      snapshot,
      off,
      scenario.guest.memoryBytes,
      "cgroup-v1",
      undefined,
      true,
    );
    const find = (quantity: string) => verdicts.find((v) => v.quantity === quantity);
    expect(find("host.syscalls.madvise")).toMatchObject({
      verdict: "fail",
      tolerance: 32768 * TOLERANCES.counts + TOLERANCES.syscallSlack,
    });
    expect(find("host.syscalls.fallocate")?.verdict).toBe("pass");
    expect(find("balloon.requests")).toMatchObject({ verdict: "pass", unit: "requests" });
  });
});
