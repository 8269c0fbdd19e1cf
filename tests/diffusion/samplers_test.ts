import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { makeSampler, sampleLoop, spacedTimesteps } from "../../lib/diffusion/samplers.ts";
import { makeSchedule, type Schedule } from "../../lib/diffusion/schedules.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd, useBackend } from "../helpers.ts";

await useBackend("cpu");

// Data x0 ~ N(μ0, s0²) in 1-D: the optimal ε-predictor is known in closed form,
// E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ0) / (ᾱ s0² + 1 − ᾱ), so samplers can be checked exactly.
const MU0 = 0.7;
const S0 = 0.3;
function oracle(schedule: Schedule) {
  return (x: tf.Tensor, t: tf.Tensor1D) =>
    tf.tidy(() => {
      const ti = Array.from(t.dataSync());
      const a = ti.map((i) => schedule.alphasCumprod[i]);
      const coef = tf.tensor(a.map((ab) => Math.sqrt(1 - ab) / (ab * S0 * S0 + 1 - ab)), [
        ti.length,
        1,
      ]);
      const shift = tf.tensor(a.map((ab) => Math.sqrt(ab) * MU0), [ti.length, 1]);
      return tf.mul(coef, tf.sub(x, shift));
    });
}

async function draw(name: string, steps: number, eta = 0, n = 10000, T = 1000) {
  const schedule = makeSchedule({ kind: "linear", T });
  const sampler = makeSampler(name, schedule, "eps", { eta });
  const x = await sampleLoop(oracle(schedule), sampler, steps, [n, 1], new Rng(1));
  const v = x.dataSync();
  x.dispose();
  return meanStd(v);
}

Deno.test("respacing with all T steps reproduces the original schedule", () => {
  for (const spacing of ["leading", "linspace", "trailing"]) {
    assert.deepEqual(spacedTimesteps(100, 100, spacing), Array.from({ length: 100 }, (_, i) => i));
  }
  assert.deepEqual(spacedTimesteps(1000, 4, "leading"), [0, 250, 500, 750]);
  assert.deepEqual(spacedTimesteps(1000, 4, "trailing"), [249, 499, 749, 999]);
  assert.deepEqual(spacedTimesteps(1000, 4, "ddim4"), [0, 250, 500, 750]);
  assert.deepEqual(spacedTimesteps(100, 5, "2,3"), [0, 49, 50, 74, 99]);
  assert.throws(() => spacedTimesteps(100, 101), /steps must be an integer from 1 to T/);
});

Deno.test("DDPM ancestral sampling with the exact denoiser recovers the data distribution", async () => {
  const { mean, std } = await draw("ddpm", 1000);
  assertClose(mean, MU0, 0.02, 0, "mean");
  assertClose(std, S0, 0.02, 0, "std");
});

Deno.test("DDIM with η = 1 over the full schedule matches ancestral sampling in distribution", async () => {
  const a = await draw("ddpm", 1000);
  const d = await draw("ddim", 1000, 1);
  assertClose(d.mean, a.mean, 0.02, 0, "mean");
  assertClose(d.std, a.std, 0.02, 0, "std");
  assertClose(d.std, S0, 0.02, 0, "std vs data");
});

Deno.test("deterministic DDIM and DPM-Solver++(2M) converge to the data distribution", async () => {
  for (const [name, steps, tol] of [["ddim", 50, 0.04], ["dpmpp2m", 200, 0.01]] as const) {
    const { mean, std } = await draw(name, steps);
    assertClose(mean, MU0, 0.02, 0, `${name} mean`);
    assertClose(std, S0, tol, 0, `${name} std`);
  }
});

Deno.test("DDIM η = 0 is deterministic given x_T; sampling frees its tensors", async () => {
  const before = tf.memory().numTensors;
  const a = await draw("ddim", 20, 0, 100);
  const b = await draw("ddim", 20, 0, 100);
  assert.equal(a.mean, b.mean);
  await draw("dpmpp2m", 20, 0, 100);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("unknown sampler names are refused with the valid ones", () => {
  assert.throws(
    () => makeSampler("euler", makeSchedule({ kind: "linear", T: 10 }), "eps"),
    /ddpm, ddim, dpmpp2m/,
  );
});
