// Hui Zhu's v4 "virtio_balloon: Add VIRTIO_BALLOON_F_CONT_PAGES to report continuous pages"
// (2020-07-16): fill_balloon tries orders from current_pages_order down to 0; at each order it
// allocates (order > 1: __GFP_RETRY_MAYFAIL, else __GFP_NORETRY; always movable), split_page()s
// the block into order-0 balloon pages (so balloon compaction still works) and sends the head
// PFN with the size on a second queue; a round that got pages at one order stops there.
// QEMU discards each (pfn, size) entry in one call.

import { HPAGE_PMD_ORDER } from "../core/limits.ts";
import { __GFP_NORETRY, __GFP_RETRY_MAYFAIL, GFP_HIGHUSER_MOVABLE } from "../guest/gfp.ts";
import type { BalloonPolicy, BalloonPolicyOptions } from "./balloon_policy.ts";

/** Zhu v4 fill_balloon_order: order > 1 retries hard, small orders take one light pass. */
export function contPagesGfp(order: number): number {
  return GFP_HIGHUSER_MOVABLE | (order > 1 ? __GFP_RETRY_MAYFAIL : __GFP_NORETRY);
}

export function contPagesPolicy(options: BalloonPolicyOptions = {}): BalloonPolicy {
  return {
    name: "cont-pages",
    source: "Hui Zhu, v4 VIRTIO_BALLOON_F_CONT_PAGES, 2020-07-16",
    alloc: {
      name: "cont-pages",
      // max_pages_order: QEMU offers the host THP order (the model's default).
      orderMax: options.contPagesOrderMax ?? HPAGE_PMD_ORDER,
      orderMin: 0,
      orderSteps: "descending",
      gfpForOrder: contPagesGfp,
      splitToBasePages: true,
      singleOrderPerRound: true,
      requestFormat: "pfnOrder",
    },
    hostHandling: "range",
    hostDiscardsWholeHugeOnly: false,
  };
}
