// The host's configuration: its kernel, its RAM, how QEMU backs guest RAM, and the THP knobs.
//
// Theory of operation. createHostConfig fills the defaults the kernel and QEMU use and refuses
// anything the model cannot run (validateHostConfig lists every problem at once). The backings
// are the four ways QEMU gets guest RAM from the host:
// - "anon": -m / memory-backend-ram, private anonymous memory. QEMU madvises it MADV_HUGEPAGE
//   (ram_block_add → qemu_madvise(QEMU_MADV_HUGEPAGE), system/physmem.c), so THP is used when
//   thp.enabled is always or madvise.
// - "memfd": memory-backend-memfd, a shmem file on the kernel's internal mount. Its THP policy is
//   transparent_hugepage/shmem_enabled (default never, so no THP); QEMU's MADV_HUGEPAGE makes
//   "advise" count as yes (shmem_huge_enabled, mm/shmem.c).
// - "tmpfs-huge": memory-backend-file on a tmpfs mounted huge=always, mapped shared: a THP per
//   2 MiB whenever the host has one, whatever shmem_enabled says, except the emergency "deny".
// - "hugetlbfs": memory-backend-file on hugetlbfs: pages of hugetlbPageBytes from a pool sized
//   to cover guest RAM, reserved at boot, never split.
// qemu_ram_pagesize (the RAMBlock page size, semantics 6.2) is 4 KiB for all but hugetlbfs.
//
// Left out: 64 KiB-page hosts, MAP_PRIVATE file backings, shared anonymous RAM (MADV_REMOVE),
// memory-backend-ram share=on, guest_memfd, prealloc, and per-size (mTHP) knobs.

import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import {
  HOST_KERNEL_VERSIONS,
  type HostKernelVersion,
  isHostKernelVersion,
} from "./host_kernel.ts";

export const HOST_BACKINGS = ["anon", "memfd", "tmpfs-huge", "hugetlbfs"] as const;
export type HostBacking = (typeof HOST_BACKINGS)[number];

/** transparent_hugepage/enabled (Documentation/admin-guide/mm/transhuge.rst). */
export const THP_ENABLED_VALUES = ["always", "madvise", "never"] as const;
export type HostThpEnabled = (typeof THP_ENABLED_VALUES)[number];
/** transparent_hugepage/defrag. */
export const THP_DEFRAG_VALUES = ["always", "defer", "defer+madvise", "madvise", "never"] as const;
/** transparent_hugepage/shmem_enabled (shmem_huge: SHMEM_HUGE_* in mm/shmem.c). */
export const SHMEM_ENABLED_VALUES = [
  "always",
  "within_size",
  "advise",
  "never",
  "deny",
  "force",
] as const;
export type ShmemEnabled = (typeof SHMEM_ENABLED_VALUES)[number];

/** HPAGE_PMD_SIZE = 2 MiB (include/linux/huge_mm.h). */
export const HPAGE_PMD_SIZE = HPAGE_PMD_NR * PAGE_SIZE;
/** PUD_SIZE: the 1 GiB hugetlb page size on x86-64 (arch/x86/include/asm/pgtable_64_types.h). */
export const PUD_SIZE = 1 << 30;

export interface HostThpConfig {
  /** transparent_hugepage/enabled. */
  readonly enabled: HostThpEnabled;
  /** transparent_hugepage/defrag: decides whether a THP fault may reclaim directly. */
  readonly defrag: string;
  /** transparent_hugepage/shmem_enabled: the THP policy of memfd (the internal shm mount). */
  readonly shmemEnabled: ShmemEnabled;
}

export interface HostKhugepagedConfig {
  /** khugepaged/scan_sleep_millisecs: the caller scans this often. */
  readonly scanSleepMs: number;
  /** khugepaged/pages_to_scan: the budget of one scan. */
  readonly pagesToScan: number;
  /** khugepaged/max_ptes_none: empty PTEs (or missing page-cache pages) a collapse may fill. */
  readonly maxPtesNone: number;
}

export interface HostConfig {
  /** The host kernel; see host_kernel.ts for what differs. */
  readonly kernel: HostKernelVersion;
  /** Host RAM (MemTotal, treated as one zone). */
  readonly memoryBytes: number;
  /** How QEMU backs guest RAM. */
  readonly backing: HostBacking;
  /** hugetlbfs page size: 2 MiB or 1 GiB. Only used by the hugetlbfs backing. */
  readonly hugetlbPageBytes: number;
  readonly thp: HostThpConfig;
  readonly khugepaged: HostKhugepagedConfig;
  /** ram_block_discard_disable() is in force (vfio): discards are acknowledged and ignored. */
  readonly discardInhibited: boolean;
  /** Shmem THP splits that fail because of extra references, per 1000 (Hugh's caveat). */
  readonly shmemSplitFailPerMille: number;
  /** Seed of the PRNG that draws the failing splits. */
  readonly seed: number;
}

/** What a caller must give; everything else has the kernel's or QEMU's default. */
export interface HostConfigInput {
  readonly kernel: string;
  readonly memoryBytes: number;
  readonly backing: string;
  readonly hugetlbPageBytes?: number;
  readonly thp?: Partial<HostThpConfig>;
  readonly khugepaged?: Partial<HostKhugepagedConfig>;
  readonly discardInhibited?: boolean;
  readonly shmemSplitFailPerMille?: number;
  readonly seed?: number;
}

/** Defaults: khugepaged_init (mm/khugepaged.c), transhuge.rst, shmem_huge = SHMEM_HUGE_NEVER. */
export const HOST_CONFIG_DEFAULTS = {
  hugetlbPageBytes: HPAGE_PMD_SIZE,
  thp: { enabled: "madvise", defrag: "madvise", shmemEnabled: "never" },
  khugepaged: { scanSleepMs: 10000, pagesToScan: HPAGE_PMD_NR * 8, maxPtesNone: HPAGE_PMD_NR - 1 },
  discardInhibited: false,
  shmemSplitFailPerMille: 0,
  seed: 1,
} as const;

function oneOf(values: readonly string[], value: string): boolean {
  return values.includes(value);
}

function checkThp(thp: HostThpConfig, problems: string[]): void {
  if (!oneOf(THP_ENABLED_VALUES, thp.enabled)) {
    problems.push(`thp.enabled "${thp.enabled}": expected ${THP_ENABLED_VALUES.join(", ")}`);
  }
  if (!oneOf(THP_DEFRAG_VALUES, thp.defrag)) {
    problems.push(`thp.defrag "${thp.defrag}": expected ${THP_DEFRAG_VALUES.join(", ")}`);
  }
  if (!oneOf(SHMEM_ENABLED_VALUES, thp.shmemEnabled)) {
    problems.push(
      `thp.shmemEnabled "${thp.shmemEnabled}": expected ${SHMEM_ENABLED_VALUES.join(", ")}`,
    );
  }
}

function checkKhugepaged(khugepaged: HostKhugepagedConfig, problems: string[]): void {
  const { scanSleepMs, pagesToScan, maxPtesNone } = khugepaged;
  if (!Number.isInteger(scanSleepMs) || scanSleepMs < 0) {
    problems.push(`khugepaged.scanSleepMs ${scanSleepMs}: expected a whole number >= 0`);
  }
  // pages_to_scan_store refuses 0; max_ptes_none_store refuses values above HPAGE_PMD_NR - 1.
  if (!Number.isInteger(pagesToScan) || pagesToScan < 1) {
    problems.push(`khugepaged.pagesToScan ${pagesToScan}: expected a whole number >= 1`);
  }
  if (!Number.isInteger(maxPtesNone) || maxPtesNone < 0 || maxPtesNone > HPAGE_PMD_NR - 1) {
    problems.push(`khugepaged.maxPtesNone ${maxPtesNone}: expected 0..${HPAGE_PMD_NR - 1}`);
  }
}

/** Every problem with `config`, one sentence each; empty when the model can run it. */
export function validateHostConfig(config: HostConfig): string[] {
  const problems: string[] = [];
  if (!isHostKernelVersion(config.kernel)) {
    problems.push(`kernel "${config.kernel}": expected one of ${HOST_KERNEL_VERSIONS.join(", ")}`);
  }
  if (!Number.isSafeInteger(config.memoryBytes) || config.memoryBytes <= 0) {
    problems.push(`memoryBytes ${config.memoryBytes}: expected a positive whole number`);
  } else if (config.memoryBytes % PAGE_SIZE !== 0) {
    problems.push(`memoryBytes ${config.memoryBytes}: expected a multiple of ${PAGE_SIZE}`);
  }
  if (!oneOf(HOST_BACKINGS, config.backing)) {
    problems.push(`backing "${config.backing}": expected one of ${HOST_BACKINGS.join(", ")}`);
  }
  if (config.hugetlbPageBytes !== HPAGE_PMD_SIZE && config.hugetlbPageBytes !== PUD_SIZE) {
    problems.push(`hugetlbPageBytes ${config.hugetlbPageBytes}: expected 2 MiB or 1 GiB`);
  }
  checkThp(config.thp, problems);
  checkKhugepaged(config.khugepaged, problems);
  const perMille = config.shmemSplitFailPerMille;
  if (!Number.isInteger(perMille) || perMille < 0 || perMille > 1000) {
    problems.push(`shmemSplitFailPerMille ${perMille}: expected 0..1000`);
  }
  if (!Number.isInteger(config.seed)) problems.push(`seed ${config.seed}: expected an integer`);
  return problems;
}

/** A full HostConfig from `input` and the defaults; throws a RangeError listing all problems. */
export function createHostConfig(input: HostConfigInput): HostConfig {
  const config = {
    kernel: input.kernel as HostKernelVersion,
    memoryBytes: input.memoryBytes,
    backing: input.backing as HostBacking,
    hugetlbPageBytes: input.hugetlbPageBytes ?? HOST_CONFIG_DEFAULTS.hugetlbPageBytes,
    thp: { ...HOST_CONFIG_DEFAULTS.thp, ...input.thp },
    khugepaged: { ...HOST_CONFIG_DEFAULTS.khugepaged, ...input.khugepaged },
    discardInhibited: input.discardInhibited ?? HOST_CONFIG_DEFAULTS.discardInhibited,
    shmemSplitFailPerMille:
      input.shmemSplitFailPerMille ?? HOST_CONFIG_DEFAULTS.shmemSplitFailPerMille,
    seed: input.seed ?? HOST_CONFIG_DEFAULTS.seed,
  } satisfies HostConfig;
  const problems = validateHostConfig(config);
  if (problems.length > 0) throw new RangeError(`bad host config: ${problems.join("; ")}`);
  return config;
}

/** qemu_ram_pagesize (semantics 6.2): the hugetlbfs page size, else the host page size. */
export function ramBlockPageBytes(config: HostConfig): number {
  return config.backing === "hugetlbfs" ? config.hugetlbPageBytes : PAGE_SIZE;
}

/** rb->fd != -1: every backing but private anonymous memory has a file descriptor. */
export function backingHasFd(config: HostConfig): boolean {
  return config.backing !== "anon";
}

/** The backing is shmem (page cache of a tmpfs file): memfd or tmpfs-huge. */
export function backingIsShmem(config: HostConfig): boolean {
  return config.backing === "memfd" || config.backing === "tmpfs-huge";
}
