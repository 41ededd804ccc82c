// Alexander Duyck's proposal in the thread (2020-02-21, <CAKgT0UeZzcig…@mail.gmail.com>):
// inflate from the highest order (MAX_PAGE_ORDER) down to 0 and deflate from the lowest order
// up, one list per size, so that inflation pressures the guest to compact; requests are (pfn,
// order) pairs and the host discards each in one call. Option: the hypervisor discards only
// whole 2 MiB ranges while the guest balloon holds pages down to 4 KiB. The allocation flags
// are the model's choice (the proposal names none): movable with __GFP_NORETRY, i.e. one
// light pass of reclaim and async compaction per costly order.

import { MAX_PAGE_ORDER } from "../core/limits.ts";
import { __GFP_NORETRY, GFP_HIGHUSER_MOVABLE } from "../guest/gfp.ts";
import type { BalloonPolicy, BalloonPolicyOptions } from "./balloon_policy.ts";

export function highestOrderFirstPolicy(options: BalloonPolicyOptions = {}): BalloonPolicy {
  return {
    name: "highest-order-first",
    source: "Alexander Duyck, LKML 2020-02-21 and 2020-02-24",
    alloc: {
      name: "highest-order-first",
      orderMax: MAX_PAGE_ORDER,
      orderMin: 0,
      orderSteps: "descending",
      gfpForOrder: () => GFP_HIGHUSER_MOVABLE | __GFP_NORETRY,
      splitToBasePages: false,
      singleOrderPerRound: false,
      requestFormat: "pfnOrder",
    },
    hostHandling: "range",
    hostDiscardsWholeHugeOnly: options.hostDiscardsWholeHugeOnly ?? false,
  };
}
