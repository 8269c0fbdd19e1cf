import assert from "node:assert/strict";
import { openRun } from "../../lib/commands/run.ts";
import { computeMetric } from "../../lib/metrics/suite.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { train } from "../../lib/trainer/trainer.ts";
import { useBackend } from "../helpers.ts";

await useBackend("wasm");

// The documented toy run (README): 1,000 steps on 8 gaussians per schedule,
// sampled with the EMA weights by 100-step DDIM, scored by MMD against fresh data.
const THRESHOLD = 0.04;

async function mmdOf(dir: string, ema: string): Promise<number> {
  const run = await openRun(dir, { ema });
  try {
    const s = await run.model.sample(
      run.weights,
      { n: 1000, sampler: "ddim", steps: 100 },
      new Rng(1),
    );
    return (await computeMetric("mmd", s, { data: "8gaussians", seed: 0 })).value;
  } finally {
    run.close();
  }
}

for (const schedule of ["linear", "cosine"]) {
  Deno.test(`8 gaussians, ${schedule} schedule: a short run's MMD is far below an untrained model's`, async () => {
    const dir = Deno.makeTempDirSync({ prefix: `dmw-ddpm-${schedule}-` });
    const untrainedDir = Deno.makeTempDirSync({ prefix: `dmw-ddpm-untrained-` });
    const config = (steps: number) => ({
      model: "ddpm",
      data: "8gaussians",
      ...resolveConfig(DDPM_ENTRY.keys, { steps, schedule, ema: [0.999], checkpoint_every: 1000 }),
    });
    await train({ runDir: dir, entry: DDPM_ENTRY, config: config(1000) });
    await train({ runDir: untrainedDir, entry: DDPM_ENTRY, config: { ...config(1), lr: 0 } });
    const trained = await mmdOf(dir, "0.999");
    const untrained = await mmdOf(untrainedDir, "raw");
    assert.ok(trained < THRESHOLD, `trained MMD ${trained} ≥ ${THRESHOLD}`);
    assert.ok(
      untrained > 5 * THRESHOLD,
      `untrained MMD ${untrained} is not far above the threshold`,
    );
  });
}
