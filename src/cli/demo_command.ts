// `balloonlab demo`: the guest model in one screen. Fragments a 2 GiB guest the way a busy
// machine does (files read into the page cache between slab allocations, then half the files
// deleted), prints /proc/buddyinfo, compacts it (echo 1 > /proc/sys/vm/compact_memory) and prints
// it again with what compaction did.
import type { Command } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import { pageblock_order } from "../core/limits.ts";
import { compactMemory } from "../guest/compaction.ts";
import { fragmentationIndex } from "../guest/fragmentation_index.ts";
import { isKernelVersion, KERNEL_VERSIONS } from "../guest/kernel_version.ts";
import { VmEvent } from "../guest/vm_event.ts";
import { formatBuddyinfo } from "../metrics/proc_views.ts";
import { createGuestSim, fragmentGuest } from "../sim/guest_sim.ts";

const GiB = 1024 * 1024 * 1024;

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("fragment a guest, print its /proc/buddyinfo, compact it, print it again")
    .option("--kernel <version>", `guest kernel behaviour (${KERNEL_VERSIONS.join(", ")})`, "6.1")
    .option("--seed <n>", "random seed", "1")
    .action((options) => {
      if (!isKernelVersion(options.kernel)) {
        throw new InputError({
          file: "<argv>",
          field: "--kernel",
          message: `expected one of ${KERNEL_VERSIONS.join(", ")}, got "${options.kernel}"`,
        });
      }
      const seed = Number(options.seed);
      if (!Number.isInteger(seed)) {
        throw new InputError({ file: "<argv>", field: "--seed", message: "expected an integer" });
      }
      process.stdout.write(runDemo(options.kernel, seed));
    });
}

function fragmentationLine(text: string, sim: ReturnType<typeof createGuestSim>): string {
  const parts = sim.memory.zones.map(
    (zone) => `${zone.name} ${(fragmentationIndex(zone, pageblock_order) / 1000).toFixed(3)}`,
  );
  return `${text} extfrag_index at order 9 (2 MiB): ${parts.join(", ")}\n`;
}

export function runDemo(kernel: string, seed: number): string {
  const sim = createGuestSim({
    memoryBytes: 2 * GiB,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled: "always",
    thpDefrag: "madvise",
    initOnAlloc: true,
  });
  let out = `balloonlab demo: a 2 GiB guest, Linux ${kernel} behaviour, seed ${seed}\n\n`;
  fragmentGuest(sim, seed);
  out += "After reading files between slab allocations and deleting half of the files:\n";
  out += "$ cat /proc/buddyinfo\n";
  out += formatBuddyinfo(sim.memory);
  out += fragmentationLine("\n", sim);
  const events = sim.memory.events;
  const migratedBefore = events[VmEvent.pgmigrate_success]!;
  compactMemory(sim.memory);
  out += "\n$ echo 1 > /proc/sys/vm/compact_memory\n$ cat /proc/buddyinfo\n";
  out += formatBuddyinfo(sim.memory);
  out += fragmentationLine("\n", sim);
  out += `pgmigrate_success ${events[VmEvent.pgmigrate_success]! - migratedBefore}, `;
  out += `compact_migrate_scanned ${events[VmEvent.compact_migrate_scanned]}, `;
  out += `compact_free_scanned ${events[VmEvent.compact_free_scanned]}\n`;
  out +=
    "\nPageblocks holding slab pages cannot be emptied: their free pages stay below order 9.\n";
  return out;
}
