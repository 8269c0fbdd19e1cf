import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { grey, plain } from "../../lib/dashboard/charts.ts";
import { drawPreview, readPreview, tableHistograms } from "../../lib/dashboard/samples.ts";
import { imageGrid, writePng } from "../../lib/runtime/png.ts";

Deno.test("MNIST-like grid PNG: half-block greyscale, shrunk 4× and cropped", () => {
  const dir = Deno.makeTempDirSync();
  const path = join(dir, "s.png");
  // A white and a black 28×28 "digit": a 2-column grid, scale 2, 2-pixel gutters of level 40.
  const images = new Float32Array(2 * 28 * 28);
  images.fill(1, 0, 28 * 28);
  images.fill(-1, 28 * 28);
  writePng(path, imageGrid(images, 2, 28, 28));
  const p = readPreview([{ name: "samples/k.png", bytes: fs.readFileSync(path) }], "mnist");
  assert.equal(p.kind, "image");
  if (p.kind !== "image") return;
  assert.deepEqual([p.image.width, p.image.height], [118, 60]);
  const lines = drawPreview(p, 30, 8);
  // 118/4 → 29 columns; 60/4 → 15 pixel rows → 8 lines.
  assert.equal(lines.length, 8);
  assert.equal(plain(lines[0]), "▀".repeat(29));
  // Column 1, pixel rows 0–1: rows 0–3 of the PNG are half gutter (40), half white.
  assert.deepEqual([lines[0][1].fg, lines[0][1].bg], [grey(148), grey(255)]);
  assert.deepEqual([lines[1][1].fg, lines[1][1].bg], [grey(255), grey(255)]);
  // Column 16 covers PNG columns 64–67: the black digit.
  assert.deepEqual([lines[1][16].fg, lines[1][16].bg], [grey(0), grey(0)]);
});

Deno.test("2-D samples: a density over draws of the data", () => {
  const bytes = new TextEncoder().encode("x,y\n2,2\n2,2\n-2,-2\n");
  const p = readPreview([{ name: "samples/k.csv", bytes }], "8gaussians");
  assert.equal(p.kind, "points");
  if (p.kind !== "points") return;
  assert.equal(p.real!.length, 4000);
  const lines = drawPreview(p, 20, 8);
  assert.equal(lines.length, 8);
  const text = lines.map(plain).join("\n");
  assert.equal([...text].filter((c) => c === "█").length, 1);
  assert.equal([...text].filter((c) => c === "▒").length, 1);
  assert.ok(text.includes("·"), "the data shows where there are no samples");
});

Deno.test("table samples: histograms beside the real penguins table", () => {
  const cols = tableHistograms(
    ["Species", "Beak Length (mm)"],
    [["Adelie", "32.1"], ["Adelie", "59.6"]],
    "penguins",
  );
  // Real species: Adelie 152, Chinstrap 68, Gentoo 124 of 344.
  assert.deepEqual(cols[0].sample, [1, 0, 0]);
  assert.deepEqual(cols[0].real, [152 / 344, 68 / 344, 124 / 344]);
  // Beak length over the real range [32.1, 59.6] in 12 bins: the two ends.
  assert.equal(cols[1].sample[0], 0.5);
  assert.equal(cols[1].sample[11], 0.5);
  assert.equal(cols[1].real!.reduce((a, b) => a + b, 0).toFixed(6), "1.000000");
  const lines = drawPreview({ kind: "table", path: "", columns: cols }, 40, 5);
  assert.equal(lines.length, 2);
  assert.match(plain(lines[0]), /^Species +█ {2}.* │ ▄▂▃/);
  // A table that cannot be loaded: samples alone, numeric columns inferred.
  const alone = tableHistograms(["a", "b"], [["1", "x"], ["2", "y"]], "/no/such.csv");
  assert.equal(alone[0].real, undefined);
  assert.deepEqual(alone[1].sample, [0.5, 0.5]);
});

Deno.test("no sample file: an error", () => {
  assert.throws(() => readPreview([], "mnist"), /no sample files/);
});
