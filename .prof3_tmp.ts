import { svgToPng } from "./src/cli/chart_render.ts";
import { encode } from "fast-png";
const tiny = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text x="1" y="9">a</text></svg>';
svgToPng(tiny);
let t = performance.now(); for (let i = 0; i < 20; i++) svgToPng(tiny); console.log("tiny resvg ms", (performance.now()-t)/20);
const data = new Uint8Array(1024*128); for (let i=0;i<data.length;i++) data[i] = (i>>10)%7;
const pal = Array.from({length: 8}, (_, i) => [i*30, i*20, i*10]);
for (const level of [undefined, 1, 6, 9]) {
  t = performance.now(); let n = 0;
  for (let i = 0; i < 20; i++) n = encode({width:1024,height:128,data,depth:8,channels:1,palette:pal}, level === undefined ? undefined : {zlib:{level}}).length;
  console.log("png level", level, (performance.now()-t)/20, n);
}
