// Michael S. Tsirkin's idea in the thread (2020-02-21): inflate with (address, length) pairs
// instead of PFNs, so that a whole THP goes in one request; the guest allocates any order in
// [min, max] (alloc_page_range). Physically adjacent blocks of one request merge into one
// range; QEMU discards each range in one call. Flags are the model's choice: movable with
// __GFP_NORETRY, as highest-order-first.

import { MAX_PAGE_ORDER } from "../core/limits.ts";
import { __GFP_NORETRY, GFP_HIGHUSER_MOVABLE } from "../guest/gfp.ts";
import type { BalloonPolicy, BalloonPolicyOptions } from "./balloon_policy.ts";

export function addrLenPolicy(options: BalloonPolicyOptions = {}): BalloonPolicy {
  return {
    name: "addr-len",
    source: "Michael S. Tsirkin, LKML 2020-02-21",
    alloc: {
      name: "addr-len",
      orderMax: options.addrLenOrderMax ?? MAX_PAGE_ORDER,
      orderMin: options.addrLenOrderMin ?? 0,
      orderSteps: "descending",
      gfpForOrder: () => GFP_HIGHUSER_MOVABLE | __GFP_NORETRY,
      splitToBasePages: false,
      singleOrderPerRound: false,
      requestFormat: "range",
    },
    hostHandling: "range",
    hostDiscardsWholeHugeOnly: false,
  };
}
