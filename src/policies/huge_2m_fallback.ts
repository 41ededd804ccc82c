// Huge-page ballooning (HUB, MEMSYS'18) with David Hildenbrand's demand from the thread
// (2020-02-24): take 2 MiB blocks while the guest has them free (no reclaim, no compaction:
// GFP_TRANSHUGE_LIGHT's reclaim bits removed), then fall back to order-0 movable pages so that
// the balloon keeps real pressure. Requests are (pfn, order) pairs, one discard per entry.

import { HPAGE_PMD_ORDER } from "../core/limits.ts";
import { __GFP_RECLAIM, GFP_HIGHUSER_MOVABLE } from "../guest/gfp.ts";
import type { BalloonPolicy } from "./balloon_policy.ts";
import { BALLOON_PAGE_GFP } from "./linux_4k.ts";

/** Free 2 MiB blocks only: movable, no direct reclaim, no kswapd (GFP_TRANSHUGE_LIGHT-like). */
export const HUGE_BALLOON_GFP = GFP_HIGHUSER_MOVABLE & ~__GFP_RECLAIM;

export function huge2mFallbackPolicy(): BalloonPolicy {
  return {
    name: "huge-2m-fallback",
    source: "HUB (MEMSYS'18) with Hildenbrand's fallback, LKML 2020-02-24",
    alloc: {
      name: "huge-2m-fallback",
      orderMax: HPAGE_PMD_ORDER,
      orderMin: 0,
      orderSteps: "maxThenMin",
      gfpForOrder: (order) => (order > 0 ? HUGE_BALLOON_GFP : BALLOON_PAGE_GFP),
      splitToBasePages: false,
      singleOrderPerRound: false,
      requestFormat: "pfnOrder",
    },
    hostHandling: "range",
    hostDiscardsWholeHugeOnly: false,
  };
}
