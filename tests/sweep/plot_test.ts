import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { runSweep } from "../../lib/sweep/commands.ts";
import { compareSweep, loadSweeps } from "../../lib/sweep/compare.ts";
import { figureData, figureSpec, renderSvg, svgToPng } from "../../lib/sweep/plot.ts";
import { openStore } from "../../lib/store/store.ts";
import type { ConfigResult, SweepResults } from "../../lib/sweep/results.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";

const fake = fakeWorker();

/**
 * Two small sweeps run by the fake worker, whose evaluation reports
 * 1/checkpoint step + sample_steps/1000 (spread 0.01) and one network
 * evaluation per step (two with Heun). Sweep "pa" has no metric: block
 * (its evaluations record mmd then swd); "pb" trains longer.
 */
async function twoSweeps() {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-plot-" });
  const storePath = join(dir, "store.sqlite");
  const runsDir = join(dir, "runs");
  for (const [name, steps] of [["pa", "[100, 200]"], ["pb", "[100, 400]"]]) {
    const file = join(dir, `${name}.yaml`);
    fs.writeFileSync(
      file,
      `name: ${name}
model: ddpm
data: 8gaussians
metrics: [mmd, swd]
parameters:
  steps: {values: ${steps}}
  sampler: {values: [ddim, heun]}
  sample_steps: {values: [10, 30, 100]}
`,
    );
    const r = await runSweep({
      file,
      storePath,
      runsDir,
      concurrency: 2,
      workerCommand: fake,
      onEvent: () => {},
    });
    assert.equal(r.failed, 0);
  }
  return { dir, storePath };
}

/** The fake worker's metric at a training step and sampling step count. */
const fakeMmd = (step: number, sampleSteps: number) => 1 / step + sampleSteps / 1000;

Deno.test("compare --plot: series, axes, error bars and best point of known sweeps", async () => {
  const { dir, storePath } = await twoSweeps();
  const store = await openStore(storePath, { readOnly: true });
  try {
    // Without a metric: block, compare uses the first metric recorded (it showed an empty grid).
    const grid = await compareSweep({ store, sweeps: ["pa"] });
    assert.match(grid, /^pa: mmd \(minimize\), best over sampler per cell; \* = best/);
    assert.match(grid, /steps \\ sample_steps +10 +30 +100/);
    assert.match(grid, /\n200 +0\.01500\* +0\.03500 +0\.1050 *\n/, grid);

    // Two sweeps side by side: the same rows (every training step count either ran) and
    // columns, each sweep's best marked.
    const side = (await compareSweep({ store, sweeps: ["pa", "pb"] })).split("\n");
    assert.equal(
      side[0],
      "pa, pb: mmd (minimize), best over sampler per cell; * = best of each sweep",
    );
    assert.match(side[1], /^ +\| +pa +\| +pb$/);
    assert.match(side[2], /^steps \\ sample_steps +\| +10 +30 +100 +\| +10 +30 +100$/);
    // By hand from the worker's formula: 1/100 + s/1000, 1/200 + s/1000, 1/400 + s/1000.
    assert.match(
      side[3],
      /^100 +\| +0\.02000 +0\.04000 +0\.1100 +\| +0\.02000 +0\.04000 +0\.1100 *$/,
    );
    assert.match(side[4], /^200 +\| +0\.01500\* +0\.03500 +0\.1050 +\| +— +— +— *$/);
    assert.match(side[5], /^400 +\| +— +— +— +\| +0\.01250\* +0\.03250 +0\.1025 *$/);
    assert.deepEqual(side.slice(7), [
      "best of pa: steps=200 sample_steps=10 sampler=ddim",
      "best of pb: steps=400 sample_steps=10 sampler=ddim",
    ]);
    const csv = (await compareSweep({ store, sweeps: ["pa", "pb"], csv: true })).trim().split("\n");
    assert.equal(csv.length, 1 + 12 + 12);
    assert.match(csv[0], /^sweep,steps,sampler,sample_steps,/);
    assert.match(csv[12], /^pa,/);
    assert.match(csv[13], /^pb,/);
    const [pa, pb] = await loadSweeps(store, ["pa", "pb"]);
    const data = figureData([pa]);
    assert.equal(data.metric, "mmd");
    assert.equal(data.x, "nfe", "every evaluation recorded its NFE");
    assert.equal(data.by, "sampler");
    assert.deepEqual(data.others, ["steps"]);
    // Independently: each point is the best over training steps (200 beats 100), at NFE =
    // sample_steps for DDIM and twice that for Heun.
    const expected = ["ddim", "heun"].flatMap((sampler) =>
      [10, 30, 100].map((s) => ({
        series: sampler,
        x: sampler === "heun" ? 2 * s : s,
        value: fakeMmd(200, s),
      }))
    );
    assert.deepEqual(
      data.points.map((p) => ({ series: p.series, x: p.x, value: p.value })),
      expected,
    );
    for (const p of data.points) {
      assert.equal(p.spread, 0.01);
      assert.ok(
        Math.abs(p.lo - (p.value - 0.01)) < 1e-12 && Math.abs(p.hi - (p.value + 0.01)) < 1e-12,
      );
    }
    // NFE 10–200 spans a decade, mmd 0.015–0.105 does not.
    assert.deepEqual([data.logX, data.logY], [true, false]);
    assert.deepEqual(
      data.points.filter((p) => p.best).map((p) => [p.series, p.x]),
      [["ddim", 10]],
      "the first of equals: ddim at 10 steps ties Heun at 10 steps (NFE 20)",
    );

    const svg = await renderSvg(figureSpec(data));
    for (const text of ["mmd against NFE", "mmd (lower is better)", "sampler", "ddim", "heun"]) {
      assert.ok(svg.includes(`>${text}</text>`), `the SVG shows "${text}"`);
    }
    assert.ok(svg.includes(">NFE (network evaluations per sample)</text>"));
    assert.ok(svg.includes(">best: 0.015 (ddim, NFE 10)</text>"), "the best point is labelled");
    assert.match(svg, />sweep pa; each point the best over steps<[^]*>bars ±1 spread/);
    assert.match(svg, /X-axis titled 'NFE \(network evaluations per sample\)' for a log scale/);
    assert.match(svg, /Y-axis titled 'mmd \(lower is better\)' for a linear scale/);

    // By training steps against sampling steps, over two sweeps overlaid.
    const both = figureData([pa, pb], { by: "steps", x: "sample_steps" });
    assert.deepEqual(both.sweeps, ["pa", "pb"]);
    const byHand = [["pa", 100], ["pa", 200], ["pb", 100], ["pb", 400]].flatMap(([sweep, step]) =>
      [10, 30, 100].map((s) => ({
        sweep,
        series: String(step),
        x: s,
        value: fakeMmd(step as number, s),
      }))
    );
    assert.deepEqual(
      both.points.map((p) => ({ sweep: p.sweep, series: p.series, x: p.x, value: p.value })),
      byHand,
    );
    assert.deepEqual(
      both.points.filter((p) => p.best).map((p) => [p.sweep, p.series, p.x]),
      [["pa", "200", 10], ["pb", "400", 10]],
      "each sweep's best is marked",
    );
    const svg2 = await renderSvg(figureSpec(both));
    for (
      const text of [
        "mmd against sampling steps",
        "sampling steps",
        "sweep",
        "pa",
        "pb",
        "400",
        "best of pa: 0.015 (200, sampling steps 10)",
        "best of pb: 0.0125 (400, sampling steps 10)",
      ]
    ) {
      assert.ok(svg2.includes(`>${text}<`), `the overlay shows "${text}"`);
    }
    assert.throws(
      () => figureData([pa], { by: "sheduler" }),
      /--by sheduler: not a parameter of sweep pa/,
    );
    assert.throws(
      () => figureData([pa], { metric: "fid" }),
      /--metric fid: sweep pa recorded no such metric/,
    );

    // Through compare: the PNG is written and decodes as a PNG of twice the SVG's size.
    const png = join(dir, "out", "pa.png");
    const text = await compareSweep({ store, sweeps: ["pa", "pb"], plot: png });
    assert.match(
      text,
      /figure: .*pa\.png \(mmd against nfe, 4 series by sampler; best of pa: 0\.015/,
    );
    const bytes = fs.readFileSync(png);
    assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const width = Number(svg.match(/width="(\d+)"/)![1]);
    assert.ok(view.getUint32(16) > 1.5 * width, "rendered at twice the SVG's size");
    assert.equal(svgToPng(svg, 1).length > 1000, true);
    await assert.rejects(
      compareSweep({ store, sweeps: ["pa"], plot: join(dir, "x.pdf") }),
      /--plot .*x\.pdf: the file must end in \.svg or \.png/,
    );
  } finally {
    await store.close();
  }
});

Deno.test("log axes where values span a decade; a bar below zero is cut at a tenth of its value", () => {
  const r = (sample_steps: number, mmd: number, spread: number): ConfigResult => ({
    sweep: "s",
    params: { sample_steps, sampler: "ddim" },
    metrics: { mmd },
    spreads: { mmd: spread },
    state: "done",
  });
  const sweep: SweepResults = {
    name: "s",
    experiment: { metric: { name: "mmd", goal: "minimize" }, parameters: {} } as never,
    results: [r(10, 1, 0.1), r(100, 0.01, 0.02), r(1000, 0.05, 0.01)],
    varying: ["sample_steps"],
  };
  const data = figureData([sweep]);
  assert.equal(data.x, "sample_steps", "no NFE recorded: sampling steps");
  assert.equal(data.by, undefined, "nothing else varies: one series, named after the metric");
  assert.deepEqual([data.logX, data.logY, data.clipped], [true, true, 1]);
  assert.deepEqual(data.points.map((p) => [p.series, p.x, p.value, p.lo, p.best]), [
    ["mmd", 10, 1, 0.9, false],
    ["mmd", 100, 0.01, 0.001, true],
    ["mmd", 1000, 0.05, 0.04, false],
  ]);
  const spec = JSON.stringify(figureSpec(data));
  assert.match(spec, /"scale":\{"type":"log"\}/);
  assert.match(spec, /1 of them cut at a tenth of the value/);
});
