// Every balloon policy by the name scenario files use (a contract: names are never renamed).

import { assert } from "../core/assert.ts";
import { addrLenPolicy } from "./addr_len.ts";
import {
  BALLOON_POLICY_NAMES,
  type BalloonPolicy,
  type BalloonPolicyName,
  type BalloonPolicyOptions,
} from "./balloon_policy.ts";
import { contPagesPolicy } from "./cont_pages.ts";
import { highestOrderFirstPolicy } from "./highest_order_first.ts";
import { huge2mFallbackPolicy } from "./huge_2m_fallback.ts";
import { linux4kPolicy } from "./linux_4k.ts";
import { thpOrderPolicy } from "./thp_order.ts";

const POLICY_FACTORIES: Record<
  BalloonPolicyName,
  (options: BalloonPolicyOptions) => BalloonPolicy
> = {
  "linux-4k": linux4kPolicy,
  "thp-order": thpOrderPolicy,
  "cont-pages": contPagesPolicy,
  "highest-order-first": highestOrderFirstPolicy,
  "huge-2m-fallback": huge2mFallbackPolicy,
  "addr-len": addrLenPolicy,
};

export function isBalloonPolicyName(name: string): name is BalloonPolicyName {
  return (BALLOON_POLICY_NAMES as readonly string[]).includes(name);
}

export function balloonPolicy(name: string, options: BalloonPolicyOptions = {}): BalloonPolicy {
  assert(isBalloonPolicyName(name), () => `unknown balloon policy ${name}`);
  return POLICY_FACTORIES[name](options);
}
