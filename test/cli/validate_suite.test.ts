// Goal: `balloonlab validate DIR`'s summary (validate_suite.ts) and validation.html's verdict
// table (validation_report.ts) say, per scenario and quantity, what disagrees and by how much.
// Method: hand-made verdicts, no QEMU; the end-to-end run is validate_small.test.ts.
import { describe, expect, test } from "vitest";
import type { Verdict } from "../../src/cli/validate_compare.ts";
import {
  largestDisagreement,
  scenarioFiles,
  suiteRow,
  suiteTable,
} from "../../src/cli/validate_suite.ts";
import { verdictTable } from "../../src/cli/validation_report.ts";

function v(quantity: string, model: number, real: number, tolerance: number): Verdict {
  const difference = real - model;
  const verdict = Math.abs(difference) <= tolerance ? "pass" : "fail";
  return { quantity, unit: "kB", model, real, difference, tolerance, verdict };
}

const settings = { backing: "anon", freePageReporting: true, guestBytes: 1 << 30, wallMs: 1 };

describe("validate suite summary", () => {
  test("counts verdicts and picks the disagreement furthest outside its tolerance", () => {
    const row = suiteRow("anon", settings, {
      booted: { verdicts: [v("host.ramResident_kB", 0, 104858, 52429), v("x", 1, 1, 10)] },
      inflated: { verdicts: [v("host.ramThp_kB", 0, 524288, 52429)] },
    });
    expect([row.pass, row.fail, row.info]).toEqual([1, 2, 0]);
    expect(largestDisagreement(row)?.quantity).toBe("host.ramThp_kB");
    expect(row.disagreements[1]?.percentOfGuest).toBe(50);
    const table = suiteTable([row]);
    expect(table).toContain("inflated host.ramThp_kB +524288 kB (50% of RAM)");
    expect(table.split("\n")).toHaveLength(2);
  });

  test("the shipped validation scenarios are found in name order", () => {
    const files = scenarioFiles("validate/scenarios");
    expect(files.map((file) => file.replace(/.*\//, ""))).toEqual([
      "anon-no-reporting.yaml",
      "anon-reporting.yaml",
      "deflate.yaml",
      "fragmented.yaml",
      "host-pressure.yaml",
      "hugetlbfs.yaml",
      "memfd.yaml",
      "pagecache.yaml",
      "small.yaml",
      "tmpfs-huge.yaml",
      "unmovable.yaml",
    ]);
  });

  test("the verdict table has model, real, difference, tolerance and verdict", () => {
    const html = verdictTable([v("host.ramResident_kB", 100, 250, 50)]);
    expect(html).toContain('<table class="verdicts">');
    expect(html).toContain("<td>100</td><td>250</td><td>150</td><td>&plusmn;50</td>");
    expect(html).toContain(">fail</b>");
  });
});
