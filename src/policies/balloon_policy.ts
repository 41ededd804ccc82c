// The shared shape of a balloon policy: how the guest allocates balloon memory and formats its
// requests (BalloonAllocPolicy, the guest driver's side), and how QEMU turns a request into
// discards of host memory. One file per proposal in this folder; `balloon_policies.ts` is the
// literal table of them, by the names scenario files use (a contract: never rename).

import type { BalloonAllocPolicy } from "../guest/balloon_driver.ts";

export const BALLOON_POLICY_NAMES = [
  "linux-4k",
  "thp-order",
  "cont-pages",
  "highest-order-first",
  "huge-2m-fallback",
  "addr-len",
] as const;
export type BalloonPolicyName = (typeof BALLOON_POLICY_NAMES)[number];

/**
 * What QEMU does with an inflate entry:
 * - "pageByPage": balloon_inflate_page for every 4 KiB (one discard each, or the pbp tracker
 *   when the RAMBlock's page is larger);
 * - "range": one ram_block_discard_range per entry (the proposals' new queues).
 */
export type HostHandling = "pageByPage" | "range";

export interface BalloonPolicy {
  readonly name: BalloonPolicyName;
  /** Where the proposal comes from, for reports. */
  readonly source: string;
  readonly alloc: BalloonAllocPolicy;
  readonly hostHandling: HostHandling;
  /**
   * Duyck's variant: the host discards only the whole 2 MiB ranges of an entry while the guest
   * balloon holds pages down to 4 KiB (the rest stays backed).
   */
  readonly hostDiscardsWholeHugeOnly: boolean;
}

/** Options a scenario can set for the policies that take them. */
export interface BalloonPolicyOptions {
  /** cont-pages: max_pages_order (the host THP order by default). */
  readonly contPagesOrderMax?: number;
  /** addr-len: orders of alloc_page_range. */
  readonly addrLenOrderMin?: number;
  readonly addrLenOrderMax?: number;
  /** highest-order-first: the host discards whole 2 MiB only. */
  readonly hostDiscardsWholeHugeOnly?: boolean;
}
