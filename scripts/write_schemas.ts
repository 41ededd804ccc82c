// Regenerates the published JSON Schemas (docs/result.schema.json, docs/scenario.schema.json)
// from the zod schemas in src/cli; the tests fail while a committed schema is out of date.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { resultJsonSchema } from "../src/cli/result_schema.ts";
import { scenarioJsonSchema } from "../src/cli/scenario_schema.ts";

const docs = join(import.meta.dirname, "..", "docs");
writeFileSync(
  join(docs, "result.schema.json"),
  `${JSON.stringify(resultJsonSchema(), undefined, 2)}\n`,
);
writeFileSync(
  join(docs, "scenario.schema.json"),
  `${JSON.stringify(scenarioJsonSchema(), undefined, 2)}\n`,
);
