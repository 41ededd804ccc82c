// An independent checker of the host's guest RAM model (src/host/guest_ram.ts): it recomputes
// from the page bitmaps and the per-block arrays everything the counters claim, walks the
// deferred split queue, recounts the hugetlb pool, and checks the rules every block state must
// keep. Each problem names the block (or page) and both values, the kernel's bad_reason style.
// O(pages / 32): tests and --paranoid runs switch it on.
//
// Rules per block (anon / shmem / hugetlbfs):
// - the resident and own counts match the bitmaps; allocated >= resident;
// - None: nothing resident (anon: nothing at all); Pte: anon own ⇔ resident, shmem resident ⊆
//   own; ThpPmd: the whole block resident, no own page; ThpPte: anon: own ⊆ resident, 1..511
//   subpages still mapped, queued as partially mapped; shmem: no own page; ThpUnmapped (shmem
//   only): nothing resident, no own page; Hugetlb (hugetlbfs only): all resident, and all or
//   none of the blocks of one hugetlb page;
// - compound pages only in whole blocks; no bit beyond the last page;
// - touched ⇒ allocated (anon, hugetlbfs: resident; shmem: own page or compound);
// - a resident page the guest never wrote lies in a block filled by a THP fault, a collapse or
//   a hugetlb fault;
// - the queue holds exactly the blocks flagged THP_QUEUED, anon THPs only, in consistent links;
//   before v6.12 only partially mapped ones.

import { HPAGE_PMD_NR } from "../core/limits.ts";
import { popcount32, WORDS_PER_BLOCK } from "../host/bitmap.ts";
import {
  BLOCK_STATE_NAMES,
  BlockState,
  blockAllocatedPages,
  blockPages,
  FillCause,
  type GuestRam,
  NO_BLOCK,
  stateHoldsCompound,
  THP_PARTIALLY_MAPPED,
  THP_QUEUED,
} from "../host/guest_ram.ts";

const PROBLEMS_MAX = 20;

class Problems {
  readonly list: string[] = [];
  add(text: string): void {
    if (this.list.length < PROBLEMS_MAX) this.list.push(text);
  }
}

/** What the bitmaps say about one block. */
interface BlockBits {
  resident: number;
  own: number;
  residentOwn: number;
  /** Touched pages that hold no memory. */
  touchedUnbacked: number;
  /** Resident pages the guest never wrote. */
  untouchedResident: number;
  /** Set bits beyond the last page of the RAMBlock. */
  beyondEnd: number;
}

function blockBits(ram: GuestRam, block: number, compound: boolean): BlockBits {
  const bits: BlockBits = {
    resident: 0,
    own: 0,
    residentOwn: 0,
    touchedUnbacked: 0,
    untouchedResident: 0,
    beyondEnd: 0,
  };
  const shmem = ram.config.backing === "memfd" || ram.config.backing === "tmpfs-huge";
  const base = block * WORDS_PER_BLOCK;
  const valid = blockPages(ram, block);
  for (let i = 0; i < WORDS_PER_BLOCK; i++) {
    const r = ram.resident[base + i]!;
    const o = ram.own[base + i]!;
    const t = ram.touched[base + i]!;
    const inside = i * 32 >= valid ? 0 : valid - i * 32 >= 32 ? -1 : (1 << (valid - i * 32)) - 1;
    bits.beyondEnd += popcount32((r | o | t) & ~inside);
    bits.resident += popcount32(r);
    bits.own += popcount32(o);
    bits.residentOwn += popcount32(r & o);
    const backed = shmem ? (compound ? -1 : o) : r;
    bits.touchedUnbacked += popcount32(t & ~backed);
    bits.untouchedResident += popcount32(r & ~t);
  }
  return bits;
}

function stateAllowed(ram: GuestRam, state: number): boolean {
  switch (ram.config.backing) {
    case "anon":
      return state <= BlockState.ThpPte;
    case "hugetlbfs":
      return state === BlockState.None || state === BlockState.Hugetlb;
    default:
      return state <= BlockState.ThpUnmapped;
  }
}

/** The rules that depend on the block state. */
function checkState(ram: GuestRam, block: number, bits: BlockBits, problems: Problems): void {
  const state = ram.blockState[block]!;
  const name = BLOCK_STATE_NAMES[state] ?? String(state);
  const where = `block ${block} (${name})`;
  const anon = ram.config.backing === "anon";
  const shmem = ram.config.backing === "memfd" || ram.config.backing === "tmpfs-huge";
  const pages = blockPages(ram, block);
  if (!stateAllowed(ram, state))
    problems.add(`${where}: state not valid for ${ram.config.backing}`);
  if (stateHoldsCompound(state) && pages !== HPAGE_PMD_NR) {
    problems.add(`${where}: compound page in a partial block of ${pages} pages`);
  }
  // Own pages: in a PTE table; unmapped in the page cache (shmem); beside a split THP (anon).
  const ownAllowed =
    state === BlockState.Pte ||
    (state === BlockState.None && shmem) ||
    (state === BlockState.ThpPte && anon);
  if (!ownAllowed && bits.own !== 0) problems.add(`${where}: ${bits.own} own pages, expected 0`);
  switch (state) {
    case BlockState.None:
    case BlockState.ThpUnmapped:
      if (bits.resident !== 0) problems.add(`${where}: ${bits.resident} resident, expected 0`);
      break;
    case BlockState.Pte:
      if (bits.residentOwn !== bits.resident || (anon && bits.own !== bits.resident)) {
        problems.add(
          `${where}: resident ${bits.resident}, own ${bits.own}, both ${bits.residentOwn}`,
        );
      }
      break;
    case BlockState.ThpPmd:
    case BlockState.Hugetlb:
      if (bits.resident !== pages) problems.add(`${where}: ${bits.resident} resident of ${pages}`);
      break;
    case BlockState.ThpPte:
      if (anon) checkAnonThpPte(ram, block, bits, where, problems);
      break;
  }
}

function checkAnonThpPte(
  ram: GuestRam,
  block: number,
  bits: BlockBits,
  where: string,
  problems: Problems,
): void {
  const mapped = bits.resident - bits.residentOwn;
  if (bits.residentOwn !== bits.own)
    problems.add(`${where}: ${bits.own - bits.residentOwn} own pages unmapped`);
  if (mapped < 1 || mapped >= HPAGE_PMD_NR) {
    problems.add(`${where}: ${mapped} subpages mapped, expected 1..${HPAGE_PMD_NR - 1}`);
  }
  const flags = ram.thpFlags[block]!;
  if ((flags & THP_QUEUED) === 0 || (flags & THP_PARTIALLY_MAPPED) === 0) {
    problems.add(`${where}: split PMD but thpFlags ${flags}, expected queued and partially mapped`);
  }
}

/** The rules that hold in every state: counts, allocation, touched and fill cause, flags. */
function checkBlock(ram: GuestRam, block: number, problems: Problems): number {
  const state = ram.blockState[block]!;
  const bits = blockBits(ram, block, stateHoldsCompound(state));
  const where = `block ${block} (${BLOCK_STATE_NAMES[state] ?? state})`;
  if (bits.resident !== ram.residentCount[block]) {
    problems.add(
      `${where}: residentCount says ${ram.residentCount[block]}, bitmap has ${bits.resident}`,
    );
  }
  if (bits.own !== ram.ownCount[block]) {
    problems.add(`${where}: ownCount says ${ram.ownCount[block]}, bitmap has ${bits.own}`);
  }
  if (bits.beyondEnd !== 0) problems.add(`${where}: ${bits.beyondEnd} bits beyond the last page`);
  const allocated = blockAllocatedPages(ram, block);
  if (allocated < bits.resident) {
    problems.add(`${where}: allocated ${allocated} < resident ${bits.resident}`);
  }
  if (bits.touchedUnbacked !== 0) {
    problems.add(`${where}: ${bits.touchedUnbacked} touched pages hold no memory`);
  }
  if (bits.untouchedResident !== 0 && ram.blockCause[block] === FillCause.None) {
    problems.add(`${where}: ${bits.untouchedResident} untouched resident pages, no fill cause`);
  }
  checkFlags(ram, block, where, problems);
  checkState(ram, block, bits, problems);
  return allocated;
}

function checkFlags(ram: GuestRam, block: number, where: string, problems: Problems): void {
  const flags = ram.thpFlags[block]!;
  if (flags === 0) return;
  const state = ram.blockState[block];
  const anonThp = state === BlockState.ThpPmd || state === BlockState.ThpPte;
  if ((flags & THP_QUEUED) === 0 || ram.config.backing !== "anon" || !anonThp) {
    problems.add(`${where}: thpFlags ${flags} on a block that cannot be queued`);
  }
  if (!ram.rules.thpQueueAtFault && (flags & THP_PARTIALLY_MAPPED) === 0) {
    problems.add(`${where}: fully mapped THP queued on ${ram.rules.version}`);
  }
  if (state === BlockState.ThpPmd && (flags & THP_PARTIALLY_MAPPED) !== 0) {
    problems.add(`${where}: PMD-mapped THP flagged partially mapped`);
  }
}

/** Walks the deferred split queue from its head; checks links, flags and the length. */
function checkQueue(ram: GuestRam, problems: Problems): void {
  let block = ram.splitQueueHead;
  let prev = NO_BLOCK;
  let length = 0;
  while (block !== NO_BLOCK && length <= ram.blockCount) {
    if ((ram.thpFlags[block]! & THP_QUEUED) === 0) problems.add(`queue: block ${block} unflagged`);
    if (ram.queuePrev[block] !== prev) {
      problems.add(`queue: block ${block} prev says ${ram.queuePrev[block]}, walked from ${prev}`);
    }
    prev = block;
    block = ram.queueNext[block]!;
    length++;
  }
  if (length > ram.blockCount) problems.add("queue: cycle in the next links");
  if (prev !== ram.splitQueueTail)
    problems.add(`queue: tail says ${ram.splitQueueTail}, walk ends at ${prev}`);
  if (length !== ram.splitQueueLen)
    problems.add(`queue: length says ${ram.splitQueueLen}, walked ${length}`);
  let flagged = 0;
  for (let b = 0; b < ram.blockCount; b++) if ((ram.thpFlags[b]! & THP_QUEUED) !== 0) flagged++;
  if (flagged !== length) problems.add(`queue: ${flagged} blocks flagged queued, ${length} linked`);
}

/** Recounts the hugetlb pool and checks that each hugetlb page is all or nothing. */
function checkPool(ram: GuestRam, problems: Problems): void {
  if (ram.hugetlbPagePages === 0) {
    if (ram.hugetlbPagesTotal !== 0)
      problems.add(`pool: ${ram.hugetlbPagesTotal} pages, no hugetlbfs`);
    return;
  }
  const span = ram.hugetlbPagePages / HPAGE_PMD_NR;
  let inUse = 0;
  for (let first = 0; first < ram.blockCount; first += span) {
    let present = 0;
    for (let b = first; b < first + span; b++)
      if (ram.blockState[b] === BlockState.Hugetlb) present++;
    if (present === span) inUse++;
    else if (present !== 0)
      problems.add(`hugetlb page at block ${first}: ${present} of ${span} blocks`);
  }
  if (ram.hugetlbPagesTotal - ram.hugetlbPagesFree !== inUse) {
    problems.add(
      `pool: total ${ram.hugetlbPagesTotal} - free ${ram.hugetlbPagesFree} != in use ${inUse}`,
    );
  }
}

/** Every problem found (at most PROBLEMS_MAX), or an empty list. */
export function checkHostRam(ram: GuestRam): string[] {
  const problems = new Problems();
  let resident = 0;
  let allocated = 0;
  for (let block = 0; block < ram.blockCount; block++) {
    allocated += checkBlock(ram, block, problems);
    resident += ram.residentCount[block]!;
  }
  if (resident !== ram.residentPages) {
    problems.add(`residentPages says ${ram.residentPages}, blocks sum to ${resident}`);
  }
  if (allocated !== ram.allocatedPages) {
    problems.add(`allocatedPages says ${ram.allocatedPages}, blocks sum to ${allocated}`);
  }
  checkQueue(ram, problems);
  checkPool(ram, problems);
  const cursorMax = Math.max(1, ram.fullBlockCount);
  if (ram.khugepagedCursor < 0 || ram.khugepagedCursor >= cursorMax) {
    problems.add(`khugepaged cursor ${ram.khugepagedCursor} outside 0..${cursorMax - 1}`);
  }
  return problems.list;
}
