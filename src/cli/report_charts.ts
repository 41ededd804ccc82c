// The charts of one run's report (report_html.ts), as ECharts options: host memory and the
// balloon over simulated time (from the timeline), Hildenbrand's ladder per snapshot, and free
// blocks per order in the first and last snapshot (buddyinfo summed over zones, log scale).

import type { LineSeriesOption } from "echarts";
import { NR_PAGE_ORDERS } from "../core/limits.ts";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { TimelineSample } from "../sim/scenario_runner.ts";
import type { ChartSpec } from "./chart_render.ts";

const MiB = 1024 * 1024;

type LadderKey = keyof ResultSnapshotJson["ladder"];

/** The ladder's rungs, best first, with the colours every ladder chart uses. */
export const LADDER_RUNGS: readonly { key: LadderKey; label: string; color: string }[] = [
  { key: "hugeBoth", label: "huge in guest and host", color: "#1a7f37" },
  { key: "guestOnly", label: "huge in guest only", color: "#7cc46a" },
  { key: "hostOnly", label: "huge on host only", color: "#f0b030" },
  { key: "neither", label: "huge in neither", color: "#d0453a" },
  { key: "free", label: "free in guest", color: "#b8c4d0" },
  { key: "ballooned", label: "ballooned", color: "#5a6fd0" },
];

export const TITLE_STYLE = { left: 10, top: 6, textStyle: { fontSize: 15 } } as const;

function mib(bytes: number): number {
  return Math.round((bytes / MiB) * 10) / 10;
}

/** A line series of (seconds, MiB) points. */
function timeSeries(
  name: string,
  color: string,
  samples: readonly TimelineSample[],
  value: (sample: TimelineSample) => number,
  dashed = false,
): LineSeriesOption {
  return {
    type: "line",
    name,
    color,
    symbolSize: 5,
    lineStyle: { type: dashed ? "dashed" : "solid", width: dashed ? 2 : 2.5 },
    data: samples.map((sample) => [sample.simTimeMs / 1000, mib(value(sample))]),
  };
}

/** Chart 1: host allocated, resident and THP memory and the balloon over simulated time. */
export function timelineChart(
  timeline: readonly TimelineSample[],
  snapshots: readonly ResultSnapshotJson[],
): ChartSpec {
  const series: LineSeriesOption[] = [
    timeSeries("host allocated", "#c0392b", timeline, (s) => s.hostAllocatedBytes),
    timeSeries("host resident", "#2a6fb0", timeline, (s) => s.hostResidentBytes),
    timeSeries("host THP", "#d07a10", timeline, (s) => s.hostThpBytes),
    timeSeries("deferred split", "#d03c8c", timeline, (s) => s.deferredSplitBytes, true),
    timeSeries("balloon", "#38b060", timeline, (s) => s.balloonBytes),
  ];
  const marks: LineSeriesOption = {
    type: "line",
    name: "snapshots",
    data: [],
    silent: true,
    markLine: {
      symbol: "none",
      lineStyle: { color: "#999999", type: "dashed" },
      label: { formatter: "{b}", fontSize: 10 },
      data: snapshots.map((snapshot) => ({
        name: snapshot.name,
        xAxis: snapshot.simTimeMs / 1000,
      })),
    },
  };
  return {
    name: "host_memory",
    title: "Host memory and balloon over simulated time",
    width: 900,
    height: 420,
    option: {
      title: { text: "Host memory and balloon over simulated time", ...TITLE_STYLE },
      legend: { top: 34, data: series.map((entry) => String(entry.name)) },
      grid: { left: 70, right: 40, top: 80, bottom: 50 },
      xAxis: { type: "value", name: "simulated time (s)", nameLocation: "middle", nameGap: 28 },
      yAxis: { type: "value", name: "MiB", nameLocation: "middle", nameGap: 50 },
      series: [...series, marks],
    },
  };
}

/** Chart 2: the ladder per snapshot, stacked bars of 2 MiB blocks. */
export function ladderChart(snapshots: readonly ResultSnapshotJson[]): ChartSpec {
  return {
    name: "ladder",
    title: "Hildenbrand's ladder per snapshot",
    width: 900,
    height: 420,
    option: {
      title: { text: "Hildenbrand's ladder per snapshot (2 MiB blocks)", ...TITLE_STYLE },
      legend: { top: 34 },
      grid: { left: 70, right: 40, top: 80, bottom: 40 },
      xAxis: { type: "category", data: snapshots.map((snapshot) => snapshot.name) },
      yAxis: { type: "value", name: "2 MiB blocks", nameLocation: "middle", nameGap: 50 },
      series: LADDER_RUNGS.map((rung) => ({
        type: "bar",
        name: rung.label,
        stack: "ladder",
        color: rung.color,
        barMaxWidth: 90,
        data: snapshots.map((snapshot) => snapshot.ladder[rung.key]),
      })),
    },
  };
}

/** Free blocks per order, all zones; "-" (no bar) where the count is zero, for the log axis. */
export function freeBlocksByOrder(snapshot: ResultSnapshotJson): number[] {
  const sums = new Array<number>(NR_PAGE_ORDERS).fill(0);
  for (const counts of Object.values(snapshot.guest.buddyinfo)) {
    counts.forEach((count, order) => {
      if (order < NR_PAGE_ORDERS) sums[order]! += count;
    });
  }
  return sums;
}

function orderLabel(order: number): string {
  const kib = 4 << order;
  return kib >= 1024 ? `${order}\n${kib / 1024} MiB` : `${order}\n${kib} KiB`;
}

/** Chart 3: free blocks per order in the first and last snapshot, log scale. */
export function freeBlocksChart(first: ResultSnapshotJson, last: ResultSnapshotJson): ChartSpec {
  const pair = first === last ? [first] : [first, last];
  const colors = ["#7f8c9a", "#2a6fb0"];
  return {
    name: "free_blocks",
    title: "Free blocks per order",
    width: 900,
    height: 420,
    option: {
      title: { text: "Guest free blocks per order (buddyinfo, all zones)", ...TITLE_STYLE },
      legend: { top: 34 },
      grid: { left: 70, right: 40, top: 80, bottom: 60 },
      xAxis: {
        type: "category",
        name: "order",
        nameLocation: "middle",
        nameGap: 42,
        data: Array.from({ length: NR_PAGE_ORDERS }, (_, order) => orderLabel(order)),
      },
      yAxis: { type: "log", name: "free blocks", min: 1, nameLocation: "middle", nameGap: 55 },
      series: pair.map((snapshot, index) => ({
        type: "bar",
        name: `${snapshot.name} (${index === 0 ? "first" : "last"})`,
        color: colors[index],
        data: freeBlocksByOrder(snapshot).map((count) => (count > 0 ? count : "-")),
      })),
    },
  };
}
