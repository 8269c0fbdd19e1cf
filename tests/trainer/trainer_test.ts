import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import { resolveConfig } from "../../lib/models/config.ts";
import { type ModelEntry, type RunConfig, TRAIN_ONLY } from "../../lib/models/model.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { listCheckpoints, loadCheckpoint } from "../../lib/trainer/checkpoint.ts";
import { readEvents } from "../../lib/trainer/events.ts";
import { train, TrainingFailed } from "../../lib/trainer/trainer.ts";
import { bandText } from "../../lib/commands/train.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("wasm");

function config(set: RunConfig): RunConfig {
  return {
    model: "ddpm",
    data: "8gaussians",
    ...resolveConfig(DDPM_ENTRY.keys, {
      T: 100,
      batch: 64,
      log_every: 10,
      ema: [0.9],
      train_size: 2000,
      ...set,
    }),
  };
}

function losses(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of readEvents(dir)) if (e.type === "train") out.set(e.step, e.loss);
  return out;
}

const tmp = () => Deno.makeTempDirSync({ prefix: "dmw-trainer-" });

Deno.test("the same seed on the same backend reproduces the same losses exactly", async () => {
  const a = tmp();
  const b = tmp();
  await train({ runDir: a, entry: DDPM_ENTRY, config: config({ steps: 40 }) });
  await train({ runDir: b, entry: DDPM_ENTRY, config: config({ steps: 40 }) });
  assert.deepEqual([...losses(a)], [...losses(b)]);
  const c = tmp();
  await train({ runDir: c, entry: DDPM_ENTRY, config: config({ steps: 40, seed: 1 }) });
  assert.notDeepEqual([...losses(a)], [...losses(c)]);
});

Deno.test("a run stopped and resumed produces the same losses as one never stopped", async () => {
  const whole = tmp();
  await train({
    runDir: whole,
    entry: DDPM_ENTRY,
    config: config({ steps: 100, checkpoint_every: 50 }),
  });
  const split = tmp();
  await train({
    runDir: split,
    entry: DDPM_ENTRY,
    config: config({ steps: 50, checkpoint_every: 50 }),
  });
  const r = await train({
    runDir: split,
    entry: DDPM_ENTRY,
    config: config({ steps: 100, checkpoint_every: 50 }),
  });
  assert.equal(r.resumedFrom, 50);
  const a = losses(whole);
  const b = losses(split);
  for (let s = 10; s <= 100; s += 10) assert.equal(b.get(s), a.get(s), `loss at step ${s}`);
  assert.deepEqual(listCheckpoints(split), [50, 100]);
});

Deno.test("resuming with a different training configuration is refused, naming the key", async () => {
  const dir = tmp();
  await train({
    runDir: dir,
    entry: DDPM_ENTRY,
    config: config({ steps: 20, checkpoint_every: 10 }),
  });
  await assert.rejects(
    train({ runDir: dir, entry: DDPM_ENTRY, config: config({ steps: 40, schedule: "cosine" }) }),
    /trained with schedule="linear", not "cosine"/,
  );
});

Deno.test("a loss that becomes NaN stops the run, marked failed with the step", async () => {
  const dir = tmp();
  const before = tf.memory().numTensors;
  await assert.rejects(
    train({
      runDir: dir,
      entry: DDPM_ENTRY,
      config: config({ steps: 200, lr: 1e30, grad_clip: 0 }),
    }),
    (e: unknown) => e instanceof TrainingFailed && /loss became (NaN|Infinity)/.test(e.message),
  );
  const failed = readEvents(dir).find((e) => e.type === "failed");
  assert.ok(failed && failed.step > 0 && failed.step <= 200);
  assert.equal(tf.memory().numTensors, before, "a failed run frees everything");
});

Deno.test("1,000 steps of the MLP on a toy set on wasm keep tf.memory().numTensors constant", async () => {
  const dir = tmp();
  const counts: number[] = [];
  const before = tf.memory().numTensors;
  await train({
    runDir: dir,
    entry: DDPM_ENTRY,
    config: config({ steps: 1000, log_every: 100, checkpoint_every: 500, ema: [0.99, 0.999] }),
    onProgress: () => counts.push(tf.memory().numTensors),
  });
  assert.equal(counts.length, 10);
  assert.ok(
    counts.every((c) => c === counts[0]),
    `tensor counts over the run: ${counts.join(", ")}`,
  );
  assert.equal(tf.memory().numTensors, before, "the run frees everything at the end");
  const ev = readEvents(dir).filter((e) => e.type === "train");
  assert.equal(ev.length, 10);
  for (const e of ev) if (e.type === "train") assert.equal(e.bands.length, 4);
  assert.ok(fs.existsSync(join(dir, "ckpt", "step-00001000", "state.json")));
});

Deno.test("cpu and wasm agree within tolerance for a few steps of a small model", async () => {
  const run = async (backend: "cpu" | "wasm") => {
    await useBackend(backend);
    const dir = tmp();
    await train({ runDir: dir, entry: DDPM_ENTRY, config: config({ steps: 30 }) });
    return losses(dir);
  };
  const cpu = await run("cpu");
  const wasm = await run("wasm");
  for (const [s, l] of cpu) assertClose(wasm.get(s)!, l, 1e-4, 1e-3, `loss at step ${s}`);
});

/**
 * A model whose loss is linear in one parameter vector, Σ c_i·w_i: the
 * gradient is c at every step, so each Adam step moves w_i by exactly
 * −lr·sign(c_i) and the parameters after training show the sum of the
 * learning rates the trainer used.
 */
const LINEAR: ModelEntry = {
  description: "a linear loss with its own learning-rate factor 0.5^step",
  keys: {},
  data: "none",
  create: () =>
    Promise.resolve({
      name: "linear",
      sampling: TRAIN_ONLY,
      init: () => ({ w: tf.zeros([3]) }),
      loss: (w) => {
        const loss = tf.sum(tf.mul(w.w, [2, -1, 0.5])) as tf.Scalar;
        return { loss, perSample: tf.reshape(loss, [1]), position: Float32Array.of(0) };
      },
      lrMultiplier: (step: number) => 0.5 ** step,
      sample: () => Promise.reject(new Error("no samples")),
      dispose() {},
    }),
};

Deno.test("the trainer multiplies the learning rate by the model's lrMultiplier", async () => {
  const dir = tmp();
  const config = {
    model: "linear",
    data: "none",
    ...resolveConfig({}, { steps: 4, lr: 0.1, grad_clip: 0, ema: [], log_every: 1 }),
  };
  await train({ runDir: dir, entry: LINEAR, config });
  const lrs = readEvents(dir).flatMap((e) => (e.type === "train" ? [e.lr] : []));
  assert.deepEqual(lrs, [0.1, 0.05, 0.025, 0.0125]);
  const { tensors } = loadCheckpoint(dir, 4);
  const moved = 0.1 * (1 + 0.5 + 0.25 + 0.125); // Σ lr·0.5^step; without the factor 0.4
  const w = tensors["param/w"].dataSync();
  [-1, 1, -1].forEach((sign, i) => assertClose(w[i], sign * moved, 1e-6, 1e-5, `w[${i}]`));
  tf.dispose(Object.values(tensors));
});

Deno.test("a timestep band no sample fell in is empty (null), never NaN", async () => {
  const dir = tmp();
  const seen: (number | null)[][] = [];
  await train({
    runDir: dir,
    entry: DDPM_ENTRY,
    config: config({ steps: 3, batch: 2, bands: 10, log_every: 1 }),
    onProgress: (p) => seen.push(p.bands),
  });
  const events = readEvents(dir).flatMap((e) => (e.type === "train" ? [e.bands] : []));
  assert.equal(events.length, 3);
  for (const bands of [...seen, ...events]) {
    assert.equal(bands.length, 10);
    assert.ok(bands.includes(null), "2 samples cannot fill 10 bands");
    assert.ok(bands.every((b) => b === null || Number.isFinite(b)));
  }
  assert.equal(bandText([0.5, null, 1.25]), "0.500 – 1.250");
});
