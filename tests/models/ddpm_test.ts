import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { openRun } from "../../lib/commands/run.ts";
import { computeMetric } from "../../lib/metrics/suite.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { train } from "../../lib/trainer/trainer.ts";
import { assertClose, useBackend } from "../helpers.ts";
import { mnistShortRun } from "./mnist_short_run.ts";

await useBackend("wasm");

// The documented toy run (README): 1,000 steps on 8 gaussians per schedule,
// sampled with the EMA weights by 100-step DDIM, scored by MMD against fresh data.
const THRESHOLD = 0.04;

/** n samples of a run's `ema` weights by DDIM in `steps` steps, seed 1. */
async function sampleRun(dir: string, ema: string, n: number, steps: number) {
  const run = await openRun(dir, { ema });
  try {
    return await run.model.sample(run.weights, { n, sampler: "ddim", steps }, new Rng(1));
  } finally {
    run.close();
  }
}

async function mmdOf(dir: string, ema: string): Promise<number> {
  const s = await sampleRun(dir, ema, 1000, 100);
  return (await computeMetric("mmd", s, { data: "8gaussians", seed: 0 })).value;
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

/**
 * A short MNIST run (the documented run's UNet at half its width, 400 steps
 * of batch 16), sampled with 20-step DDIM from its EMA weights: 200 samples
 * against an untrained network's, by FID and the classifier Inception Score.
 * Measured here: FID 1453 against 2643, IS 2.53 against 1.71 (200 samples
 * make FID large; it compares, it is not the documented run's figure).
 */
Deno.test("mnist: a short UNet run's samples beat an untrained network's by FID and IS", async () => {
  const { trained, untrained } = await mnistShortRun();
  console.log(
    `mnist short run: trained ${JSON.stringify(trained)}, untrained ${JSON.stringify(untrained)}`,
  );
  assert.ok(trained.fid < 0.7 * untrained.fid, `FID ${trained.fid} vs untrained ${untrained.fid}`);
  assert.ok(trained.is > untrained.is + 0.5, `IS ${trained.is} vs untrained ${untrained.is}`);
});

// The other objectives on the same MLP: 500 steps each, sampled with the EMA weights.
for (
  const [set, sampler, steps] of [
    [{ objective: "flow", flow_times: "logit-normal" }, "heun", 25],
    [{ objective: "edm" }, "dpmpp2m", 25],
    [{ objective: "v", zero_snr: true, schedule: "cosine" }, "ddim", 50],
    [{ objective: "eps", self_cond: true }, "heun", 25],
  ] as const
) {
  Deno.test(`8 gaussians, ${JSON.stringify(set)}: a short run sampled by ${sampler} beats an untrained one`, async () => {
    const config = (steps: number, lr: number) => ({
      model: "ddpm",
      data: "8gaussians",
      ...resolveConfig(DDPM_ENTRY.keys, { steps, lr, ema: [0.999], checkpoint_every: 500, ...set }),
    });
    const mmd = async (trainSteps: number, lr: number, ema: string) => {
      const dir = Deno.makeTempDirSync({ prefix: "dmw-objective-" });
      await train({ runDir: dir, entry: DDPM_ENTRY, config: config(trainSteps, lr) });
      const run = await openRun(dir, { ema });
      try {
        const s = await run.model.sample(run.weights, { n: 1000, sampler, steps }, new Rng(1));
        assert.equal(s.nfe, sampler === "heun" ? 2 * steps - 1 : steps);
        return (await computeMetric("mmd", s, { data: "8gaussians", seed: 0 })).value;
      } finally {
        run.close();
      }
    };
    const trained = await mmd(500, 1e-3, "0.999");
    const untrained = await mmd(1, 0, "raw");
    assert.ok(trained < THRESHOLD, `trained MMD ${trained} ≥ ${THRESHOLD}`);
    assert.ok(untrained > 5 * THRESHOLD, `untrained MMD ${untrained} is not far above`);
  });
}

Deno.test("objective keys that do not fit are refused when the model is built, naming the fix", async () => {
  const build = async (set: Record<string, unknown>) =>
    await DDPM_ENTRY.create({
      model: "ddpm",
      data: "8gaussians",
      ...resolveConfig(DDPM_ENTRY.keys, set as never),
    });
  await assert.rejects(() => build({ zero_snr: true }), /zero_snr=true needs objective=v/);
  await assert.rejects(
    () => build({ zero_snr: true, objective: "flow" }),
    /zero_snr applies to the schedule-based objectives/,
  );
  await assert.rejects(
    () => build({ objective: "edm", weighting: "minsnr" }),
    /EDM weights its loss itself/,
  );
  await assert.rejects(
    () => build({ objective: "flow", timesteps: "loss-aware" }),
    /timesteps=loss-aware applies to eps, x0 and v/,
  );
  await assert.rejects(
    () => build({ objective: "flow", sampler: "ddim" }),
    /sampler=ddim does not apply to objective=flow \(samplers: euler, heun\)/,
  );
  const flow = await build({ objective: "flow" });
  assert.equal(flow.sampling.defaultSampler, "euler");
  assert.deepEqual(flow.sampling.samplers, ["euler", "heun"]);
  flow.dispose();
});

Deno.test("offset noise adds one shared draw per sample (and channel) to the training noise", async () => {
  // With lr = 0 the network is fixed, so the loss only changes through the noise:
  // offset noise raises the variance of the ε target by offset² per dimension.
  const model = await DDPM_ENTRY.create({
    model: "ddpm",
    data: "8gaussians",
    ...resolveConfig(DDPM_ENTRY.keys, { offset_noise: 1, batch: 4096 }),
  });
  const plain = await DDPM_ENTRY.create({
    model: "ddpm",
    data: "8gaussians",
    ...resolveConfig(DDPM_ENTRY.keys, { batch: 4096 }),
  });
  // All-zero weights: the network outputs 0, so the loss is the mean square of the noise.
  const w = model.init(new Rng(0));
  for (const k of Object.keys(w)) {
    const z = tf.zerosLike(w[k]);
    w[k].dispose();
    w[k] = z;
  }
  const lossOf = async (m: typeof model) => {
    const { loss, perSample } = m.loss(w, new Rng(5), 0);
    const v = (await loss.data())[0];
    loss.dispose();
    perSample.dispose();
    return v;
  };
  // Per dimension: Var(ε + z) = 1 + 1 for 2-D points (one z per sample, shared by both coordinates).
  assertClose(await lossOf(plain), 1, 0.05, 0, "plain noise");
  assertClose(await lossOf(model), 2, 0.1, 0, "offset noise");
  model.dispose();
  plain.dispose();
});

Deno.test("every objective's loss and sampling (self-conditioned too) keep numTensors flat", async () => {
  const sets: Record<string, string | number | boolean>[] = [
    { objective: "eps", self_cond: true },
    { objective: "flow", self_cond: true },
    { objective: "edm", offset_noise: 0.1 },
    { objective: "v", zero_snr: true },
  ];
  for (const set of sets) {
    const model = await DDPM_ENTRY.create({
      model: "ddpm",
      data: "8gaussians",
      ...resolveConfig(DDPM_ENTRY.keys, { batch: 16, ...set }),
    });
    const init = model.init(new Rng(0));
    const w = Object.fromEntries(Object.entries(init).map(([k, t]) => [k, tf.variable(t)]));
    tf.dispose(Object.values(init));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const { grads, value } = tf.variableGrads(() => {
        const { loss, perSample } = model.loss(w, new Rng(i), i);
        perSample.dispose();
        return loss;
      }, Object.values(w));
      tf.dispose([value, ...Object.values(grads)]);
    }
    const s = await model.sample(w, { n: 8, steps: 3, sampler: "heun" }, new Rng(1));
    assert.equal(s.kind === "points" && s.points.every(Number.isFinite), true);
    assert.equal(tf.memory().numTensors, before, JSON.stringify(set));
    tf.dispose(Object.values(w));
    model.dispose();
  }
});
