// validation.html (issue #5), written next to validation.json by `balloonlab validate`: one
// self-contained page (no scripts, nothing fetched) with the run's settings, one chart with the
// model's and the real host's resident guest RAM and the guest's free memory per snapshot (ECharts
// rendered to inline SVG), and per snapshot a table of model vs real with verdict and tolerance.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LineSeriesOption } from "echarts";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { ChartSpec } from "./chart_render.ts";
import { renderSvg } from "./chart_render.ts";
import { TITLE_STYLE } from "./report_charts.ts";
import { chartFigure, escapeHtml, pageHtml, tableHtml } from "./report_html.ts";
import type { HostThp, Verdict } from "./validate_compare.ts";

/** The parts of validation.json the page shows. */
export interface ValidationView {
  readonly scenario: { readonly name: string; readonly description?: string };
  readonly real: {
    readonly qemu: string;
    readonly kernel: string;
    readonly hostKernel: string;
    readonly accel: string;
    readonly hostThp: HostThp;
    readonly hostKnobs: readonly string[];
    /** Where host.ramAllocated_kB came from: "cgroup-v1" | "cgroup-v2" | "memfree". */
    readonly allocatedSource?: string;
    /** What the real side did besides the steps' commands (balloon, hostPressure). */
    readonly log?: readonly string[];
    /** QEMU trace events the run enabled (validate_trace.ts); empty or absent: no trace. */
    readonly traceEvents?: readonly string[];
    /** Host /proc/vmstat THP events read for host.counters (validate_host_counters.ts). */
    readonly thpEvents?: readonly string[];
    /** The idle window before QEMU started: its length and the events' deltas over it. */
    readonly thpBaseline?: {
      readonly idleMs: number;
      readonly idleDelta: Readonly<Record<string, number>>;
    };
    readonly wallMs: number;
  };
  readonly model: { readonly guestKernel: string; readonly hostKernel: string };
  readonly snapshots: Readonly<
    Record<
      string,
      {
        readonly model: ResultSnapshotJson | undefined;
        readonly real: ResultSnapshotJson;
        readonly verdicts: readonly Verdict[];
      }
    >
  >;
}

function mib(kB: number | undefined): number | string {
  return kB === undefined ? "-" : Math.round((kB / 1024) * 10) / 10;
}

function line(name: string, color: string, data: (number | string)[], dashed: boolean) {
  const series: LineSeriesOption = {
    type: "line",
    name,
    color,
    symbolSize: 7,
    lineStyle: { type: dashed ? "dashed" : "solid", width: 2.5 },
    data,
  };
  return series;
}

/** Model and real host resident memory and guest free memory, per snapshot, in MiB. */
export function validationChart(view: ValidationView): ChartSpec {
  const names = Object.keys(view.snapshots);
  const pairs = Object.values(view.snapshots);
  const resident = (s: ResultSnapshotJson | undefined) => mib(s?.host.ramResident_kB);
  const free = (s: ResultSnapshotJson | undefined) => mib(s?.guest.meminfo_kB.MemFree);
  const series = [
    line(
      "host resident, real",
      "#2a6fb0",
      pairs.map((p) => resident(p.real)),
      false,
    ),
    line(
      "host resident, model",
      "#2a6fb0",
      pairs.map((p) => resident(p.model)),
      true,
    ),
    line(
      "guest free, real",
      "#1a7f37",
      pairs.map((p) => free(p.real)),
      false,
    ),
    line(
      "guest free, model",
      "#1a7f37",
      pairs.map((p) => free(p.model)),
      true,
    ),
  ];
  const title = "Host resident guest RAM and guest free memory per snapshot: model vs real";
  return {
    name: "validation",
    title,
    width: 900,
    height: 420,
    option: {
      title: { text: title, ...TITLE_STYLE },
      legend: { top: 34, data: series.map((entry) => String(entry.name)) },
      grid: { left: 70, right: 40, top: 80, bottom: 50 },
      xAxis: { type: "category", data: names, name: "snapshot", nameLocation: "middle" },
      yAxis: { type: "value", name: "MiB", nameLocation: "middle", nameGap: 50 },
      series,
    },
  };
}

function settingsTable(view: ValidationView): string {
  const thp = Object.entries(view.real.hostThp)
    .map(([key, value]) => `${key}=${value ?? "?"}`)
    .join(", ");
  const rows: [string, string][] = [
    ["scenario", view.scenario.name],
    ["QEMU", view.real.qemu],
    ["guest kernel", view.real.kernel],
    ["host kernel", view.real.hostKernel],
    ["accel", view.real.accel],
    ["host THP", thp],
    ["host knobs set for the run", view.real.hostKnobs.join("; ") || "none"],
    ["host allocated memory from", view.real.allocatedSource ?? "memfree"],
    [
      "QEMU trace (discards, balloon requests; qemu-trace.log.gz)",
      view.real.traceEvents?.join(", ") || "off",
    ],
    ["host counters (host /proc/vmstat, host-wide)", hostCountersSetting(view)],
    ["model kernels", `guest ${view.model.guestKernel}, host ${view.model.hostKernel}`],
    ["real side wall time", `${view.real.wallMs} ms`],
  ];
  for (const line of view.real.log ?? []) {
    if (line.startsWith("hostPressure")) rows.push(["host pressure", line]);
  }
  const cells = rows.map(([key, value]) => [escapeHtml(key), escapeHtml(value)]);
  return tableHtml(["setting", "value"], cells, "settings");
}

/** The events read for host.counters and the background the idle window saw. */
function hostCountersSetting(view: ValidationView): string {
  const events = view.real.thpEvents ?? [];
  if (events.length === 0) return "not read";
  const baseline = view.real.thpBaseline;
  const moved = Object.entries(baseline?.idleDelta ?? {}).filter(([, delta]) => delta !== 0);
  const background =
    baseline === undefined
      ? ""
      : `; idle ${baseline.idleMs} ms before QEMU: ${
          moved.map(([event, delta]) => `${event} +${delta}`).join(", ") || "no event moved"
        }`;
  return `${events.join(", ")}${background}`;
}

function number(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

const VERDICT_COLORS: Record<string, string> = {
  pass: "#1a7f37",
  fail: "#c0392b",
  info: "#555555",
};

/** One snapshot's verdicts: quantity, unit, model, real, real - model, tolerance, verdict. */
export function verdictTable(verdicts: readonly Verdict[]): string {
  const rows = verdicts.map((v) => [
    escapeHtml(v.quantity),
    escapeHtml(v.unit),
    number(v.model),
    number(v.real),
    number(v.difference),
    `&plusmn;${number(Math.round(v.tolerance))}`,
    `<b style="color:${VERDICT_COLORS[v.verdict] ?? "#222"}">${v.verdict}</b>`,
  ]);
  const header = ["quantity", "unit", "model", "real", "real - model", "tolerance", "verdict"];
  return tableHtml(header, rows, "verdicts");
}

function countVerdicts(view: ValidationView): string {
  const counts = { pass: 0, fail: 0, info: 0 };
  for (const snapshot of Object.values(view.snapshots)) {
    for (const v of snapshot.verdicts) counts[v.verdict] += 1;
  }
  return `${counts.pass} pass, ${counts.fail} fail, ${counts.info} info`;
}

/** The whole page. */
export function validationHtml(view: ValidationView): string {
  const chart = renderSvg(validationChart(view));
  const snapshots = Object.entries(view.snapshots).map(
    ([name, snapshot]) =>
      `<h3>Snapshot ${escapeHtml(name)}</h3>\n${verdictTable(snapshot.verdicts)}`,
  );
  const title = `balloonlab validate: ${view.scenario.name}`;
  const body = `<h1>${escapeHtml(title)}</h1>
<p>The scenario on a real Linux guest under QEMU and in the model; verdicts:
${countVerdicts(view)}. Difference is real minus model; time is shown without a verdict.</p>
<h2>Settings</h2>
${settingsTable(view)}
<h2>Timelines</h2>
${chartFigure(chart, false)}
<h2>Model vs real per snapshot</h2>
${snapshots.join("\n")}`;
  return pageHtml(title, body);
}

/** Writes DIR/validation.html; returns its path. */
export function writeValidationHtml(dir: string, view: ValidationView): string {
  const path = join(dir, "validation.html");
  writeFileSync(path, validationHtml(view));
  return path;
}
