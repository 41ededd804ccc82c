// The one seeded random stream of a run (style: one seed, one world). Wraps pure-rand's
// xoroshiro128+ so that every random choice in the model is reproducible from the seed.
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

type Generator = ReturnType<typeof xoroshiro128plus>;

export interface Prng {
  /** Uniform integer in [0, bound), bound <= 2^32. */
  below(bound: number): number;
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
}

export function createPrng(seed: number): Prng {
  const generator: Generator = xoroshiro128plus(seed | 0);
  function nextUint32(): number {
    return generator.next() >>> 0;
  }
  function below(bound: number): number {
    // Lemire's multiply-shift reduction; the bias (< bound / 2^32) is irrelevant here and the
    // method is deterministic, which is what matters.
    return Math.floor((nextUint32() * bound) / 4294967296);
  }
  return { below, nextUint32 };
}
