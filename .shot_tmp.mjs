import { chromium } from "playwright-core";
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox","--disable-gpu","--disable-quic","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync"] });
const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
const errors = [];
page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") errors.push(m.type() + ": " + m.text()); });
page.on("pageerror", (e) => errors.push("pageerror " + e.message));
const t = performance.now();
await page.goto("file://" + process.argv[2]);
console.log("load ms", performance.now() - t);
console.log("errors", errors);
console.log("svgs", await page.locator("svg").count());
console.log(await page.$$eval("img.map", (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight, i.complete])));
await page.screenshot({ path: process.argv[3], fullPage: true });
await browser.close();
