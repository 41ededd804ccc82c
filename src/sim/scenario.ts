// A scenario: one experiment, resolved. Scenario files (YAML, src/cli/scenario_file.ts) use the
// contract's keys with sizes as strings ("2GiB") and durations as strings ("30s"); once read and
// validated they become this structure, with every default filled in and every size in bytes,
// every duration in milliseconds. The runner (scenario_runner.ts) takes only this.

export interface ScenarioGuest {
  readonly memoryBytes: number;
  readonly cpus: number;
  readonly machine: "pc" | "q35";
  readonly kernel: "5.6" | "6.1" | "6.18";
  readonly initOnAlloc: boolean;
  readonly thp: {
    readonly enabled: "always" | "madvise" | "never";
    readonly defrag: "always" | "defer" | "defer+madvise" | "madvise" | "never";
  };
  /** Paths of a real machine's /proc files to start from (proc import); optional. */
  readonly initialState?: {
    readonly buddyinfo: string;
    readonly pagetypeinfo: string;
    readonly zoneinfo?: string;
  };
}

export interface ScenarioHost {
  readonly kernel: "5.6" | "6.1" | "6.18";
  readonly memoryBytes: number;
  readonly backing: "anon" | "memfd" | "tmpfs-huge" | "hugetlbfs";
  readonly hugetlbPageBytes: number;
  readonly thp: {
    readonly enabled: "always" | "madvise" | "never";
    readonly defrag: "always" | "defer" | "defer+madvise" | "madvise" | "never";
    readonly shmemEnabled: "always" | "within_size" | "advise" | "never" | "deny" | "force";
  };
  readonly khugepaged: {
    readonly scanSleepMs: number;
    readonly pagesToScan: number;
    readonly maxPtesNone: number;
  };
  readonly discardInhibited: boolean;
}

export interface ScenarioBalloon {
  readonly device: "virtio-balloon" | "virtio-mem";
  readonly policy:
    | "linux-4k"
    | "thp-order"
    | "cont-pages"
    | "highest-order-first"
    | "huge-2m-fallback"
    | "addr-len";
  readonly freePageReporting: {
    readonly enabled: boolean;
    readonly order: number;
    readonly delayMs: number;
    readonly capacity: number;
  };
  readonly deflateOnOom: boolean;
  /** Duyck's variant: QEMU knows the host THP size. */
  readonly thpSizeKnown: boolean;
  /** highest-order-first option: the host discards only whole 2 MiB ranges. */
  readonly hostDiscardsWholeHugeOnly: boolean;
  readonly virtioMem: { readonly regionBytes: number; readonly blockBytes: number };
}

/** One step; exactly one kind per step, as in the file. */
export type ScenarioStep =
  | { readonly kind: "touch"; readonly sizeBytes: number; readonly free: boolean }
  | {
      readonly kind: "memhog";
      readonly sizeBytes: number;
      readonly thp: boolean;
      readonly keepEvery: number;
      readonly id: string;
    }
  | { readonly kind: "free"; readonly id: string }
  | { readonly kind: "pagecache"; readonly sizeBytes: number; readonly drop: boolean }
  | { readonly kind: "slab"; readonly sizeBytes: number; readonly spread: number }
  | { readonly kind: "hostPressure"; readonly sizeBytes: number }
  | { readonly kind: "compact" }
  | { readonly kind: "balloon"; readonly targetBytes: number }
  | { readonly kind: "wait"; readonly durationMs: number }
  | { readonly kind: "snapshot"; readonly name: string };

export interface Scenario {
  readonly name: string;
  readonly seed: number;
  readonly guest: ScenarioGuest;
  readonly host: ScenarioHost;
  readonly balloon: ScenarioBalloon;
  readonly steps: readonly ScenarioStep[];
}
