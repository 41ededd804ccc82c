// Counts of the work balloon operations do, collected where the work happens (the devices,
// the guest driver's rounds, the host model's counters) and turned into simulated time by the
// cost model (src/sim/cost_model.ts). Every field is a count of events, never a time.

/** The counts a step produced; every field is a count of events, never a time. */
export interface WorkCounts {
  guestAllocCalls: number;
  guestAllocPages: number;
  guestZeroPages: number;
  guestMigratePages: number;
  guestIsolatePages: number;
  virtqueueRequests: number;
  virtqueueEntries: number;
  hostTranslations: number;
  hostSyscalls: number;
  hostFreedPages4k: number;
  hostFreedPages2m: number;
  hostFaults4k: number;
  hostFaults2m: number;
  hostCollapses: number;
}

export function createWorkCounts(): WorkCounts {
  return {
    guestAllocCalls: 0,
    guestAllocPages: 0,
    guestZeroPages: 0,
    guestMigratePages: 0,
    guestIsolatePages: 0,
    virtqueueRequests: 0,
    virtqueueEntries: 0,
    hostTranslations: 0,
    hostSyscalls: 0,
    hostFreedPages4k: 0,
    hostFreedPages2m: 0,
    hostFaults4k: 0,
    hostFaults2m: 0,
    hostCollapses: 0,
  };
}

/** Adds `source` into `target`, field by field. */
export function addWorkCounts(target: WorkCounts, source: WorkCounts): void {
  for (const key of Object.keys(target) as (keyof WorkCounts)[]) target[key] += source[key];
}
