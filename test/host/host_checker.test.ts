// Goal: the independent host checker is not vacuous: each kind of corruption a model bug could
// cause (a bitmap bit without its count, a wrong global total, a broken split queue, half a
// hugetlb page, an untouched resident page with no fill cause, a PMD-mapped block with a hole)
// is reported, naming the block and both values. Method: build a valid state, check that it is
// clean, corrupt one field by hand, and match the checker's messages.
import { describe, expect, test } from "vitest";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { BlockState, FillCause, type GuestRam } from "../../src/host/host_api.ts";
import { BLOCK, discard, GiB, hostRam, KiB, write } from "./helpers.ts";

const PAGE = 4 * KiB;

function anonWithSplitThp(): GuestRam {
  const ram = hostRam({ backing: "anon" });
  write(ram, 0, 2 * BLOCK);
  discard(ram, PAGE, PAGE); // block 0: split PMD, queued
  return ram;
}

function expectProblem(ram: GuestRam, pattern: RegExp): void {
  const problems = checkHostRam(ram);
  expect(
    problems.some((problem) => pattern.test(problem)),
    problems.join("\n"),
  ).toBe(true);
}

describe("host checker finds corruption", () => {
  test("a resident bit cleared behind the counts' back", () => {
    const ram = anonWithSplitThp();
    ram.resident[16] = ram.resident[16]! & ~1; // block 1, page 512
    expectProblem(ram, /block 1 \(ThpPmd\): residentCount says 512, bitmap has 511/);
    expectProblem(ram, /block 1 \(ThpPmd\): 511 resident of 512/);
  });

  test("a global total out of step", () => {
    const ram = anonWithSplitThp();
    ram.allocatedPages += 1;
    expectProblem(ram, /allocatedPages says 1025, blocks sum to 1024/);
  });

  test("a queue link or length broken", () => {
    const ram = anonWithSplitThp();
    ram.splitQueueLen = 2;
    expectProblem(ram, /queue: length says 2, walked 1/);
    const other = anonWithSplitThp();
    other.thpFlags[0] = 0;
    expectProblem(other, /block 0 \(ThpPte\): split PMD but thpFlags 0/);
  });

  test("half a 1 GiB hugetlb page", () => {
    const ram = hostRam({ backing: "hugetlbfs", hugetlbPageBytes: GiB }, 2 * GiB);
    write(ram, 0, PAGE);
    ram.blockState[3] = BlockState.None;
    expectProblem(ram, /hugetlb page at block 0: 511 of 512 blocks/);
  });

  test("an untouched resident page without a fill cause", () => {
    const ram = anonWithSplitThp();
    ram.blockCause[1] = FillCause.None;
    ram.touched[16] = 0; // block 1's first 32 pages were written: forget it
    expectProblem(ram, /block 1 \(ThpPmd\): 32 untouched resident pages, no fill cause/);
  });

  test("a touched page with no memory behind it", () => {
    const ram = hostRam({ backing: "anon", thp: { enabled: "never" } });
    write(ram, 0, PAGE);
    ram.touched[0] = 3;
    expectProblem(ram, /block 0 \(Pte\): 1 touched pages hold no memory/);
  });
});
