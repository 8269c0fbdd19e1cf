import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { DATASETS, describeDataset } from "../../lib/data/registry.ts";
import { BUILTIN_TABLES } from "../../lib/data/tabular.ts";
import { TOY_DATASETS } from "../../lib/data/toy2d.ts";

Deno.test("describeDataset: image, points, built-in and CSV tables", () => {
  const m = describeDataset("mnist");
  assert.equal(m.kind, "image");
  if (m.kind === "image") assert.deepEqual([m.height, m.width, m.sizes.train], [28, 28, 60000]);
  for (const t of TOY_DATASETS) {
    assert.deepEqual(describeDataset(t), { kind: "points", name: t, dim: 2 });
  }
  for (const t of BUILTIN_TABLES) {
    assert.deepEqual(describeDataset(t), { kind: "table", name: t, source: "builtin" });
  }
  const path = join(Deno.makeTempDirSync({ prefix: "dmw-registry-" }), "my.csv");
  fs.writeFileSync(path, "a,b\n1,2\n");
  assert.deepEqual(describeDataset(path), { kind: "table", name: path, source: "csv", path });
});

Deno.test("describeDataset: unknown names list the valid ones; a missing CSV names its path", () => {
  assert.throws(() => describeDataset("minst"), (e: Error) => {
    assert.match(e.message, /unknown dataset "minst" \(did you mean "mnist"\?\)/);
    for (const n of DATASETS) assert.ok(e.message.includes(n), n);
    assert.match(e.message, /\.csv/);
    return true;
  });
  assert.throws(
    () => describeDataset("/no/such/file.csv"),
    /\/no\/such\/file\.csv: no such CSV file/,
  );
});
