// Whether guest RAM may get transparent huge pages on this host, and whether khugepaged runs:
// the host kernel's policy checks, reduced to what QEMU's one RAMBlock needs.
//
// Theory of operation. QEMU madvises all guest RAM MADV_HUGEPAGE (ram_block_add,
// system/physmem.c), so the VMA has VM_HUGEPAGE and "madvise" counts as yes everywhere. Anon
// THP: transparent_hugepage/enabled always or madvise (hugepage_vma_check /
// thp_vma_allowable_order, mm/huge_memory.c). Shmem THP: shmem_huge_enabled (mm/shmem.c) for a
// memfd on the internal mount follows shmem_enabled; a tmpfs mounted huge=always always gets
// THPs unless shmem_enabled is "deny". Hugetlbfs never has THPs. A host with less than 512 MiB
// has no anon THP and no khugepaged at all (hugepage_init returns early).
//
// Left out: prctl(PR_SET_THP_DISABLE), VM_NOHUGEPAGE, the per-size mTHP knobs, and
// CONFIG_READ_ONLY_THP_FOR_FS (the RAMBlock is never a read-only file).

import type { HostConfig } from "./host_config.ts";
import type { HostKernelRules } from "./host_kernel.ts";

/** hugepage_init (mm/huge_memory.c): below 512 MiB of RAM transparent_hugepage_flags = 0. */
export const THP_MIN_HOST_BYTES = 512 * 1024 * 1024;

/** Anon THP for QEMU's MADV_HUGEPAGE RAM: enabled is always or madvise. */
export function anonThpEnabled(config: HostConfig): boolean {
  return config.memoryBytes >= THP_MIN_HOST_BYTES && config.thp.enabled !== "never";
}

/** shmem_huge_enabled (mm/shmem.c) for the backing's file and QEMU's VM_HUGEPAGE mapping. */
export function shmemThpEnabled(config: HostConfig): boolean {
  const policy = config.thp.shmemEnabled;
  if (config.backing === "tmpfs-huge") return policy !== "deny";
  if (config.backing !== "memfd") return false;
  // SHMEM_HUGE_WITHIN_SIZE: QEMU ftruncates the memfd to the RAM size, so every whole block
  // lies within i_size; SHMEM_HUGE_ADVISE: the VMA is VM_HUGEPAGE.
  return (
    policy === "always" || policy === "within_size" || policy === "advise" || policy === "force"
  );
}

/** THP may back the RAMBlock (at fault and by collapse), whatever its backing. */
export function ramThpEnabled(config: HostConfig): boolean {
  if (config.backing === "anon") return anonThpEnabled(config);
  return shmemThpEnabled(config);
}

/**
 * khugepaged_enabled / hugepage_pmd_enabled (mm/khugepaged.c): the thread runs while anon THP is
 * always or madvise; from khugepagedForShmem also while shmem THP is enabled for the internal
 * mount (shmem_hpage_pmd_enabled: shmem_enabled is neither never nor deny).
 */
export function khugepagedRunning(config: HostConfig, rules: HostKernelRules): boolean {
  if (config.memoryBytes < THP_MIN_HOST_BYTES) return false;
  if (config.thp.enabled !== "never") return true;
  const shmem = config.thp.shmemEnabled;
  return rules.khugepagedForShmem && shmem !== "never" && shmem !== "deny";
}

/**
 * vma_thp_gfp_mask (mm/huge_memory.c) for a VM_HUGEPAGE VMA: defrag always, defer+madvise and
 * madvise allow direct reclaim (and so the deferred split shrinker) for a THP fault; defer and
 * never do not.
 */
export function thpFaultDirectReclaim(config: HostConfig): boolean {
  const defrag = config.thp.defrag;
  return defrag === "always" || defrag === "defer+madvise" || defrag === "madvise";
}
