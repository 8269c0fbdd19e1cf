import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { bandName, writeReport } from "../../lib/sweep/report.ts";
import { buildFixture, fixtureMmd } from "../dashboard/fixture.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";

const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
const fake = fakeWorker();

/** Runs the experiment `yaml` with the fake worker (`env`: its variables) in a fresh folder. */
async function fakeSweep(name: string, yaml: string, env: string[] = []) {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-report-" });
  const file = join(dir, `${name}.yaml`);
  fs.writeFileSync(file, yaml);
  const storePath = join(dir, "store.sqlite");
  const r = await runSweep({
    file,
    storePath,
    runsDir: join(dir, "runs"),
    concurrency: 2,
    workerCommand: env.length ? ["env", ...env, ...fake] : fake,
    onEvent: () => {},
  });
  assert.equal(r.failed, 0);
  return { dir, storePath };
}

Deno.test("band names as the dashboard shows them", () => {
  assert.deepEqual([0, 1, 2, 3].map((i) => bandName(i, 4)), [
    "t .00–.25",
    "t .25–.50",
    "t .50–.75",
    "t .75–1.00",
  ]);
});

Deno.test("report: README with grid, figures and configuration of a known sweep", async () => {
  // The fake worker: mmd = 1/checkpoint step + sample_steps/1000, spread 0.01; bands 1, 2, 3, 4;
  // its loss is lr/0.001 / step.
  const { dir, storePath } = await fakeSweep(
    "rep",
    `name: rep
description: two schedules by mmd
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 200
metrics: [mmd]
parameters:
  schedule: {values: [linear, cosine]}
  lr: {values: [0.001, 0.002]}
  sample_steps: {values: [10, 100]}
`,
  );
  const out = join(dir, "report");
  // Through the command line, as a user runs it.
  const cmd = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "report", "rep", "--out", out, "--store", storePath],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(cmd.code, 0, new TextDecoder().decode(cmd.stderr));
  assert.match(new TextDecoder().decode(cmd.stdout), /^wrote .*README\.md, .*mmd\.svg/);
  const names = fs.readdirSync(out).sort();
  assert.deepEqual(names, ["README.md", "loss.png", "loss.svg", "mmd.png", "mmd.svg"]);
  const md = fs.readFileSync(join(out, "README.md"), "utf8");
  assert.match(md, /^# Sweep rep\n\ntwo schedules by mmd\n/);
  assert.match(md, /ddpm on 8gaussians, 8 configurations \(8 done\), compared by mmd/);
  // By hand: every cell is 1/200 + steps/1000 whatever the schedule and lr; the first of equals
  // (linear, 10) is the best.
  assert.ok(
    md.includes(
      "| schedule \\ sample_steps |          10 |    100 |\n" +
        "| ----------------------- | ----------: | -----: |\n" +
        "| linear                  | **0.01500** | 0.1050 |\n" +
        "| cosine                  |     0.01500 | 0.1050 |",
    ),
    md,
  );
  assert.match(md, /best over lr in each cell/);
  assert.match(md, /!\[mmd against nfe\]\(mmd\.png\)/);
  assert.match(
    md,
    /Best: mmd 0\.01500 ± 0\.010 with schedule=linear lr=0\.001 sample_steps=10 \(NFE 10\)/,
  );
  assert.match(md, /!\[training loss per timestep band\]\(loss\.png\)/);
  assert.ok(
    md.includes(
      "```yaml\nmodel: ddpm\ndata: 8gaussians\nmethod: grid\nmetric:\n  name: mmd\n  goal: minimize\n",
    ),
  );
  assert.ok(md.includes("parameters:\n  schedule:\n    values:\n      - linear\n      - cosine\n"));
  assert.match(md, /Made by `deno task report rep --out .* --store .*store\.sqlite`/);

  const loss = fs.readFileSync(join(out, "loss.svg"), "utf8");
  for (
    const text of [
      "training loss per timestep band",
      "schedule=linear lr=0.001",
      "schedule=cosine lr=0.002",
      "t .00–.25",
      "t .75–1.00",
      "timestep band",
      "training step",
    ]
  ) {
    assert.ok(loss.includes(`>${text}<`), `loss.svg shows "${text}"`);
  }
  const mmd = fs.readFileSync(join(out, "mmd.svg"), "utf8");
  assert.ok(mmd.includes(">best: 0.015 (linear, NFE 10)</text>"), "series by schedule");
  const png = fs.readFileSync(join(out, "loss.png"));
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);

  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "report", "nope", "--out", out, "--store", storePath],
    stderr: "piped",
  }).output();
  assert.notEqual(bad.code, 0);
  assert.match(
    new TextDecoder().decode(bad.stderr),
    /no sweep named "nope" in the store .*\(sweeps: rep\)/,
  );
});

Deno.test("report: the best configuration's 2-D samples over the data, from the recorded store", async () => {
  const f = await buildFixture();
  const out = join(f.dir, "report");
  const files = await writeReport({ storePath: f.storePath, out });
  assert.ok(files.includes(join(out, "samples-best.svg")), files.join(", "));
  const md = fs.readFileSync(join(out, "README.md"), "utf8");
  // By hand: the best done evaluation is linear, 100 steps, DDIM with EMA 0.999.
  const best = fixtureMmd({ sample_steps: 100, sampler: "ddim", ema_eval: "0.999" });
  assert.equal(best, 0.012);
  assert.match(
    md,
    /Best: mmd 0\.01200 ± 0\.0020 with schedule=linear sample_steps=100 sampler=ddim ema_eval=0\.999 \(NFE 100\)/,
  );
  assert.match(md, /!\[samples of schedule=linear .*\]\(samples-best\.png\)/);
  const svg = fs.readFileSync(join(out, "samples-best.svg"), "utf8");
  assert.ok(
    svg.includes(
      ">schedule=linear sample_steps=100 sampler=ddim ema_eval=0.999; 400 samples over 2000 draws of the data (grey)<",
    ),
  );
  // Every sample and every draw of the data is a circle.
  const circles = svg.match(/<path transform="translate\([^)]*\)" d="M[^"]*A/g) ?? [];
  assert.equal(circles.length, 2400 + 2, "2,400 points and the legend's two symbols");
  // Each sampler's best point, by hand: DDPM with EMA 0.999 at 100 steps, 0.01 + 0.002 + 0.004.
  assert.equal(fixtureMmd({ sample_steps: 100, sampler: "ddpm", ema_eval: "0.999" }), 0.016);
  assert.match(
    md,
    /## Samples at each sampler's best point\n\n!\[[^\]]*\]\(samples-by-line\.png\)/,
  );
  const byLine = fs.readFileSync(join(out, "samples-by-line.svg"), "utf8");
  assert.ok(byLine.includes(">ddpm: 0.016 at NFE 100<"), "the DDPM panel");
  assert.ok(byLine.includes(">ddim: 0.012 at NFE 100 (best)<"), "the DDIM panel, the best");
  const dots = byLine.match(/<path transform="translate\([^)]*\)" d="M[^"]*A/g) ?? [];
  assert.equal(dots.length, 2 * (400 + 500) + 2, "two panels of 400 samples over 500 draws");
  // The fixture's running training job logged steps 10–200, the done one 10–400: two panels.
  const loss = fs.readFileSync(join(out, "loss.svg"), "utf8");
  assert.ok(loss.includes(">schedule=linear<") && loss.includes(">schedule=cosine<"));
});

Deno.test("report --runs: the loss-per-band figure of the chosen runs; MNIST-like grids at each line's best point", async () => {
  // The fake worker: mmd = 1/checkpoint step + sample_steps/1000; FAKE_SAMPLES=png writes each
  // evaluation's samples as an image grid, grey by its sampling steps.
  const { dir, storePath } = await fakeSweep(
    "grids",
    `name: grids
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 100
metrics: [mmd]
parameters:
  schedule: {values: [linear, cosine]}
  sampler: {values: [ddpm, ddim]}
  sample_steps: {values: [10, 40]}
`,
    ["FAKE_SAMPLES=png"],
  );
  const out = join(dir, "report");
  const files = await writeReport({ storePath, out, runs: "schedule=cosine" });
  const md = fs.readFileSync(join(out, "README.md"), "utf8");
  // By hand: every line's best point is at 10 steps (0.01 + 0.01); one grid per sampler.
  assert.match(
    md,
    /## Samples at each sampler's best point\n\n\*\*ddpm: 0\.02 at NFE 10( \(best\))?\*\*\n\n!\[[^\]]*\]\(samples-1\.png\)\n\n\*\*ddim: 0\.02 at NFE 10( \(best\))?\*\*\n\n!\[[^\]]*\]\(samples-2\.png\)/,
  );
  assert.ok(
    files.includes(join(out, "samples-1.png")) && files.includes(join(out, "samples-best.png")),
  );
  // The grid is the evaluation's own PNG, from the store: 2 images of 4×4 at 10 steps.
  const store = await openStore(storePath, { readOnly: true });
  try {
    const jobs = await store.jobs((await store.sweep("grids"))!.id);
    const at10 = jobs.filter((j) =>
      j.kind === "eval" && JSON.parse(j.spec).settings.sample_steps === 10
    );
    const stored = await Promise.all(at10.map((j) => store.readFile(j.id, `samples/${j.key}.png`)));
    assert.ok(
      stored.some((b) => b && Buffer.from(b).equals(fs.readFileSync(join(out, "samples-1.png")))),
    );
  } finally {
    await store.close();
  }
  // --runs: only the cosine training run's losses, and the README says so.
  const loss = fs.readFileSync(join(out, "loss.svg"), "utf8");
  assert.ok(loss.includes(">schedule=cosine<"), "the chosen run");
  assert.ok(!loss.includes(">schedule=linear<"), "the other run is left out");
  assert.match(md, /The runs with schedule=cosine \(1 of the sweep's training runs\)\./);
  assert.match(md, /Made by `deno task report grids --out .* --runs 'schedule=cosine' --store /);
  await assert.rejects(
    writeReport({ storePath, out, runs: "schedul=cosine" }),
    /--runs schedul=cosine: .*did you mean "schedule"/,
  );
  await assert.rejects(
    writeReport({ storePath, out, runs: "schedule=sigmoid" }),
    /--runs schedule=sigmoid: no training run of sweep grids matches/,
  );
});
