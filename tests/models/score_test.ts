import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import { loadClassifier } from "../../lib/metrics/classifier.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import type { RunConfig } from "../../lib/models/model.ts";
import {
  mnistPriorMismatch,
  SCORE_ENTRY,
  SCORE_KEYS,
  scoreFigures,
  ScoreModel,
} from "../../lib/models/score.ts";
import type { Weights } from "../../lib/network/layers.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { trainStep } from "../../lib/trainer/trainer.ts";
import { Adam } from "../../lib/trainer/optim.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("wasm");

/** The small, fast configuration of these tests (and of the conditioning run). */
const SMALL = { ch: 8, mults: [1, 2], attn_res: [14], heads: 2, label_in_time: true };

/** Training steps of the conditioning run. */
const SHORT_RUN_STEPS = 300;
/** What the conditioning run must beat. */
const SHORT_RUN_ACCURACY = 0.15;

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
    /sampler/,
  );
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
    const t = tf.tensor1d([0.3, 0.8]);
    const labels = Float32Array.of(4, 9);
    const cond = model.guidedScore(w, x, t, labels, 0);
    const uncond = model.sde.scoreFromOutput(
      model.network.apply(w, x, t, tf.tensor1d([10, 10])),
      t,
    );
    const want = tf.sub(tf.mul(cond, 3), tf.mul(uncond, 2));
    return tf.max(tf.abs(tf.sub(model.guidedScore(w, x, t, labels, 2), want)));
  });
  assertClose(guided.dataSync()[0], 0, 1e-3);
  guided.dispose();
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

Deno.test("scoreFigures writes the forward, reverse and attention figures", async () => {
  const model = new ScoreModel(config());
  const weights: Weights = model.init(new Rng(6));
  const dir = Deno.makeTempDirSync();
  const paths = await scoreFigures({ model, weights }, dir, { steps: 4, frames: 3, heads: 1 });
  assert.ok(paths.includes(join(dir, "forward.png")) && paths.includes(join(dir, "reverse.png")));
  assert.ok(paths.some((p) => p.endsWith("attn_mid_cross_head0.png")));
  paths.forEach((p) => assert.ok(fs.statSync(p).size > 100, p));
  fs.rmSync(dir, { recursive: true });
  tf.dispose(Object.values(weights));
});

/**
 * The documented short run that shows the label conditioning works:
 * `SCORE_CONDITIONING=1 npx -y deno@2.9.6 test -A tests/models/score_test.ts --filter conditioning`.
 * SHORT_RUN_STEPS steps of the small configuration (batch 16, lr 5e-3, no
 * EMA), then 5 digits of each label with 40 Euler–Maruyama steps at
 * guidance 3, read by the MNIST classifier (trained on first use if it is
 * not cached). Opt-in: on a shared 2-core machine 300 steps took 592 s, and
 * the samples (blobs of strokes on grey; the 1s clearly vertical) were read
 * right 5 times in 30 by a nearest-class-mean stand-in for the classifier.
 * The threshold has not yet been checked against the CNN classifier.
 */
Deno.test({
  name: "conditioning: after a short run the classifier reads the requested digits",
  ignore: !Deno.env.get("SCORE_CONDITIONING"),
}, async () => {
  const model = new ScoreModel(config({ batch: 16 }));
  const rng = new Rng(0);
  const params = variables(model, rng, "score-cond");
  const adam = new Adam(params, { kind: "adam", weightDecay: 0 });
  for (let step = 0; step < SHORT_RUN_STEPS; step++) {
    const r = trainStep(model, params, adam, rng, step, 5e-3, 1);
    tf.dispose([r.loss, r.perSample, r.gradNorm!]);
  }
  const out = await model.sample(params, { n: 50, steps: 40, guidance: 3 }, new Rng(1));
  assert.ok(out.kind === "image" && out.labels);
  const predicted = (await loadClassifier()).predict(out.images, out.n);
  const accuracy = predicted.reduce((a, p, i) => a + (p === out.labels![i] ? 1 : 0), 0) / out.n;
  assert.ok(accuracy > SHORT_RUN_ACCURACY, `accuracy ${accuracy} (chance 0.1)`);
  adam.dispose();
  tf.dispose(Object.values(params));
});
