import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { evalCommand } from "../../lib/commands/eval.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import type { RunConfig } from "../../lib/models/model.ts";
import {
  epochLrFactor,
  mnistPriorMismatch,
  SCORE_ENTRY,
  SCORE_KEYS,
  ScoreModel,
} from "../../lib/models/score.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { train, trainStep } from "../../lib/trainer/trainer.ts";
import { Adam } from "../../lib/trainer/optim.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("wasm");

/** The small, fast configuration of these tests. */
const SMALL = { ch: 8, mults: [1, 2], attn_res: [14], heads: 2, label_in_time: true };

/** The documented short run (see the conditioning test). */
const SHORT_RUN: RunConfig = {
  ch: 16,
  mults: [1, 2, 2],
  attn_res: [],
  heads: 2,
  batch: 32,
  lr: 5e-3,
  steps: 250,
  sigma_max: 5,
  checkpoint_every: 250,
};
/** What the short run's class accuracy over all ten digits must reach. */
const SHORT_RUN_ACCURACY = 0.5;

function config(given: RunConfig = {}): RunConfig {
  return { model: "score", data: "mnist", ...resolveConfig(SCORE_KEYS, { ...SMALL, ...given }) };
}

function variables(model: ScoreModel, rng: Rng, tag: string): Record<string, tf.Variable> {
  const init = model.init(rng);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `${tag}/${k}`);
  tf.dispose(Object.values(init));
  return params;
}

Deno.test("score trains on mnist only", () => {
  assert.throws(() => new ScoreModel({ ...config(), data: "moons" }), /mnist only/);
  assert.equal(SCORE_ENTRY.data, "mnist");
});

Deno.test("the seed's learning-rate factor max(0.2, 0.98^epoch), epochs of 60,000 images", () => {
  assert.equal(epochLrFactor(0, 0.98, 0.2), 1);
  assertClose(epochLrFactor(10, 0.98, 0.2), 0.8170728068875467, 1e-15);
  assertClose(epochLrFactor(79, 0.98, 0.2), 0.20270290824698026, 1e-15);
  assert.equal(epochLrFactor(80, 0.98, 0.2), 0.2, "0.98^80 = 0.1986 is floored");
  const model = new ScoreModel(config({ batch: 64 }));
  assert.equal(model.lrMultiplier(937), 1, "937·64 = 59,968 images: still epoch 0");
  assertClose(model.lrMultiplier(938), 0.98, 1e-15, 0, "938·64 = 60,032: epoch 1");
  assertClose(model.lrMultiplier(74062), 0.98 ** 78, 1e-15, 0, "74,062·64 < 79·60,000");
  assertClose(model.lrMultiplier(74063), 0.20270290824698026, 1e-15, 0, "epoch 79");
  assert.equal(model.lrMultiplier(75000), 0.2, "epoch 80");
  const off = new ScoreModel(config({ batch: 64, lr_epoch_decay: 1 }));
  assert.equal(off.lrMultiplier(75000), 1, "lr_epoch_decay=1 turns it off");
});

Deno.test("training steps and sampling keep numTensors constant", async () => {
  const model = new ScoreModel(config({ batch: 4 }));
  const rng = new Rng(1);
  const params = variables(model, rng, "score-mem");
  const adam = new Adam(params, { kind: "adam", weightDecay: 0 });
  const counts: number[] = [];
  for (let step = 0; step < 4; step++) {
    const r = trainStep(model, params, adam, rng, step, 1e-3, 1);
    assert.ok(Number.isFinite(r.loss.dataSync()[0]));
    assert.equal(r.position.length, 4);
    assert.ok(r.position.every((p) => p >= 1e-3 && p < 1));
    tf.dispose([r.loss, r.perSample, r.gradNorm!]);
    counts.push(tf.memory().numTensors);
  }
  assert.deepEqual(counts, new Array(4).fill(counts[0]), `tensor counts ${counts}`);
  const before = tf.memory().numTensors;
  await model.sample(params, { n: 3, steps: 3, guidance: 2 }, rng);
  assert.equal(tf.memory().numTensors, before);
  adam.dispose();
  tf.dispose(Object.values(params));
});

Deno.test("sample: label layout, guidance and errors", async () => {
  const model = new ScoreModel(config());
  const w = model.init(new Rng(2));
  const out = await model.sample(w, { n: 20, steps: 2 }, new Rng(3));
  assert.equal(out.kind, "image");
  if (out.kind !== "image") return;
  assert.deepEqual(
    Array.from(out.labels!),
    Array.from({ length: 20 }, (_, i) => Math.floor(i / 2)),
  );
  assert.equal(out.images.length, 20 * 784);
  const one = await model.sample(w, { n: 3, steps: 2, labels: [7] }, new Rng(3));
  assert.deepEqual(one.kind === "image" && Array.from(one.labels!), [7, 7, 7]);
  await assert.rejects(
    () => model.sample(w, { n: 2, steps: 2, sampler: "ddim" }, new Rng(3)),
    /unknown sampler "ddim" \(em, euler, heun, dpmpp2m, dpmpp2m_sde\)/,
  );
  // σ-space samplers on the VE SDE: Heun's 2·steps − 1 evaluations, doubled by guidance.
  const heun = await model.sample(w, { n: 2, steps: 3, sampler: "heun", guidance: 1 }, new Rng(3));
  assert.equal(heun.nfe, 10);
  assert.ok(heun.kind === "image" && heun.images.every(Number.isFinite));
  await assert.rejects(
    () => model.sample(w, { n: 2, steps: 2, labels: [10] }, new Rng(3)),
    /digits/,
  );
  await assert.rejects(
    () => model.sample(w, { n: 3, steps: 2, labels: [1, 2] }, new Rng(3)),
    /2 labels for 3/,
  );

  const guided = tf.tidy(() => {
    const x = tf.randomNormal([2, 28, 28, 1], 0, 1, "float32", 5);
    const t = tf.tensor1d([0.3, 0.3]);
    const labels = Float32Array.of(4, 9);
    const cond = model.guidedScore(w, x, 0.3, labels, 0);
    const uncond = model.sde.scoreFromOutput(
      model.network.apply(w, x, t, tf.tensor1d([10, 10])),
      t,
    );
    const want = tf.sub(tf.mul(cond, 3), tf.mul(uncond, 2));
    const rescaled = model.guidedScore(w, x, 0.3, labels, 2, 0.7);
    // φ = 0.7: 0.7·g·std(c)/std(g) + 0.3·g, per sample, from the moments by hand.
    const g = want.arraySync() as number[][][][];
    const c = cond.arraySync() as number[][][][];
    const std = (a: number[][][]) => {
      const v = a.flat(2);
      const m = v.reduce((s, x) => s + x, 0) / v.length;
      return Math.sqrt(v.reduce((s, x) => s + (x - m) ** 2, 0) / v.length);
    };
    const byHand = g.map((gi, i) => {
      const f = 0.7 * std(c[i]) / std(gi) + 0.3;
      return gi.map((r) => r.map((p) => p.map((v) => v * f)));
    });
    return [
      tf.max(tf.abs(tf.sub(model.guidedScore(w, x, 0.3, labels, 2), want))),
      tf.max(tf.abs(tf.sub(rescaled, tf.tensor(byHand)))),
    ];
  });
  assertClose(guided[0].dataSync()[0], 0, 1e-3);
  assertClose(guided[1].dataSync()[0], 0, 1e-3, 0, "guidance rescale");
  tf.dispose(guided);
  tf.dispose(Object.values(w));
});

Deno.test("attention maps: self over pixels, cross over the context tokens", () => {
  const model = new ScoreModel(config({ mults: [1, 2, 2], attn_res: [7, 14], context_tokens: 3 }));
  const w = model.init(new Rng(4));
  const maps = tf.tidy(() =>
    model.network.applyWithAttention(
      w,
      tf.zeros([2, 28, 28, 1]),
      tf.tensor1d([0.5, 0.5]),
      tf.tensor1d([1, 2]),
    )
      .attention
  );
  assert.deepEqual(Object.keys(maps).sort(), [
    "down1.cross",
    "down1.self",
    "down2.cross",
    "down2.self",
    "mid.cross",
    "mid.self",
    "up1.cross",
    "up1.self",
    "up2.cross",
    "up2.self",
  ]);
  assert.deepEqual(maps["down1.self"].shape, [2, 2, 196, 196]);
  assert.deepEqual(maps["mid.cross"].shape, [2, 2, 49, 3]);
  const rows = tf.sum(maps["up1.cross"], -1).dataSync();
  rows.forEach((v) => assertClose(v, 1, 1e-5));
  tf.dispose([...Object.values(maps), ...Object.values(w)]);
});

Deno.test("the prior N(0, σ(1)²) is far from MNIST's marginal at t = 1 unless σ(1) is large", () => {
  const seed = mnistPriorMismatch(1);
  const wide = mnistPriorMismatch(10);
  assert.ok(seed.klPerDim > 0.1, `KL per pixel ${seed.klPerDim}`);
  assert.ok(wide.klPerDim < seed.klPerDim / 50, `KL per pixel at σ(1) = 10: ${wide.klPerDim}`);
  assert.ok(wide.w2 < seed.w2);
});

/**
 * The documented short run that shows the label conditioning works, as
 * commands (README, "Conditional score model"):
 *
 *   deno task train --model score --data mnist --steps 250 --out runs/score-short \
 *     --set ch=16 --set 'attn_res=[]' --set heads=2 --set batch=32 --set lr=5e-3
 *   deno task eval --run runs/score-short --metric class-accuracy --n 100 --steps 30 --guidance 3
 *
 * The real model and data at a quarter of the default width: 28×28 MNIST,
 * three levels, the transformer block (self- and cross-attention) at 7×7,
 * σ(1) = 5. The eval draws 10 digits of each label.
 */
Deno.test("conditioning: after a short run the classifier reads the requested digits", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-score-short-" });
  const started = performance.now();
  await train({ runDir: dir, entry: SCORE_ENTRY, config: config(SHORT_RUN) });
  const trained = performance.now();
  const [r] = await evalCommand({
    run: dir,
    metric: ["class-accuracy"],
    n: 100,
    steps: 30,
    guidance: 3,
    seed: 0,
    set: [],
    backend: "wasm",
  });
  const perClass = r.perClass as Record<string, number>;
  console.log(
    `class accuracy ${r.value} ± ${r.spread.toFixed(3)}, per digit ${
      Object.values(perClass).join(" ")
    }; training ${((trained - started) / 1000).toFixed(0)} s, eval ${
      ((performance.now() - trained) / 1000).toFixed(0)
    } s`,
  );
  assert.ok(r.value >= SHORT_RUN_ACCURACY, `accuracy ${r.value} (chance 0.1)`);
  fs.rmSync(dir, { recursive: true });
});
