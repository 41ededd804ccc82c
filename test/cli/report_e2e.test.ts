// Goal: the HTML reports that `balloonlab run` and `balloonlab compare` write are what a user
// opens: self-contained files (nothing fetched, no script) that load in a real browser with no
// errors and show their charts (inline SVG) and memory-map pictures (data: URI PNGs), with every
// chart also written as a PNG file; the same run gives the same report bytes.
// Method: run the CLI as a user does (bin/balloonlab.mjs in child processes) on a small scenario
// written to a temporary directory, a run and a two-policy compare; check the files, then open
// each report.html in headless Debian Chromium (/usr/bin/chromium) through playwright-core and
// collect console errors, page errors and failed requests, which must be none, and count what
// rendered. Only the browser part is skipped, with a message, where Chromium is not installed.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "balloonlab-report-e2e-"));
const CHROMIUM = "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
/** The launch arguments docs/ecosystem.md lists for Debian's chromium. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

const SCENARIO = `name: report-e2e
seed: 5
guest: { memory: 1GiB, kernel: "6.1", thp: { enabled: always } }
host: { backing: anon, thp: { enabled: always } }
steps:
  - memhog: { size: 600MiB, thp: true, keepEvery: 2, id: frag }
  - snapshot: before
  - balloon: { target: 768MiB }
  - wait: 5s
  - snapshot: after
`;
const scenarioPath = join(dir, "report-e2e.yaml");
const runDir = join(dir, "run");
const runAgainDir = join(dir, "run-again");
const compareDir = join(dir, "compare");
const CELLS = ["linux-4k", "thp-order"];

function balloonlab(...args: string[]): void {
  const result = spawnSync(process.execPath, [join(root, "bin", "balloonlab.mjs"), ...args], {
    cwd: root,
    encoding: "utf8",
  });
  if (result.status !== 0) {
    throw new Error(`balloonlab ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
}

function expectPng(path: string): void {
  expect(existsSync(path), path).toBe(true);
  const bytes = readFileSync(path);
  expect([...bytes.subarray(0, 8)], path).toEqual(PNG_SIGNATURE);
  expect(bytes.length, path).toBeGreaterThan(100);
}

beforeAll(() => {
  writeFileSync(scenarioPath, SCENARIO);
  balloonlab("run", scenarioPath, "--out", runDir);
  balloonlab("run", scenarioPath, "--out", runAgainDir);
  balloonlab("compare", scenarioPath, "--policies", CELLS.join(","), "--out", compareDir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("report files", () => {
  test("run writes report.html and every chart and memory map as PNG, deterministically", () => {
    const charts = readdirSync(join(runDir, "charts")).sort();
    for (const name of ["host_memory", "ladder", "free_blocks"]) {
      expect(charts).toContain(`${name}.png`);
    }
    // A guest and a host picture per snapshot.
    for (const name of ["guest_map_0_before", "host_map_0_before", "guest_map_1_after"]) {
      expect(charts).toContain(`${name}.png`);
    }
    expect(charts.filter((name) => name.includes("_map_"))).toHaveLength(4);
    for (const name of charts) expectPng(join(runDir, "charts", name));
    const html = readFileSync(join(runDir, "report.html"), "utf8");
    expect(readFileSync(join(runAgainDir, "report.html"), "utf8")).toBe(html);
    expect(readFileSync(join(runAgainDir, "charts", "ladder.png"))).toEqual(
      readFileSync(join(runDir, "charts", "ladder.png")),
    );
  });

  test("reports are self-contained: no script, nothing referenced outside the file", () => {
    for (const path of [join(runDir, "report.html"), join(compareDir, "report.html")]) {
      const html = readFileSync(path, "utf8");
      expect(html, path).not.toMatch(/<script/i);
      expect(html, path).not.toMatch(/(src|href)="(https?:|\/\/)/i);
      expect(html, path).not.toMatch(/url\(["']?https?:/i);
    }
  });

  test("compare writes its report and charts, and a report per cell", () => {
    for (const name of ["host_memory", "requests", "balloon_time", "host_allocated", "ladder"]) {
      expectPng(join(compareDir, "charts", `${name}.png`));
    }
    for (const cell of CELLS) expect(existsSync(join(compareDir, cell, "report.html"))).toBe(true);
  });
});

interface DrawnElement {
  getBoundingClientRect(): { width: number; height: number };
  querySelectorAll(selector: string): { length: number };
}

interface PageCheck {
  readonly errors: string[];
  readonly svgs: number;
  readonly drawnSvgs: number;
  readonly maps: { width: number; height: number }[];
  readonly links: string[];
}

async function openReport(browser: Browser, path: string): Promise<PageCheck> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => errors.push(`request failed: ${request.url()}`));
  await page.goto(pathToFileURL(path).href, { waitUntil: "load" });
  // The tests compile without the DOM library: the page functions declare what they use.
  const boxes = await page.$$eval("figure.chart svg", (svgs: DrawnElement[]) =>
    svgs.map((svg) => {
      // A DOMRect's sizes are getters: spread would lose them.
      const { width, height } = svg.getBoundingClientRect();
      return { width, height, shapes: svg.querySelectorAll("path, rect").length };
    }),
  );
  const maps = await page.$$eval(
    "img.map",
    (images: { naturalWidth: number; naturalHeight: number }[]) =>
      images.map((image) => ({ width: image.naturalWidth, height: image.naturalHeight })),
  );
  const links = await page.$$eval("a", (anchors: { href: string }[]) => anchors.map((a) => a.href));
  const drawnSvgs = boxes.filter((box) => box.width > 100 && box.height > 100 && box.shapes > 5);
  const check = { svgs: boxes.length, drawnSvgs: drawnSvgs.length, maps, links };
  await page.close();
  return { errors, ...check };
}

const browserTitle = hasChromium
  ? "reports load in headless Chromium with no errors and show their charts"
  : `reports load in headless Chromium: SKIPPED, ${CHROMIUM} is not installed ` +
    "(apt-get install chromium; .ci/run does)";

describe("in the browser", () => {
  test.skipIf(!hasChromium)(browserTitle, async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    try {
      const run = await openReport(browser, join(runDir, "report.html"));
      expect(run.errors).toEqual([]);
      expect(run.svgs).toBeGreaterThanOrEqual(3);
      expect(run.drawnSvgs).toBe(run.svgs);
      expect(run.maps).toHaveLength(4);
      for (const map of run.maps) expect(map.width).toBeGreaterThan(0);

      const compare = await openReport(browser, join(compareDir, "report.html"));
      expect(compare.errors).toEqual([]);
      expect(compare.svgs).toBeGreaterThanOrEqual(5);
      expect(compare.drawnSvgs).toBe(compare.svgs);
      expect(compare.links.filter((href) => href.endsWith("/report.html"))).toHaveLength(2);

      const cell = await openReport(browser, join(compareDir, CELLS[0]!, "report.html"));
      expect(cell.errors).toEqual([]);
      expect(cell.svgs).toBeGreaterThanOrEqual(3);
      for (const map of cell.maps) expect(map.width).toBeGreaterThan(0);
    } finally {
      await browser.close();
    }
  });
});
