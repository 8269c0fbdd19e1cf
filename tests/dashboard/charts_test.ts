import assert from "node:assert/strict";
import {
  bin2d,
  brailleChart,
  densityPlot,
  duration,
  fit,
  fitLine,
  grey,
  halfBlock,
  hbar,
  histogram,
  plain,
  scaleColour,
  short,
  shrink,
  sparkline,
  toAnsi,
  withAxes,
  wrap,
} from "../../lib/dashboard/charts.ts";

Deno.test("braille chart: a rising segment in one cell, linear and log scale", () => {
  // 2×4 dots; (0,0) → pixel (0,3) and (1,1) → pixel (1,0); Bresenham visits
  // (0,3) (0,2) (1,1) (1,0): bits 0x40 | 0x04 | 0x10 | 0x08 = 0x5c.
  const lin = brailleChart([{ label: "a", points: [[0, 0], [1, 1]] }], { width: 1, height: 1 });
  assert.equal(plain(lin.lines[0]), String.fromCharCode(0x285c));
  assert.deepEqual([lin.xMin, lin.xMax, lin.yMin, lin.yMax], [0, 1, 0, 1]);
  // On a log scale 1 and 100 are 0 and 2 decades: the same picture.
  const log = brailleChart([{ label: "a", points: [[0, 1], [1, 100]] }], {
    width: 1,
    height: 1,
    log: true,
  });
  assert.equal(plain(log.lines[0]), String.fromCharCode(0x285c));
  assert.deepEqual([log.yMin, log.yMax], [1, 100]);
  // A non-positive value is left out on a log scale, kept on a linear one.
  const skip = brailleChart([{ label: "a", points: [[0, 0], [1, 1]] }], {
    width: 2,
    height: 1,
    log: true,
  });
  assert.equal(skip.xMin, 1);
});

Deno.test("braille chart: a flat line fills the middle row, each series keeps its colour", () => {
  const c = brailleChart([
    { label: "a", points: [[0, 5], [3, 5]], colour: 11 },
    { label: "b", points: [[0, 1], [3, 1]], colour: 22 },
  ], { width: 2, height: 2, yMin: 0, yMax: 6 });
  // y=5 → pixel row round((1-5/6)·7) = 1 (cell row 0, dot row 1: bits 0x02|0x10);
  // y=1 → pixel row round((1-1/6)·7) = 6 (cell row 1, dot row 2: bits 0x04|0x20).
  assert.equal(plain(c.lines[0]), String.fromCharCode(0x2812).repeat(2));
  assert.equal(plain(c.lines[1]), String.fromCharCode(0x2824).repeat(2));
  assert.deepEqual(c.lines[0].map((s) => s.fg), [11]);
  assert.deepEqual(c.lines[1].map((s) => s.fg), [22]);
  const axes = withAxes(c, { xLabel: "step" });
  assert.equal(axes.length, 3);
  assert.equal(plain(axes[0]), "     6│" + plain(c.lines[0]));
  assert.equal(plain(axes[1]), "     0│" + plain(c.lines[1]));
  assert.ok(plain(axes[2]).startsWith("      └"));
});

Deno.test("braille chart: no drawable point gives blank lines", () => {
  const c = brailleChart([{ label: "a", points: [[0, NaN]] }], { width: 3, height: 2 });
  assert.deepEqual(c.lines.map(plain), ["   ", "   "]);
  assert.ok(Number.isNaN(c.yMin));
});

Deno.test("horizontal bars in eighth blocks", () => {
  assert.equal(hbar(0.5, 1, 4), "██  ");
  assert.equal(hbar(0.3125, 1, 4), "█▎  "); // 10 eighths
  assert.equal(hbar(2, 1, 2), "██");
  assert.equal(hbar(0, 1, 3), "   ");
  assert.equal(hbar(NaN, 1, 2), "  ");
});

Deno.test("half-block greyscale: upper pixel foreground, lower background", () => {
  assert.equal(grey(0), 232);
  assert.equal(grey(255), 255);
  const img = { width: 2, height: 3, data: new Uint8Array([0, 255, 255, 0, 128, 128]) };
  const lines = halfBlock(img);
  assert.equal(lines.length, 2);
  assert.deepEqual(lines[0].map((s) => [s.text, s.fg, s.bg]), [["▀", 232, 255], ["▀", 255, 232]]);
  // The odd last row gets a black lower half.
  assert.deepEqual(lines[1].map((s) => [s.fg, s.bg]), [[grey(128), 232], [grey(128), 232]]);
  assert.equal(toAnsi([lines[0][0]]), "\x1b[38;5;232;48;5;255m▀\x1b[0m");
});

Deno.test("shrink box-averages and crops from the top left", () => {
  const img = { width: 4, height: 2, data: new Uint8Array([0, 100, 200, 200, 100, 200, 0, 0]) };
  assert.deepEqual(Array.from(shrink(img, 2, 10, 10).data), [100, 100]);
  assert.deepEqual(Array.from(shrink(img, 1, 3, 1).data), [0, 100, 200]);
});

Deno.test("2-D density: counts per cell, shades relative to the fullest, data as dots", () => {
  const box = { x0: 0, x1: 2, y0: 0, y1: 2 };
  // Row 0 is the top (y in [1, 2]).
  assert.deepEqual(bin2d([0.5, 1.5, 1.5, 1.5, 1.5, 1.6, 0.5, 0.5], box, 2, 2), [1, 2, 1, 0]);
  const samples = [0.5, 1.5, 1.5, 1.5, 1.5, 1.6, 1.5, 1.7];
  const real = [0, 0, 2, 2, 0.5, 0.5];
  const lines = densityPlot(samples, real, 2, 2);
  // Real bounds widened by 5 %: [−0.1, 2.1]². Samples: 1 top-left, 3 top-right.
  assert.deepEqual(lines.map(plain), ["▒█", "· "]);
  assert.equal(lines[0][0].fg, 203);
  assert.equal(lines[1][0].fg, 244);
});

Deno.test("histograms and sparklines", () => {
  assert.deepEqual(histogram([0, 0.5, 1, 2, NaN], 0, 1, 2), [1, 2]);
  assert.deepEqual(histogram([3, 3], 3, 3, 2), [2, 0]);
  assert.equal(sparkline([0, 1, 2, 4]), " ▂▄█");
  assert.equal(sparkline([1, 1], 4), "▂▂");
});

Deno.test("numbers, durations, colours and fitting", () => {
  assert.equal(short(0.012345), "0.01235");
  assert.equal(short(123456), "1.235e5");
  assert.equal(short(0.0001234, 6), "1.2e-4");
  assert.equal(short(undefined), "—");
  assert.equal(short(NaN), "—");
  assert.equal(duration(42_000), "42s");
  assert.equal(duration(65_000), "1m05s");
  assert.equal(duration(7_620_000), "2h07m");
  assert.equal(duration(undefined), "—");
  assert.equal(scaleColour(0), 46);
  assert.equal(scaleColour(1), 196);
  assert.equal(fit("abcdef", 4), "abc…");
  assert.equal(fit("ab", 4, "right"), "  ab");
  assert.deepEqual(fitLine([{ text: "abc", fg: 1 }, { text: "def" }], 4), [
    { text: "abc", fg: 1 },
    { text: "d" },
  ]);
  assert.equal(plain(fitLine([{ text: "a" }], 3)), "a  ");
});

Deno.test("wrap: at a space in the line's second half, else mid-word; never wider than asked", () => {
  assert.deepEqual(wrap("error: out of memory", 10), ["error: out", "of memory"]);
  assert.deepEqual(wrap("RangeError:xyz", 5), ["Range", "Error", ":xyz"]);
  assert.deepEqual(wrap("short", 10), ["short"]);
  assert.deepEqual(wrap("", 10), [""]);
  const long = "error: Uncaught (in promise) RangeError: fake out of memory at sampling step 37";
  for (const w of [20, 38, 48]) {
    const lines = wrap(long, w);
    assert.ok(lines.every((l) => l.length <= w), lines.join("|"));
    assert.equal(lines.join(" "), long);
  }
});
