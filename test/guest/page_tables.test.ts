// Goal: a process's PTE table pages are modelled as the kernel allocates them: one unmovable
// order-0 page per 2 MiB range with a 4 KiB mapping (pte_alloc), one deposited per THP fault
// (pgtable_trans_huge_deposit) and kept through a PMD split, freed with zap_huge_pmd or at exit
// (free_pgtables), and counted by meminfo PageTables and vmstat nr_page_table_pages. Method: run
// 64 MiB memhogs (THP and 4 KiB) on a small 6.1 guest, compare the /proc counters with their
// value before the process (the boot's own page tables stay), and run the independent checker
// after every step.
import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createProcess,
  exitProcess,
  freeRange,
  PMD_HUGE,
  PMD_NONE,
  PMD_TABLE,
  type Process,
  touchProcess,
} from "../../src/guest/anon.ts";
import { FRAME_KIND_MASK, FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";
import { createKhugepagedState, khugepagedScan } from "../../src/guest/khugepaged.ts";
import { KernelUse } from "../../src/guest/owners.ts";
import { createThpState } from "../../src/guest/thp.ts";
import { meminfoKb, vmstatRecord } from "../../src/metrics/proc_views.ts";

const MiB = 1024 * 1024;

function guest(thpEnabled: "always" | "never", kernel = "6.1"): GuestMemory {
  return createGuestMemory({
    memoryBytes: 512 * MiB,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled,
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

function expectConsistent(memory: GuestMemory): void {
  expect(checkGuestMemory(memory)).toEqual([]);
}

/** Every slot with a table page holds an unmovable Kernel frame of the PageTable owner. */
function expectTablesWellFormed(memory: GuestMemory, process: Process): void {
  const tables = process.pageTables;
  expect(tables.kind).toBe(FrameKind.Kernel);
  expect(tables.kernelUse).toBe(KernelUse.PageTable);
  let present = 0;
  for (let range = 0; range < process.pmd.length; range++) {
    const pfn = tables.pages[range]!;
    expect(pfn !== NO_PFN).toBe(process.pmd[range] !== 0);
    if (pfn === NO_PFN) continue;
    present++;
    expect(memory.table.state[pfn]! & FRAME_KIND_MASK).toBe(FrameKind.Kernel);
  }
  expect(tables.residentPages).toBe(present);
}

function pageTablesKb(memory: GuestMemory): number {
  return meminfoKb(memory).PageTables!;
}

describe("process page tables (PTE pages)", () => {
  test("a 64 MiB THP memhog deposits 32 tables; a partial MADV_DONTNEED keeps them; exit frees all", () => {
    const memory = guest("always");
    const thpState = createThpState(memory);
    const bootKb = pageTablesKb(memory);
    const bootPages = vmstatRecord(memory).nr_page_table_pages!;
    const process = createProcess(memory, "memhog", 64 * MiB, { thp: true, thpState });
    expect(touchProcess(memory, process, 0, process.sizePages)).toBe(0);
    expect(process.owner.hugePages).toBe(process.sizePages);
    expect(process.pageTables.residentPages).toBe(32);
    expect(pageTablesKb(memory) - bootKb).toBe(128);
    expect(vmstatRecord(memory).nr_page_table_pages! - bootPages).toBe(32);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);

    // Part of one THP: the PMD is split, the deposit becomes the range's PTE table.
    freeRange(memory, process, 0, 16);
    expect(process.pmd[0]).toBe(PMD_TABLE);
    expect(process.pageTables.residentPages).toBe(32);
    expect(pageTablesKb(memory) - bootKb).toBe(128);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);

    // A whole THP: zap_huge_pmd frees its deposited table with it.
    freeRange(memory, process, HPAGE_PMD_NR, HPAGE_PMD_NR);
    expect(process.pageTables.residentPages).toBe(31);
    expect(pageTablesKb(memory) - bootKb).toBe(124);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);

    // Touching the zapped range again faults a THP and deposits a new table.
    expect(touchProcess(memory, process, HPAGE_PMD_NR, HPAGE_PMD_NR)).toBe(0);
    expect(process.pageTables.residentPages).toBe(32);
    expectConsistent(memory);

    exitProcess(memory, process);
    expect(process.pageTables.residentPages).toBe(0);
    expect(process.pageTables.released).toBe(true);
    expect(pageTablesKb(memory)).toBe(bootKb);
    expect(vmstatRecord(memory).nr_page_table_pages).toBe(bootPages);
    expectConsistent(memory);
  });

  test("a 64 MiB 4 KiB memhog allocates one PTE table per 2 MiB, before the range's pages", () => {
    const memory = guest("never");
    const thpState = createThpState(memory);
    const bootKb = pageTablesKb(memory);
    const process = createProcess(memory, "memhog", 64 * MiB, { thp: false, thpState });
    // Half of the first range: one table already.
    expect(touchProcess(memory, process, 0, HPAGE_PMD_NR / 2)).toBe(0);
    expect(process.pageTables.residentPages).toBe(1);
    expectConsistent(memory);
    expect(touchProcess(memory, process, 0, process.sizePages)).toBe(0);
    expect(process.owner.hugePages).toBe(0);
    expect(process.owner.residentPages).toBe((64 * MiB) / PAGE_SIZE);
    expect(process.pageTables.residentPages).toBe(32);
    expect(pageTablesKb(memory) - bootKb).toBe(128);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);

    // MADV_DONTNEED of a whole range frees its pages but keeps the table on 6.1 (no pt reclaim).
    freeRange(memory, process, 0, HPAGE_PMD_NR);
    expect(process.pageTables.residentPages).toBe(32);
    expectConsistent(memory);

    exitProcess(memory, process);
    expect(process.pageTables.residentPages).toBe(0);
    expect(pageTablesKb(memory)).toBe(bootKb);
    expectConsistent(memory);
  });

  test("khugepaged's collapse deposits the range's existing table: no table allocated or freed", () => {
    const memory = guest("always");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "memhog", 8 * MiB, { thp: true, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    freeRange(memory, process, 0, 16);
    const table = process.pageTables.pages[0]!;
    expect(process.pmd[0]).toBe(PMD_TABLE);
    const state = createKhugepagedState();
    expect(khugepagedScan(memory, state, thpState, [process]).collapsed).toBe(1);
    expect(process.pmd[0]).toBe(PMD_HUGE);
    expect(process.pageTables.pages[0]).toBe(table);
    expect(process.pageTables.residentPages).toBe(4);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);
    exitProcess(memory, process);
    expectConsistent(memory);
  });

  test("6.18 reclaims the empty PTE table of a wholly zapped range (try_to_free_pte)", () => {
    const memory = guest("never", "6.18");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "memhog", 8 * MiB, { thp: false, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    expect(process.pageTables.residentPages).toBe(4);
    freeRange(memory, process, 0, HPAGE_PMD_NR);
    expect(process.pmd[0]).toBe(PMD_NONE);
    expect(process.pageTables.residentPages).toBe(3);
    expectTablesWellFormed(memory, process);
    expectConsistent(memory);
    exitProcess(memory, process);
    expectConsistent(memory);
  });
});
