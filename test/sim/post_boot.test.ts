// The after-boot rule (src/guest/post_boot.ts): a VM booted from a config gets the kernel's
// allocations made before userspace starts, written on the host; 0 turns it off and an
// already-built guest (an import) is left as it is.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { pageblock_order } from "../../src/core/limits.ts";
import { NO_PFN } from "../../src/guest/frame_table.ts";
import { createGuestMemory, type GuestConfig } from "../../src/guest/guest_memory.ts";
import { DEFAULT_POST_BOOT_KERNEL_BYTES, postBootParts } from "../../src/guest/post_boot.ts";
import { testBit } from "../../src/host/bitmap.ts";
import { hostSnapshot } from "../../src/host/host_accounting.ts";
import { meminfoKb } from "../../src/metrics/proc_views.ts";
import { createVmSim, type VmConfig } from "../../src/sim/vm_sim.ts";
import { ramPageOfPfn } from "../../src/virtio/guest_ram_map.ts";

const MiB = 1024 * 1024;

function guestConfig(postBootKernelBytes?: number): GuestConfig {
  return {
    memoryBytes: 640 * MiB,
    machine: "pc",
    kernel: "6.1",
    cpus: 1,
    // Debian's default: khugepaged raises min_free_kbytes, so per-cpu high (the low watermark)
    // is about 9000 pages, above what the boot leaves on the lists (as on the real guest).
    thpEnabled: "madvise",
    thpDefrag: "madvise",
    initOnAlloc: true,
    postBootKernelBytes,
  };
}

function vmConfig(guest: GuestConfig): VmConfig {
  return {
    guest,
    host: { kernel: "6.1", memoryBytes: 2048 * MiB, backing: "anon", thp: { enabled: "never" } },
    balloon: {
      policy: "linux-4k",
      deflateOnOom: false,
      freePageReporting: { enabled: false, order: pageblock_order },
      thpSizeKnown: false,
    },
  };
}

describe("after-boot kernel allocations", () => {
  test("the default is the measured 38436 kB, split as the real guest's meminfo", () => {
    expect(DEFAULT_POST_BOOT_KERNEL_BYTES).toBe(38436 * 1024);
    const pages = postBootParts(DEFAULT_POST_BOOT_KERNEL_BYTES).map((each) => each.pages);
    expect(pages.reduce((sum, each) => sum + each, 0)).toBe(38436 / 4);
    expect(postBootParts(0)).toEqual([]);
  });

  test("a booted VM has them in use and host-resident; 0 gives a guest with all RAM free", () => {
    const off = createVmSim(vmConfig(guestConfig(0)));
    const on = createVmSim(vmConfig(guestConfig()));
    const offInfo = meminfoKb(off.guest.memory);
    const onInfo = meminfoKb(on.guest.memory);
    expect(offInfo.MemFree).toBe(offInfo.MemTotal);
    expect(onInfo.Shmem).toBe(2952);
    expect(onInfo.SReclaimable).toBe(9000);
    // Under the counters the real guest shows them: slab, vmalloc (modules, stacks), page tables;
    // the direct alloc_pages users have none.
    expect(onInfo.SUnreclaim).toBe(6036);
    expect(onInfo.VmallocUsed).toBe(7260);
    expect(onInfo.PageTables).toBe(48);
    expect(onInfo.Slab).toBe(6036 + 9000);
    // MemFree leaves out the per-cpu lists: the 10508 kB the boot freed through them (measured
    // there on the real guest) and what the allocations left, at most 4 MiB more.
    const usedKb = offInfo.MemFree! - onInfo.MemFree!;
    expect(usedKb).toBeGreaterThanOrEqual(38436);
    expect(usedKb).toBeLessThanOrEqual(38436 + 4096);
    const dma32 = on.guest.memory.zones.findIndex((zone) => zone.name === "DMA32");
    const pcpPages = on.guest.memory.pcp[dma32]![0]!.count;
    expect(pcpPages).toBeGreaterThanOrEqual(10508 / 4);
    expect(pcpPages).toBeLessThan(10508 / 4 + 1024);
    // Every page they hold was written, so it is host-resident; resident memory grows by less
    // than they hold, since some land in frames the boot had written already (bootWritten).
    const memory = on.guest.memory;
    let held = 0;
    for (const owner of memory.owners.owners) {
      if (!owner.name.startsWith("boot-")) continue;
      for (const pfn of owner.pages) {
        if (pfn === NO_PFN) continue;
        held++;
        expect(testBit(on.ram.resident, ramPageOfPfn(on.map, pfn))).toBe(true);
      }
    }
    expect(held).toBe((38436 - 10508) / 4);
    const grownBytes = hostSnapshot(on.ram).residentBytes - hostSnapshot(off.ram).residentBytes;
    expect(grownBytes).toBeGreaterThan(0);
    expect(grownBytes).toBeLessThanOrEqual(38436 * 1024);
    expect(checkGuestMemory(on.guest.memory)).toEqual([]);
    expect(checkHostRam(on.ram)).toEqual([]);
  });

  test("an already-built guest is not given them again", () => {
    const memory = createGuestMemory(guestConfig());
    const vm = createVmSim({ ...vmConfig(memory.config), memory });
    const info = meminfoKb(vm.guest.memory);
    expect(info.MemFree).toBe(info.MemTotal);
  });
});
