// The embedded default experiment (`npm start`, `balloonlab compare` without a file): the
// thread's question. A guest fragmented the way the thread describes (a THP workload that
// punched every other 4 KiB page, so free memory is scattered), ballooned to half its size,
// then host pressure; compared over every policy, three host backings on host kernels 5.6 and
// 6.18, with and without free page reporting.

export const DEFAULT_SCENARIO_NAME = "thread-question";

export const DEFAULT_SCENARIO_YAML = `# The LKML thread "[v2 PATCH] mm: shmem: allow split THP when truncating THP partially"
# (2020-02-20 to 2020-02-26, ../shared/reference/): what does ballooning a fragmented guest give the host back, per policy and backing?
name: thread-question
seed: 1
guest:
  memory: 2GiB
  kernel: "6.1"
  initOnAlloc: true
  thp: { enabled: always, defrag: madvise }
host:
  kernel: "6.18"
  memory: 24GiB
  backing: anon
  thp: { enabled: always, defrag: madvise, shmemEnabled: never }
balloon:
  policy: linux-4k
steps:
  - memhog: { size: 1400MiB, thp: true, keepEvery: 2, id: fragmenter }
  - snapshot: pre-inflate
  - balloon: { target: 1GiB }
  - wait: 30s
  - snapshot: inflated
  - hostPressure: { size: 23GiB }
  - wait: 10s
  - snapshot: host-pressure
`;

/** The default comparison's axes. */
export const DEFAULT_AXES: readonly string[] = [
  "balloon.policy=linux-4k,thp-order,cont-pages,highest-order-first,huge-2m-fallback,addr-len",
  "host.backing=anon,tmpfs-huge,hugetlbfs",
  "host.kernel=5.6,6.18",
  "balloon.freePageReporting.enabled=false,true",
];
