// report.html for `balloonlab compare`: the comparison table with a link to each cell's own
// report, and charts across cells (inline SVG, each also DIR/charts/<name>.png): host memory
// freed, unmapped and THP lost, balloon requests and simulated balloon time per cell as bars,
// host allocated memory over simulated time per cell as lines, and the ladder of the last
// snapshot per cell as stacked bars.

import { join } from "node:path";
import type { BarSeriesOption, LineSeriesOption } from "echarts";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { TimelineSample } from "../sim/scenario_runner.ts";
import { type ChartSpec, type RenderedChart, renderSvg } from "./chart_render.ts";
import type { Axis, ComparisonRow } from "./comparison.ts";
import { writeFileAtomic } from "./output_files.ts";
import { LADDER_RUNGS, TITLE_STYLE } from "./report_charts.ts";
import { chartFigure, escapeHtml, pageHtml, tableHtml, writeChartPngs } from "./report_html.ts";

/** What the comparison report needs of one cell. */
export interface CompareCell {
  readonly row: ComparisonRow;
  readonly timeline: readonly TimelineSample[];
  readonly lastLadder: ResultSnapshotJson["ladder"];
}

export interface CompareReportInput {
  readonly scenarioName: string;
  readonly axes: readonly Axis[];
  readonly cells: readonly CompareCell[];
}

const MiB = 1024 * 1024;
const WIDTH = 1000;
/** Room on the left for cell names. */
const LABEL_WIDTH = 270;

/** Horizontal bars, one row per cell (first cell on top), one bar per series in each row. */
function cellBars(
  name: string,
  title: string,
  unit: string,
  cells: readonly CompareCell[],
  series: readonly { label: string; color: string; value: (row: ComparisonRow) => number }[],
): ChartSpec {
  const rowHeight = 8 + 10 * series.length;
  const bars: BarSeriesOption[] = series.map((entry) => ({
    type: "bar",
    name: entry.label,
    color: entry.color,
    data: cells.map((cell) => entry.value(cell.row)),
  }));
  return {
    name,
    title,
    width: WIDTH,
    height: 110 + rowHeight * cells.length,
    option: {
      title: { text: title, ...TITLE_STYLE },
      legend: { top: 34 },
      grid: { left: LABEL_WIDTH, right: 40, top: 70, bottom: 40 },
      xAxis: { type: "value", name: unit, nameLocation: "middle", nameGap: 26 },
      yAxis: {
        type: "category",
        inverse: true,
        axisLabel: { fontSize: 11, interval: 0 },
        data: cells.map((cell) => cell.row.cell),
      },
      series: bars,
    },
  };
}

/** A colour per cell, evenly spaced hues. */
function cellColor(index: number, count: number): string {
  const hue = Math.round((index * 360) / Math.max(1, count));
  return `hsl(${hue}, 65%, ${index % 2 === 0 ? 42 : 58}%)`;
}

/** Rows a plain legend of these names takes at font size 11, packed into `width` pixels. */
function legendRows(names: readonly string[], width: number): number {
  let rows = 1;
  let used = 0;
  for (const name of names) {
    // ECharts' item: icon 18 + gap 5 + text (about 5.4 px a character) + itemGap 10.
    const item = 33 + Math.ceil(name.length * 5.4);
    if (used > 0 && used + item > width) {
      rows++;
      used = 0;
    }
    used += item;
  }
  return rows;
}

/** Host allocated memory over simulated time, one line per cell. */
function allocatedChart(cells: readonly CompareCell[]): ChartSpec {
  const rows = legendRows(
    cells.map((cell) => cell.row.cell),
    WIDTH - 40,
  );
  const legendHeight = 21 * rows;
  const series: LineSeriesOption[] = cells.map((cell, index) => ({
    type: "line",
    name: cell.row.cell,
    color: cellColor(index, cells.length),
    symbolSize: 4,
    data: cell.timeline.map((sample) => [
      sample.simTimeMs / 1000,
      Math.round((sample.hostAllocatedBytes / MiB) * 10) / 10,
    ]),
  }));
  const title = "Host allocated memory over simulated time, per cell";
  return {
    name: "host_allocated",
    title,
    width: WIDTH,
    height: 460 + legendHeight,
    option: {
      title: { text: title, ...TITLE_STYLE },
      legend: { bottom: 8, left: 20, right: 20, itemWidth: 18, textStyle: { fontSize: 11 } },
      grid: { left: 70, right: 40, top: 50, bottom: 70 + legendHeight },
      xAxis: { type: "value", name: "simulated time (s)", nameLocation: "middle", nameGap: 28 },
      yAxis: { type: "value", name: "MiB", nameLocation: "middle", nameGap: 50 },
      series,
    },
  };
}

/** The ladder of each cell's last snapshot, stacked horizontal bars. */
function ladderChart(cells: readonly CompareCell[]): ChartSpec {
  const title = "Hildenbrand's ladder after (last snapshot), 2 MiB blocks per cell";
  return {
    name: "ladder",
    title,
    width: WIDTH,
    height: 110 + 18 * cells.length,
    option: {
      title: { text: title, ...TITLE_STYLE },
      legend: { top: 34 },
      grid: { left: LABEL_WIDTH, right: 40, top: 70, bottom: 40 },
      xAxis: { type: "value", name: "2 MiB blocks", nameLocation: "middle", nameGap: 26 },
      yAxis: {
        type: "category",
        inverse: true,
        axisLabel: { fontSize: 11, interval: 0 },
        data: cells.map((cell) => cell.row.cell),
      },
      series: LADDER_RUNGS.map((rung) => ({
        type: "bar",
        name: rung.label,
        stack: "ladder",
        color: rung.color,
        data: cells.map((cell) => cell.lastLadder[rung.key]),
      })),
    },
  };
}

export function compareCharts(cells: readonly CompareCell[]): ChartSpec[] {
  const before = cells[0]?.row.before ?? "before";
  const after = cells[0]?.row.after ?? "after";
  return [
    cellBars("host_memory", `Host memory, ${before} → ${after}`, "MiB", cells, [
      { label: "freed (Δ allocated)", color: "#1a7f37", value: (row) => row.hostFreedMiB },
      { label: "unmapped (Δ resident)", color: "#2a6fb0", value: (row) => row.hostUnmappedMiB },
      { label: "host THP lost", color: "#d0453a", value: (row) => row.hostThpLostMiB },
    ]),
    cellBars("requests", "Balloon requests (inflate, deflate, report)", "requests", cells, [
      { label: "requests", color: "#7a5ab8", value: (row) => row.requests },
    ]),
    cellBars("balloon_time", "Simulated time in balloon and reporting work", "ms", cells, [
      { label: "balloon time", color: "#d07a10", value: (row) => row.balloonTimeMs },
    ]),
    allocatedChart(cells),
    ladderChart(cells),
  ];
}

const TABLE_HEADER = [
  "cell",
  "freed MiB",
  "unmapped MiB",
  "deferred split MiB",
  "host THP lost MiB",
  "guest THP kept %",
  "ladder after: both / guest / host / neither",
  "balloon MiB",
  "requests",
  "syscalls",
  "balloon ms",
];

function tableRow(row: ComparisonRow): string[] {
  const link = `<a href="${escapeHtml(encodeURIComponent(row.cell))}/report.html">${escapeHtml(
    row.cell,
  )}</a>`;
  return [
    link,
    row.hostFreedMiB.toFixed(1),
    row.hostUnmappedMiB.toFixed(1),
    row.deferredSplitMiB.toFixed(1),
    row.hostThpLostMiB.toFixed(1),
    String(row.guestThpKeptPercent),
    `${row.hugeBoth} / ${row.guestOnly} / ${row.hostOnly} / ${row.neither}`,
    row.balloonMiB.toFixed(1),
    String(row.requests),
    String(row.syscalls),
    String(row.balloonTimeMs),
  ];
}

/** Writes DIR/report.html and DIR/charts/*.png for a comparison. */
export function writeCompareReport(dir: string, input: CompareReportInput): void {
  const charts: RenderedChart[] = compareCharts(input.cells).map(renderSvg);
  writeChartPngs(dir, charts);
  const first = input.cells[0]?.row;
  const title = `balloonlab comparison: ${input.scenarioName}`;
  const axes = input.axes.map(
    (axis) =>
      `<li><code>${escapeHtml(axis.path)}</code>: ${escapeHtml(axis.values.join(", "))}</li>`,
  );
  const body = `<h1>${escapeHtml(title)}</h1>
<p>${input.cells.length} cells, the same scenario and seed in each; every column compares the
first snapshot (<code>${escapeHtml(first?.before ?? "")}</code>) with the last
(<code>${escapeHtml(first?.after ?? "")}</code>). All times are simulated. Each cell's name links
to its own report.</p>
<h2>Axes</h2>
<ul>${axes.join("")}</ul>
<h2>Comparison</h2>
${tableHtml(
  TABLE_HEADER,
  input.cells.map((cell) => tableRow(cell.row)),
)}
<h2>Charts</h2>
${charts.map((chart) => chartFigure(chart)).join("\n")}`;
  writeFileAtomic(join(dir, "report.html"), pageHtml(title, body));
}
