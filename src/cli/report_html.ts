// report.html for one run (`balloonlab run`, and each cell of `compare`): a single
// self-contained file (no network, no script) with the scenario's key settings, a table of the
// snapshots, the charts inlined as SVG (ECharts SSR) and memory-map pictures of guest and host
// memory per 2 MiB block embedded as data: URI PNGs. Every chart is also written as
// DIR/charts/<name>.png. The page helpers here are shared with the comparison report.

import { join } from "node:path";
import { PAGE_SIZE } from "../core/limits.ts";
import type { ResultJson, ResultSnapshotJson } from "../sim/result_json.ts";
import type { Scenario } from "../sim/scenario.ts";
import type { NamedSnapshot, ScenarioRun } from "../sim/scenario_runner.ts";
import { type RenderedChart, renderSvg, svgToPng } from "./chart_render.ts";
import {
  displayScale,
  encodeMapPng,
  fileScale,
  guestPicture,
  hostPicture,
  type MapPicture,
  mapSize,
} from "./memory_map_png.ts";
import { writeFileAtomic } from "./output_files.ts";
import { freeBlocksChart, ladderChart, timelineChart } from "./report_charts.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** A byte count as the scenario files write it: "2 GiB", "1400 MiB", "4 KiB". */
export function formatBytes(bytes: number): string {
  if (bytes >= GiB && bytes % GiB === 0) return `${bytes / GiB} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${Math.round(bytes / KiB)} KiB`;
}

/** A file-name-safe form of a snapshot or cell name. */
export function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9.-]+/g, "_");
}

const STYLE = `
body { font-family: "DejaVu Sans", system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f4f6; } td:first-child, th:first-child { text-align: left; }
table.settings td { text-align: left; }
figure { margin: 12px 0; } figure.chart svg { max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #555; margin-top: 4px; }
img.map { image-rendering: pixelated; image-rendering: crisp-edges; border: 1px solid #bbb; }
ul.legend { list-style: none; padding: 0; margin: 4px 0; font-size: 12px; }
ul.legend li { display: inline-block; margin-right: 14px; }
ul.legend li.absent { color: #aaa; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #888;
  vertical-align: middle; margin-right: 4px; }
.maps { display: flex; flex-wrap: wrap; gap: 24px; }
`;

/** Nothing may be fetched or run: the report is one file, and a stray reference shows up. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

/** The whole document around `body`: inline style only, nothing fetched. */
export function pageHtml(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

/** A table from a header row and rows of cells (already HTML). */
export function tableHtml(header: readonly string[], rows: readonly string[][], cls = ""): string {
  const head = `<tr>${header.map((cell) => `<th>${cell}</th>`).join("")}</tr>`;
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join("")}</tr>`);
  const classAttribute = cls === "" ? "" : ` class="${cls}"`;
  return `<table${classAttribute}>\n${head}\n${body.join("\n")}\n</table>`;
}

/** The chart's inline SVG and caption; `png` says whether charts/<name>.png was written. */
export function chartFigure(chart: RenderedChart, png = true): string {
  const also = png ? ` (also charts/${chart.spec.name}.png)` : "";
  const caption = `<figcaption>${escapeHtml(chart.spec.title)}${also}</figcaption>`;
  const id = `chart-${chart.spec.name}`;
  return `<figure class="chart" id="${id}">\n${chart.svg}\n${caption}\n</figure>`;
}

/** Writes every chart as DIR/charts/<name>.png. */
export function writeChartPngs(dir: string, charts: readonly RenderedChart[]): void {
  for (const chart of charts) {
    writeFileAtomic(join(dir, "charts", `${chart.spec.name}.png`), svgToPng(chart.svg));
  }
}

function dataUri(png: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
}

function legendHtml(map: MapPicture): string {
  const items = map.categories.map((category, index) => {
    const count = map.counts[index]!;
    const cls = count === 0 ? ' class="absent"' : "";
    const swatch = `<span class="swatch" style="background:${category.color}"></span>`;
    return `<li${cls}>${swatch}${escapeHtml(category.label)} (${count})</li>`;
  });
  return `<ul class="legend">${items.join("")}</ul>`;
}

/**
 * One memory-map picture, embedded with its legend; written to pngDir/<file>.png too unless
 * pngDir is undefined.
 */
function mapFigure(
  pngDir: string | undefined,
  file: string,
  title: string,
  map: MapPicture,
): string {
  const { width, height } = mapSize(map.pixels.length);
  const scale = displayScale(width);
  if (pngDir !== undefined) {
    writeFileAtomic(join(pngDir, `${file}.png`), encodeMapPng(map, fileScale(width)));
  }
  const also = pngDir === undefined ? "" : `; also charts/${file}.png`;
  const rowMiB = width * 2;
  return `<figure class="map" id="map-${file}">
<h3>${escapeHtml(title)}</h3>
<img class="map" alt="${escapeHtml(title)}" src="${dataUri(encodeMapPng(map))}" width="${
    width * scale
  }" height="${height * scale}">
${legendHtml(map)}
<figcaption>One pixel per 2 MiB block of guest RAM, ${width} blocks (${rowMiB} MiB) per row,
in RAMBlock order (block counts in brackets${also}).</figcaption>
</figure>`;
}

function mapsSection(pngDir: string | undefined, snapshots: readonly NamedSnapshot[]): string {
  const parts = snapshots.map((named, index) => {
    const base = `${index}_${fileSafe(named.name)}`;
    const guest = guestPicture(named.views.maps);
    const host = hostPicture(named.views.maps);
    return `<h3>Snapshot ${escapeHtml(named.name)}</h3>
<div class="maps">
${mapFigure(pngDir, `guest_map_${base}`, `Guest: what each block holds (${named.name})`, guest)}
${mapFigure(pngDir, `host_map_${base}`, `Host: what backs each block (${named.name})`, host)}
</div>`;
  });
  const note = `<p>The guest picture colours each block by what holds most of its 4 KiB frames
(a tie goes to the kind listed first: a block half free and half anon shows as free), or as a
guest THP when a PMD maps it. The host picture shows what backs the same block in QEMU's
RAMBlock.</p>`;
  return `<h2>Memory maps</h2>\n${note}\n${parts.join("\n")}`;
}

function settingsRows(scenario: Scenario): string[][] {
  const { guest, host, balloon } = scenario;
  const reporting = balloon.freePageReporting;
  const reportingText = `on: order ${reporting.order}, delay ${reporting.delayMs} ms, capacity ${
    reporting.capacity
  }`;
  return [
    ["guest", `${formatBytes(guest.memoryBytes)}, ${guest.cpus} CPU, machine ${guest.machine}`],
    [
      "guest kernel",
      `${guest.kernel}, THP enabled=${guest.thp.enabled} defrag=${guest.thp.defrag}`,
    ],
    ["host", `${formatBytes(host.memoryBytes)}, backing ${host.backing}`],
    [
      "host kernel",
      `${host.kernel}, THP enabled=${host.thp.enabled} defrag=${host.thp.defrag} ` +
        `shmem_enabled=${host.thp.shmemEnabled}`,
    ],
    ["balloon", `${balloon.device}, policy ${balloon.policy}`],
    ["free page reporting", reporting.enabled ? reportingText : "off"],
    ["seed", String(scenario.seed)],
  ].map(([key, value]) => [escapeHtml(key!), escapeHtml(value!)]);
}

function stepText(step: Scenario["steps"][number]): string {
  const parts = Object.entries(step)
    .filter(([key]) => key !== "kind")
    .map(([key, value]) => {
      if (key.endsWith("Bytes") && typeof value === "number") {
        return `${key.slice(0, -5)} ${formatBytes(value)}`;
      }
      if (key.endsWith("Ms") && typeof value === "number") return `${value / 1000} s`;
      return `${key} ${String(value)}`;
    });
  return escapeHtml([step.kind, ...parts].join(" "));
}

function mibOfKb(kB: number): string {
  return (kB / KiB).toFixed(1);
}

function snapshotRow(snapshot: ResultSnapshotJson): string[] {
  const ladder = snapshot.ladder;
  return [
    escapeHtml(snapshot.name),
    (snapshot.simTimeMs / 1000).toFixed(1),
    mibOfKb(snapshot.host.ramResident_kB),
    mibOfKb(snapshot.host.ramAllocated_kB),
    mibOfKb(snapshot.host.ramThp_kB),
    mibOfKb(snapshot.host.deferredSplit_kB),
    mibOfKb(snapshot.guest.meminfo_kB.MemFree ?? 0),
    ((snapshot.balloon.pagesInflated * PAGE_SIZE) / MiB).toFixed(1),
    [ladder.hugeBoth, ladder.guestOnly, ladder.hostOnly, ladder.neither, ladder.free]
      .concat(ladder.ballooned)
      .join(" / "),
  ];
}

const SNAPSHOT_HEADER = [
  "snapshot",
  "sim time (s)",
  "host resident MiB",
  "host allocated MiB",
  "host THP MiB",
  "deferred split MiB",
  "guest free MiB",
  "balloon MiB",
  "ladder: both / guest / host / neither / free / ballooned",
];

export interface RunReportOptions {
  /** Also write every chart and memory map as dir/charts/<name>.png (the costly part). */
  readonly pngs: boolean;
}

/** Renders report.html into `dir`, and its charts and maps as dir/charts/*.png if asked. */
export function writeRunReport(
  dir: string,
  run: ScenarioRun,
  result: ResultJson,
  options: RunReportOptions = { pngs: true },
): void {
  const snapshots = result.snapshots;
  const charts: RenderedChart[] = [timelineChart(run.timeline, snapshots)].map(renderSvg);
  if (snapshots.length > 0) {
    charts.push(renderSvg(ladderChart(snapshots)));
    charts.push(renderSvg(freeBlocksChart(snapshots[0]!, snapshots[snapshots.length - 1]!)));
  }
  if (options.pngs) writeChartPngs(dir, charts);
  const scenario = run.scenario;
  const title = `balloonlab report: ${scenario.name}`;
  const body = `<h1>${escapeHtml(title)}</h1>
<p>balloonlab ${escapeHtml(result.version)}; all times are simulated.</p>
<h2>Settings</h2>
${tableHtml(["setting", "value"], settingsRows(scenario), "settings")}
<h3>Steps</h3>
<ol>${scenario.steps.map((step) => `<li>${stepText(step)}</li>`).join("")}</ol>
<h2>Snapshots</h2>
${tableHtml(SNAPSHOT_HEADER, snapshots.map(snapshotRow))}
<h2>Charts</h2>
${charts.map((chart) => chartFigure(chart, options.pngs)).join("\n")}
${mapsSection(options.pngs ? join(dir, "charts") : undefined, run.snapshots)}`;
  writeFileAtomic(join(dir, "report.html"), pageHtml(title, body));
}
