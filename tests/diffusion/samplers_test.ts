import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { runReverse } from "../../lib/diffusion/reverse.ts";
import { makeSampler, spacedTimesteps } from "../../lib/diffusion/samplers.ts";
import { makeSchedule, type Schedule } from "../../lib/diffusion/schedules.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd, useBackend } from "../helpers.ts";

await useBackend("cpu");

// Data x0 ~ N(μ0, s0²) in 1-D: the optimal ε-predictor is known in closed form,
// E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ0) / (ᾱ s0² + 1 − ᾱ), so samplers can be checked exactly.
const MU0 = 0.7;
const S0 = 0.3;
// The network is asked at whole timesteps by ddpm/ddim/dpmpp2m, and at fractional
// ones by the σ-space samplers: there ᾱ follows log σ linearly between steps.
function alphaBarAt(schedule: Schedule, t: number): number {
  const lo = Math.floor(t);
  if (lo === t) return schedule.alphasCumprod[t];
  const logSigma = (i: number) =>
    0.5 * Math.log((1 - schedule.alphasCumprod[i]) / schedule.alphasCumprod[i]);
  const f = t - lo;
  const sigma = Math.exp((1 - f) * logSigma(lo) + f * logSigma(lo + 1));
  return 1 / (1 + sigma * sigma);
}

function oracle(schedule: Schedule) {
  return (x: tf.Tensor, t: number) =>
    tf.tidy(() => {
      const ab = alphaBarAt(schedule, t);
      return tf.mul(tf.sub(x, Math.sqrt(ab) * MU0), Math.sqrt(1 - ab) / (ab * S0 * S0 + 1 - ab));
    });
}

async function draw(name: string, steps: number, eta = 0, n = 10000, T = 1000, churn = 0) {
  const schedule = makeSchedule({ kind: "linear", T });
  const sampler = makeSampler(name, { kind: "discrete", schedule, objective: "eps" }, {
    eta,
    churn,
  });
  const { x } = await runReverse(sampler, oracle(schedule), steps, [n, 1], new Rng(1));
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
  for (const name of ["euler", "heun", "dpmpp2m_sde"]) await draw(name, 20, 0, 100, 1000, 1);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("σ-space samplers on a DDPM's ε-network (fractional timesteps) reach the data distribution", async () => {
  for (
    const [name, steps, churn] of [["euler", 100, 0], ["heun", 30, 0], ["dpmpp2m_sde", 100, 0], [
      "euler",
      200,
      20,
    ]] as const
  ) {
    const { mean, std } = await draw(
      name,
      steps,
      name === "dpmpp2m_sde" ? 1 : 0,
      10000,
      1000,
      churn,
    );
    assertClose(mean, MU0, 0.02, 0, `${name} churn ${churn} mean`);
    assertClose(std, S0, 0.02, 0, `${name} churn ${churn} std`);
  }
});

Deno.test("each parameterisation takes its own samplers; other names are refused with the valid ones", () => {
  const schedule = makeSchedule({ kind: "linear", T: 10 });
  assert.throws(
    () => makeSampler("lms", { kind: "discrete", schedule, objective: "eps" }),
    /ddpm, ddim, dpmpp2m, euler, heun, dpmpp2m_sde/,
  );
  assert.throws(() => makeSampler("ddim", { kind: "flow" }), /for flow models \(euler, heun\)/);
  assert.throws(() => makeSampler("ddpm", { kind: "edm", sigmaData: 0.5 }), /for EDM models/);
});

Deno.test("NFE: one network call per step, Heun two but one on the last step to σ = 0", async () => {
  const schedule = makeSchedule({ kind: "linear", T: 100 });
  const param = { kind: "discrete", schedule, objective: "eps" } as const;
  for (
    const [name, want] of [["ddim", 10], ["euler", 10], ["heun", 19], ["dpmpp2m", 10]] as const
  ) {
    const { x, nfe } = await runReverse(
      makeSampler(name, param),
      oracle(schedule),
      10,
      [4, 1],
      new Rng(1),
    );
    x.dispose();
    assert.equal(nfe, want, name);
  }
  const { x, nfe } = await runReverse(
    makeSampler("ddim", param),
    oracle(schedule),
    10,
    [4, 1],
    new Rng(1),
    { costPerCall: 2 },
  );
  x.dispose();
  assert.equal(nfe, 20, "guidance doubles the cost");
});

Deno.test("zero terminal SNR: a v-network sampled from pure noise with trailing spacing reaches the data", async () => {
  // The exact v-predictor for N(μ0, s0²) data: v = √ᾱ·E[ε|x] − √(1−ᾱ)·E[x0|x].
  const schedule = makeSchedule({ kind: "cosine", T: 1000, zeroSnr: true });
  assert.equal(schedule.alphasCumprod[999], 0);
  const vOracle = (x: tf.Tensor, t: number) =>
    tf.tidy(() => {
      const ab = alphaBarAt(schedule, t);
      const varX = ab * S0 * S0 + 1 - ab;
      const centred = tf.sub(x, Math.sqrt(ab) * MU0);
      const eps = tf.mul(centred, Math.sqrt(1 - ab) / varX);
      const x0 = tf.add(tf.mul(centred, Math.sqrt(ab) * S0 * S0 / varX), MU0);
      return tf.sub(tf.mul(eps, Math.sqrt(ab)), tf.mul(x0, Math.sqrt(1 - ab)));
    });
  for (const name of ["ddim", "ddpm", "dpmpp2m"]) {
    const sampler = makeSampler(name, { kind: "discrete", schedule, objective: "v" }, {
      spacing: "trailing",
    });
    const { x } = await runReverse(sampler, vOracle, 50, [10000, 1], new Rng(2));
    const { mean, std } = meanStd(x.dataSync());
    x.dispose();
    assertClose(mean, MU0, 0.02, 0, `${name} mean`);
    assertClose(std, S0, 0.03, 0, `${name} std`);
  }
});
