// Linux's virtio-balloon as shipped (drivers/virtio/virtio_balloon.c, balloon_page_alloc):
// order-0 movable pages with __GFP_NORETRY (one light reclaim pass, no compaction for order 0,
// no OOM), 256 4 KiB PFNs per request, LIFO deflate, pages migratable by balloon compaction.
// QEMU handles each PFN with balloon_inflate_page (hw/virtio/virtio-balloon.c).

import { __GFP_NORETRY, GFP_HIGHUSER_MOVABLE } from "../guest/gfp.ts";
import type { BalloonPolicy } from "./balloon_policy.ts";

/** balloon_page_alloc: GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN. */
export const BALLOON_PAGE_GFP = GFP_HIGHUSER_MOVABLE | __GFP_NORETRY;

export function linux4kPolicy(): BalloonPolicy {
  return {
    name: "linux-4k",
    source: "Linux virtio_balloon.c fill_balloon (mainline)",
    alloc: {
      name: "linux-4k",
      orderMax: 0,
      orderMin: 0,
      orderSteps: "descending",
      gfpForOrder: () => BALLOON_PAGE_GFP,
      splitToBasePages: false,
      singleOrderPerRound: false,
      requestFormat: "pfn",
    },
    hostHandling: "pageByPage",
    hostDiscardsWholeHugeOnly: false,
  };
}
