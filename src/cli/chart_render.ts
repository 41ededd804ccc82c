// Rendering report charts without a browser: ECharts server-side rendering to an SVG string, and
// resvg to turn that SVG into a PNG with DejaVu fonts only (no system font lookup), so the same
// chart gives the same bytes on every machine that has fonts-dejavu-core.
//
// Both libraries are loaded on first use, through require: the CommonJS build of ECharts is one
// file and loads in a tenth of the time of its ES module tree, and commands that draw nothing
// (proc, trace, demo) do not pay for either.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { EChartsOption } from "echarts";

type EChartsModule = typeof import("echarts");
type ResvgModule = typeof import("@resvg/resvg-js");

const require = createRequire(import.meta.url);
let echartsModule: EChartsModule | undefined;
let resvgModule: ResvgModule | undefined;

function echarts(): EChartsModule {
  echartsModule ??= require("echarts") as EChartsModule;
  return echartsModule;
}

function resvg(): ResvgModule {
  resvgModule ??= require("@resvg/resvg-js") as ResvgModule;
  return resvgModule;
}

/**
 * ECharts lays text out with Arial-like widths (it has no font metrics in Node); DejaVu Sans
 * Condensed is about that wide, where DejaVu Sans would overrun legends and labels.
 */
export const CHART_FONT = "DejaVu Sans Condensed";
/** In a browser without DejaVu, fall back to a sans-serif face rather than the default serif. */
const SVG_FONT_FAMILY = `${CHART_FONT}, Arial, sans-serif`;
const FONT_DIR = "/usr/share/fonts/truetype/dejavu";
const FONT_FILES = ["DejaVuSansCondensed.ttf", "DejaVuSansCondensed-Bold.ttf"].map(
  (name) => `${FONT_DIR}/${name}`,
);

/** A chart: its file name (without extension), title, size in CSS pixels and ECharts option. */
export interface ChartSpec {
  readonly name: string;
  readonly title: string;
  readonly width: number;
  readonly height: number;
  readonly option: EChartsOption;
}

export interface RenderedChart {
  readonly spec: ChartSpec;
  readonly svg: string;
}

/** Renders the chart to an SVG string (static: no animation), then frees the instance. */
export function renderSvg(spec: ChartSpec): RenderedChart {
  const chart = echarts().init(undefined, undefined, {
    renderer: "svg",
    ssr: true,
    width: spec.width,
    height: spec.height,
  });
  try {
    chart.setOption({
      animation: false,
      backgroundColor: "#ffffff",
      textStyle: { fontFamily: SVG_FONT_FAMILY },
      ...spec.option,
    });
    return { spec, svg: chart.renderToSVGString() };
  } finally {
    // An SSR instance that is not disposed keeps Node's event loop alive.
    chart.dispose();
  }
}

/** Rasterises an SVG to PNG with DejaVu Sans (system fonts only if DejaVu is missing). */
let fontFilesFound: string[] | undefined;

export function svgToPng(svg: string): Uint8Array {
  fontFilesFound ??= FONT_FILES.filter((file) => existsSync(file));
  const fontFiles = fontFilesFound;
  const renderer = new (resvg().Resvg)(svg, {
    background: "#ffffff",
    font: {
      fontFiles,
      loadSystemFonts: fontFiles.length === 0,
      defaultFontFamily: CHART_FONT,
      sansSerifFamily: CHART_FONT,
    },
  });
  return renderer.render().asPng();
}
