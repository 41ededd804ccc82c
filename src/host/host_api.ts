// The public face of the host model: everything outside src/host/ (the QEMU device models, the
// simulator, the checker's callers) imports from here. The model is pure: no clock, no I/O;
// callers pass time by calling hostKhugepagedScan every khugepaged.scanSleepMs, and map
// guest-physical addresses to RAMBlock offsets themselves.
//
//   const config = createHostConfig({ kernel: "6.1", memoryBytes, backing: "anon" });
//   const ram = createGuestRam(config, guestRamBytes / PAGE_SIZE);
//   hostGuestWrite(ram, page, count);             // the guest writes: host faults
//   ramBlockDiscardRange(ram, offsetBytes, len);  // QEMU gives memory back
//   hostSetPressure(ram, otherUsedBytes); hostReclaim(ram, bytesNeeded);
//   hostKhugepagedScan(ram, config.khugepaged.pagesToScan);
//   hostSnapshot(ram); hostBlockHuge(ram, block);

export { type DiscardResult, ramBlockDiscardRange } from "./discard.ts";
export {
  BlockState,
  createGuestRam,
  FillCause,
  type GuestRam,
  type HostCounters,
} from "./guest_ram.ts";
export {
  type HostBlockCounts,
  type HostSnapshot,
  hostBlockHuge,
  hostSnapshot,
  type ResidentBytesByCause,
} from "./host_accounting.ts";
export {
  createHostConfig,
  type HostBacking,
  type HostConfig,
  type HostConfigInput,
  HPAGE_PMD_SIZE,
  ramBlockPageBytes,
  validateHostConfig,
} from "./host_config.ts";
export { hostGuestWrite } from "./host_fault.ts";
export {
  HOST_KERNEL_VERSIONS,
  type HostKernelRules,
  type HostKernelVersion,
  hostKernelRules,
  isHostKernelVersion,
} from "./host_kernel.ts";
export { type HostKhugepagedResult, hostKhugepagedScan } from "./host_khugepaged.ts";
export { hostFreeBytes, hostSetPressure } from "./host_memory.ts";
export { hostReclaim } from "./host_reclaim.ts";
