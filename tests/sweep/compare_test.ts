/**
 * `compare` on the dashboard's recorded store: the grid, the CSV and the
 * sweep list against what the fixture recorded, worked out by hand.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { openStore } from "../../lib/store/store.ts";
import { compareSweep, listSweeps, loadSweeps } from "../../lib/sweep/compare.ts";
import { buildFixture, fixtureMmd } from "../dashboard/fixture.ts";

/** The fixture's mmd at a step count, best over the (sampler, EMA) pairs given. */
const best = (steps: number, pairs: [string, string][]) =>
  Math.min(
    ...pairs.map(([sampler, ema_eval]) =>
      fixtureMmd({ sample_steps: steps, sampler, ema_eval } as never)
    ),
  );
const EVERY: [string, string][] = [["ddpm", "raw"], ["ddpm", "0.999"], ["ddim", "raw"], [
  "ddim",
  "0.999",
]];

Deno.test("compare: the grid of schedule × sample_steps, best over sampler and EMA, best cell marked", async () => {
  const { storePath } = await buildFixture();
  const lines = (await compareSweep({ storePath })).split("\n");
  assert.equal(lines[0], "fixture: mmd (minimize), best over sampler, ema_eval per cell; * = best");
  assert.deepEqual(lines[1].split(/\s{2,}/), ["schedule \\ sample_steps", "10", "50", "100"]);
  const row = (label: string) => lines.find((l) => l.startsWith(label + " "))!.trim().split(/\s+/);
  // Linear: at 10 steps, ddim raw failed and ddpm 0.999 is still running.
  const linear = [
    best(10, [["ddpm", "raw"], ["ddim", "0.999"]]),
    best(50, EVERY),
    best(100, EVERY),
  ];
  assert.deepEqual(row("linear"), [
    "linear",
    ...linear.map((v, i) => v.toPrecision(4) + (i === 2 ? "*" : "")),
  ]);
  assert.deepEqual(row("cosine"), ["cosine", "—", "—", "—"], "cosine's evaluations are queued");
  assert.equal(lines.at(-1), "best: schedule=linear sample_steps=100 sampler=ddim ema_eval=0.999");
});

Deno.test("compare --csv: one row per configuration, varying parameters first, mmd as recorded", async () => {
  const { storePath } = await buildFixture();
  const [header, ...rows] = parse(await compareSweep({ storePath, csv: true })) as string[][];
  assert.deepEqual(header.slice(0, 4), ["schedule", "sample_steps", "sampler", "ema_eval"]);
  assert.deepEqual(header.slice(-2), ["state", "mmd"]);
  assert.equal(rows.length, 24);
  const at = (r: string[], k: string) => r[header.indexOf(k)];
  const done = rows.filter((r) => at(r, "mmd") !== "");
  assert.equal(done.length, 10);
  for (const r of done) {
    const settings = { sample_steps: at(r, "sample_steps"), sampler: at(r, "sampler") };
    const mmd = fixtureMmd({ ...settings, ema_eval: at(r, "ema_eval") } as never);
    assert.equal(Number(at(r, "mmd")), mmd, r.join(","));
    assert.equal(at(r, "schedule"), "linear");
  }
});

Deno.test("compare --list: each sweep's jobs done of all and failed; an empty store says so", async () => {
  const { dir, storePath } = await buildFixture();
  // 2 training jobs and 24 evaluations; done: the linear training and 10 evaluations; 1 failed.
  const list = (await listSweeps({ storePath })).split("\n");
  assert.deepEqual(list[0].split(/\s+/), ["sweep", "status", "done", "failed", "created", "file"]);
  assert.match(list[1], /^fixture\s+\S+\s+11\/26\s+1\s/);
  assert.equal(list.length, 2);
  const empty = await openStore(join(dir, "empty.sqlite"));
  try {
    assert.equal(await listSweeps({ store: empty }), "no sweep in the store yet");
  } finally {
    await empty.close();
  }
});

Deno.test("loadSweeps: each name once, the most recent without one, an unknown name refused", async () => {
  const { storePath } = await buildFixture();
  const store = await openStore(storePath, { readOnly: true });
  try {
    assert.deepEqual((await loadSweeps(store, ["fixture", "fixture"])).map((s) => s.name), [
      "fixture",
    ]);
    assert.equal((await loadSweeps(store))[0].name, "fixture");
    await assert.rejects(loadSweeps(store, ["nope"]), /no sweep named "nope"/);
  } finally {
    await store.close();
  }
});
