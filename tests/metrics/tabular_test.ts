import assert from "node:assert/strict";
import { selectRows, type Table, tableToRecords } from "../../lib/data/tabular.ts";
import { computeMetric, defaultMetrics } from "../../lib/metrics/suite.ts";
import {
  associations,
  classificationScores,
  closestDistances,
  columnDistances,
  correlationDifference,
  dcr,
  median,
  mlEfficacy,
  samplesToTable,
} from "../../lib/metrics/tabular.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import type { RunConfig } from "../../lib/models/model.ts";
import { runTables, TABDDPM_KEYS } from "../../lib/models/tabddpm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose } from "../helpers.ts";

/** A table from columns: number arrays are numeric, string arrays categorical (sorted labels). */
function table(cols: Record<string, number[] | string[]>, name = "t"): Table {
  const entries = Object.entries(cols);
  const rows = entries[0][1].length;
  const columns = entries.map(([c, v]) =>
    typeof v[0] === "number"
      ? {
        name: c,
        type: "numeric" as const,
        integer: false,
        min: Math.min(...(v as number[])),
        max: Math.max(...(v as number[])),
      }
      : {
        name: c,
        type: "categorical" as const,
        integer: false,
        categories: [...new Set(v as string[])].sort(),
      }
  );
  return {
    name,
    columns,
    rows,
    numeric: Object.fromEntries(
      entries.filter(([, v]) => typeof v[0] === "number").map((
        [c, v],
      ) => [c, Float64Array.from(v as number[])]),
    ),
    categorical: Object.fromEntries(
      columns.filter((c) => c.categories).map((c) => [
        c.name,
        Int32Array.from(cols[c.name] as string[], (l) => c.categories!.indexOf(l)),
      ]),
    ),
    blanks: { columns: [], droppedRows: 0, droppedColumns: [] },
  };
}

/** `t` with the same columns as `like` (categories of `like`), rows given by column. */
function like(base: Table, cols: Record<string, number[] | string[]>): Table {
  const t = table(cols, "synth");
  return {
    ...t,
    columns: base.columns,
    categorical: Object.fromEntries(
      base.columns.filter((c) => c.categories).map((c) => [
        c.name,
        Int32Array.from(cols[c.name] as string[], (l) => c.categories!.indexOf(l)),
      ]),
    ),
  };
}

/** W1 as ∫ |F_a(x) − F_b(x)| dx over the merged breakpoints (the CDF form, not the quantile one). */
function w1ByCdf(a: number[], b: number[]): number {
  const xs = [...a, ...b].sort((p, q) => p - q);
  const cdf = (v: number[], x: number) => v.filter((y) => y <= x).length / v.length;
  let total = 0;
  for (let i = 0; i + 1 < xs.length; i++) {
    total += Math.abs(cdf(a, xs[i]) - cdf(b, xs[i])) * (xs[i + 1] - xs[i]);
  }
  return total;
}

Deno.test("column distances: W1 over the real std, and TV, by hand", () => {
  const real = table({ x: [0, 1, 2, 3], c: ["a", "a", "b", "c"] });
  const synth = like(real, { x: [1, 2, 3, 4], c: ["a", "b", "b", "b"] });
  const d = columnDistances(real, synth);
  // W1 = 1 (a shift by 1); std of [0, 1, 2, 3] = √(5/3).
  assertClose(d.wasserstein.x, 1 / Math.sqrt(5 / 3), 1e-12);
  // p = (1/2, 1/4, 1/4), q = (1/4, 3/4, 0): ½(1/4 + 1/2 + 1/4) = 1/2.
  assertClose(d.tv.c, 0.5, 1e-12);
});

Deno.test("column W1 equals the CDF-difference integral on unequal random samples", () => {
  const rng = new Rng(3);
  const a = Array.from({ length: 37 }, () => rng.normal());
  const b = Array.from({ length: 23 }, () => 0.5 + 2 * rng.normal());
  const real = table({ x: a });
  const synth = table({ x: b });
  const std = Math.sqrt(
    a.reduce((s, v) => s + (v - a.reduce((p, q) => p + q, 0) / a.length) ** 2, 0) / (a.length - 1),
  );
  assertClose(columnDistances(real, synth).wasserstein.x, w1ByCdf(a, b) / std, 1e-9);
});

Deno.test("identical tables: every distance is 0, every DCR is 0", () => {
  const rng = new Rng(4);
  const n = 50;
  const t = table({
    x: Array.from({ length: n }, () => rng.normal()),
    y: Array.from({ length: n }, () => rng.uniform()),
    c: Array.from({ length: n }, () => ["p", "q", "r"][rng.int(3)]),
    d: Array.from({ length: n }, () => ["u", "v"][rng.int(2)]),
  });
  const copy = selectRows(t, rng.permutation(n));
  const d = columnDistances(t, copy);
  assert.deepEqual(d, { wasserstein: { x: 0, y: 0 }, tv: { c: 0, d: 0 } });
  assertClose(correlationDifference(t, copy), 0, 1e-12);
  assert.equal(dcr(copy, t), 0);
  assert.ok(closestDistances(copy, t).every((v) => v === 0));
});

Deno.test("associations: Pearson, Cramér's V and the correlation ratio by hand", () => {
  const t = table({
    x: [1, 2, 3, 4, 5, 6, 7, 8],
    y: [2, 4, 5, 4, 2, 4, 5, 4],
    a: ["p", "p", "p", "q", "p", "q", "q", "q"],
    b: ["u", "u", "u", "v", "v", "u", "v", "v"],
  });
  const m = associations(t);
  const at = (i: number, j: number) => m[i * 4 + j];
  // x, y: Σdxdy / √(Σdx² Σdy²) with x̄ = 4.5, ȳ = 3.75.
  const dx = [1, 2, 3, 4, 5, 6, 7, 8].map((v) => v - 4.5);
  const dy = [2, 4, 5, 4, 2, 4, 5, 4].map((v) => v - 3.75);
  const r = dx.reduce((s, v, i) => s + v * dy[i], 0) /
    Math.sqrt(dx.reduce((s, v) => s + v * v, 0) * dy.reduce((s, v) => s + v * v, 0));
  assertClose(at(0, 1), r, 1e-12, 0, "pearson");
  // a × b counts [[3, 1], [1, 3]]: χ² = n(ad − bc)² / (row and column sums) = 8·64/256 = 2;
  // V = √(χ² / n / (2 − 1)) = 1/2.
  assertClose(at(2, 3), 0.5, 1e-12, 0, "cramér's V");
  // x on a: groups {1,2,3,5} (mean 2.75) and {4,6,7,8} (mean 6.25) around 4.5;
  // between = 4·1.75² + 4·1.75² = 24.5, total = Σ(x − 4.5)² = 42; η = √(24.5/42).
  assertClose(at(0, 2), Math.sqrt(24.5 / 42), 1e-12, 0, "correlation ratio");
  assert.equal(at(2, 0), at(0, 2));
  assert.equal(at(1, 1), 1);
  // Against a table whose only change is y reversed, only the x–y and y–{a,b} entries move.
  const flipped = like(t, {
    x: [1, 2, 3, 4, 5, 6, 7, 8],
    y: [4, 5, 4, 2, 4, 5, 4, 2],
    a: ["p", "p", "p", "q", "p", "q", "q", "q"],
    b: ["u", "u", "u", "v", "v", "u", "v", "v"],
  });
  const m2 = associations(flipped);
  const pairs = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]];
  const want = pairs.reduce((s, [i, j]) => s + Math.abs(m[i * 4 + j] - m2[i * 4 + j]), 0) / 6;
  assertClose(correlationDifference(t, flipped), want, 1e-12);
  assert.ok(want > 0);
});

Deno.test("efficacy: a separable class scores accuracy 1; an exact linear target R² ≈ 1", () => {
  const rng = new Rng(6);
  const rows = (n: number) => {
    const x = Array.from({ length: n }, () => rng.normal());
    const z = Array.from({ length: n }, () => rng.normal());
    const c = Array.from({ length: n }, () => ["r", "s", "t"][rng.int(3)]);
    // The class is x's sign, pushed 1 away from the boundary; y is exactly linear.
    const cls = x.map((v) => (v > 0 ? "pos" : "neg"));
    const xs = x.map((v) => v + Math.sign(v));
    const y = xs.map((v, i) => 2 * v - 3 * z[i] + (c[i] === "s" ? 1 : 0) + 5);
    return table({ x: xs, z, c, cls, y });
  };
  const train = rows(200);
  const test = rows(100);
  const clf = mlEfficacy(train, test, "cls");
  assert.equal(clf.task, "classification");
  assert.equal(clf.score, 1);
  assert.equal(clf.macroF1, 1);
  const reg = mlEfficacy(train, test, "y");
  assert.equal(reg.measure, "r2");
  assert.ok(reg.score > 0.999, `R² ${reg.score}`);
  assert.deepEqual(mlEfficacy(train, test, "cls"), clf, "deterministic");
  assert.throws(() => mlEfficacy(train, test, "cl"), /target "cl" is not a column/);
});

Deno.test("efficacy of a target the features cannot predict is near chance", () => {
  const rng = new Rng(7);
  const rows = (n: number) =>
    table({
      x: Array.from({ length: n }, () => rng.normal()),
      cls: Array.from({ length: n }, () => ["a", "b"][rng.int(2)]),
      y: Array.from({ length: n }, () => rng.normal()),
    });
  const train = rows(300);
  const test = rows(300);
  assert.ok(Math.abs(mlEfficacy(train, test, "cls").score - 0.5) < 0.1);
  assert.ok(mlEfficacy(train, test, "y").score < 0.05);
});

Deno.test("accuracy and macro-F1 by hand", () => {
  // Class 0: tp 1, fn 1 → F1 2/3; class 1: tp 2, fp 1 → F1 4/5.
  const s = classificationScores(Int32Array.from([0, 0, 1, 1]), Int32Array.from([0, 1, 1, 1]));
  assert.equal(s.score, 0.75);
  assertClose(s.macroF1, (2 / 3 + 4 / 5) / 2, 1e-12);
});

Deno.test("DCR: by hand, and against a brute-force nearest neighbour", () => {
  const real = table({ x: [0, 2], c: ["a", "b"] });
  const synth = like(real, { x: [1, 2], c: ["a", "a"] });
  // std(x) = √2. Row (1, a): to (0, a) √(1/2); to (2, b) √(1/2 + 1). Row (2, a): to (2, b) 1.
  const d = closestDistances(synth, real);
  assertClose(d[0], Math.sqrt(0.5), 1e-12);
  assertClose(d[1], 1, 1e-12);
  assertClose(dcr(synth, real), (Math.sqrt(0.5) + 1) / 2, 1e-12);

  const rng = new Rng(8);
  const make = (n: number) =>
    table({
      u: Array.from({ length: n }, () => 10 * rng.normal()),
      v: Array.from({ length: n }, () => rng.uniform()),
      k: Array.from({ length: n }, () => ["e", "f", "g"][rng.int(3)]),
    });
  const r = make(40);
  const q = { ...make(15), columns: r.columns };
  const std = (v: Float64Array) => {
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
  };
  const [su, sv] = [std(r.numeric.u), std(r.numeric.v)];
  const got = closestDistances(q, r);
  for (let i = 0; i < q.rows; i++) {
    let best = Infinity;
    for (let j = 0; j < r.rows; j++) {
      const dd = ((q.numeric.u[i] - r.numeric.u[j]) / su) ** 2 +
        ((q.numeric.v[i] - r.numeric.v[j]) / sv) ** 2 +
        (r.columns[2].categories![q.categorical.k[i]] ===
            r.columns[2].categories![r.categorical.k[j]]
          ? 0
          : 1);
      best = Math.min(best, Math.sqrt(dd));
    }
    assertClose(got[i], best, 1e-12, 0, `row ${i}`);
  }
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
});

Deno.test("samples → table: labels to codes, blank cells to the missing category; errors say where", () => {
  const real = table({ x: [0, 2], c: ["__missing__", "b"] });
  const t = samplesToTable(["c", "x"], [["b", 1.5], ["", 2]], real);
  assert.deepEqual(Array.from(t.numeric.x), [1.5, 2]);
  assert.deepEqual(Array.from(t.categorical.c), [1, 0]);
  assert.throws(
    () => samplesToTable(["c", "x"], [["b", 1], ["z", 2]], real),
    /row 2 column "c": "z" is not one of its categories/,
  );
  assert.throws(() => samplesToTable(["x"], [[1]], real), /no column "c"/);
});

/** A penguins run configuration (no run directory is needed for the metrics). */
function penguinsConfig(set: RunConfig = {}): RunConfig {
  return {
    model: "tabddpm",
    data: "penguins",
    ...resolveConfig(TABDDPM_KEYS, { target: "Species", ...set }),
  };
}

Deno.test("suite: the training rows as samples score 0 distances and the real efficacy", async () => {
  const config = penguinsConfig();
  const { train, holdout } = runTables(config);
  assert.equal(train.rows + holdout.rows, 342);
  assert.equal(holdout.rows, Math.round(342 * 0.2));
  const header = train.columns.map((c) => c.name);
  const rows = tableToRecords(train, { missingAsNull: false }).map((r) =>
    header.map((h) => (r[h] === "__missing__" ? "" : r[h]) as string | number)
  );
  const samples = { kind: "table" as const, header, rows };
  const ctx = { data: "penguins", seed: 0, config };
  const value = async (m: string) => (await computeMetric(m, samples, ctx)).value;
  assert.equal(await value("column-wasserstein"), 0);
  assert.equal(await value("column-tv"), 0);
  assert.equal(await value("corr-diff"), 0);
  assert.equal(await value("dcr"), 0);
  const real = await computeMetric("efficacy-real", samples, ctx);
  const synth = await computeMetric("efficacy-synthetic", samples, ctx);
  assert.equal(synth.value, real.value);
  assert.equal(real.n, holdout.rows);
  assert.ok(real.value > 0.95, `species from the other columns: ${real.value}`);
  assert.ok(real.spread > 0 && real.spread < 0.05);
  await assert.rejects(
    () => computeMetric("corr-dif", samples, ctx),
    /unknown metric "corr-dif" for table samples \(did you mean "corr-diff"\?\)/,
  );
  await assert.rejects(
    () =>
      computeMetric("efficacy-real", samples, { ...ctx, config: penguinsConfig({ target: "" }) }),
    /no target column; name one with --set target=COLUMN/,
  );
  const byIsland = await computeMetric("efficacy-real", samples, {
    ...ctx,
    extra: { target: "Island" },
  });
  assert.equal(byIsland.target, "Island");
  assert.deepEqual(defaultMetrics("penguins", config), [
    "column-wasserstein",
    "column-tv",
    "corr-diff",
    "efficacy-real",
    "efficacy-synthetic",
    "dcr",
  ]);
  assert.deepEqual(defaultMetrics("penguins", penguinsConfig({ holdout: 0 })), [
    "column-wasserstein",
    "column-tv",
    "corr-diff",
    "dcr",
  ]);
});
