// Hui Zhu's RFC "virtio_balloon: Add VIRTIO_BALLOON_F_THP_ORDER to handle THP spilt issue"
// (2020-03-12): every balloon page is an order-9 allocation with __GFP_HIGHMEM |
// __GFP_KSWAPD_RECLAIM | __GFP_RETRY_MAYFAIL | __GFP_NOWARN | __GFP_NOMEMALLOC: no
// __GFP_MOVABLE (so unmovable requests that take over whole pageblocks through fallback), no
// direct reclaim or compaction, and the balloon's movable ops are disabled (not migratable).
// Requests carry head PFNs; QEMU (thp-order=on) discards each 2 MiB as 512 4 KiB calls.

import { HPAGE_PMD_ORDER } from "../core/limits.ts";
import { __GFP_HIGHMEM, __GFP_KSWAPD_RECLAIM, __GFP_RETRY_MAYFAIL } from "../guest/gfp.ts";
import type { BalloonPolicy } from "./balloon_policy.ts";

/** VIRTIO_BALLOON_THP_ORDER's allocation flags (Zhu's RFC, fill_balloon). */
export const THP_ORDER_GFP = __GFP_HIGHMEM | __GFP_KSWAPD_RECLAIM | __GFP_RETRY_MAYFAIL;

export function thpOrderPolicy(): BalloonPolicy {
  return {
    name: "thp-order",
    source: "Hui Zhu, RFC VIRTIO_BALLOON_F_THP_ORDER, 2020-03-12",
    alloc: {
      name: "thp-order",
      orderMax: HPAGE_PMD_ORDER,
      orderMin: HPAGE_PMD_ORDER,
      orderSteps: "descending",
      gfpForOrder: () => THP_ORDER_GFP,
      splitToBasePages: false,
      singleOrderPerRound: false,
      requestFormat: "pfnOrder",
    },
    hostHandling: "pageByPage",
    hostDiscardsWholeHugeOnly: false,
  };
}
