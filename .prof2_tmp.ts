import { axisCells, parseAxis } from "./src/cli/comparison.ts";
import { DEFAULT_AXES, DEFAULT_SCENARIO_YAML } from "./src/cli/default_scenario.ts";
import { executeScenario } from "./src/cli/scenario_execution.ts";
import { renderSvg, svgToPng } from "./src/cli/chart_render.ts";
import { timelineChart, ladderChart, freeBlocksChart } from "./src/cli/report_charts.ts";
import { encodeMapPng, guestPicture, hostPicture } from "./src/cli/memory_map_png.ts";
const cells = axisCells(DEFAULT_AXES.map(parseAxis)).slice(0, 8);
const t = { svg: 0, png: 0, map: 0 };
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
for (const cell of cells) {
  const sc = parseScenarioText(DEFAULT_SCENARIO_YAML, "x.yaml", cell.sets);
  const ex = executeScenario(sc);
  const s = ex.result.snapshots;
  let c = cpu();
  const charts = [timelineChart(ex.run.timeline, s), ladderChart(s), freeBlocksChart(s[0]!, s[s.length-1]!)].map(renderSvg);
  t.svg += cpu() - c; c = cpu();
  for (const ch of charts) svgToPng(ch.svg);
  t.png += cpu() - c; c = cpu();
  for (const n of ex.run.snapshots) { encodeMapPng(guestPicture(n.views.maps), 16); encodeMapPng(hostPicture(n.views.maps), 16); encodeMapPng(guestPicture(n.views.maps)); encodeMapPng(hostPicture(n.views.maps)); }
  t.map += cpu() - c;
}
console.log(t);
import { parseScenarioText } from "./src/cli/scenario_file.ts";
