import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { runReverse } from "../../lib/diffusion/reverse.ts";
import { makeSchedule } from "../../lib/diffusion/schedules.ts";
import {
  edmPreconditioning,
  karrasSigmas,
  makeSigmaSampler,
  scheduleSigmas,
  type SigmaModel,
  sigmaToT,
} from "../../lib/diffusion/sigma.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd, useBackend } from "../helpers.ts";

await useBackend("cpu");

// Data x0 ~ N(μ, s²); in σ-space x = x0 + σε, and the exact denoiser is
// E[x0 | x] = μ + s²/(s² + σ²)·(x − μ). The probability-flow ODE then has the
// closed-form solution x(σ) = μ + (x(σ_max) − μ)·√(s² + σ²)/√(s² + σ_max²).
const MU = 0.7;
const S = 0.5;
const exact: SigmaModel = {
  sigmaMin: 0.002,
  sigmaMax: 80,
  denoise: (x, sigma) =>
    tf.tidy(() => tf.add(tf.mul(tf.sub(x, MU), S * S / (S * S + sigma * sigma)), MU)),
};

Deno.test("the Karras grid: ρ-spaced from σ_max to σ_min, then 0", () => {
  const g = karrasSigmas(5, 0.002, 80, 7);
  assert.equal(g.length, 6);
  assert.equal(g[5], 0);
  assertClose(g[0], 80, 1e-12, 0, "σ_max");
  assertClose(g[4], 0.002, 1e-12, 0, "σ_min");
  // Middle point, computed from its definition: the ρ-th root is linear in i.
  const mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7;
  assertClose(g[2], mid, 1e-12, 0, "midpoint");
  for (let i = 1; i < 5; i++) assert.ok(g[i] < g[i - 1]);
  // ρ = 1 is a linear grid.
  assert.deepEqual(karrasSigmas(3, 1, 3, 1).map((v) => Math.round(v * 1e12) / 1e12), [3, 2, 1, 0]);
  assert.throws(() => karrasSigmas(0, 0.1, 1), /steps must be ≥ 1/);
  assert.throws(() => karrasSigmas(4, 2, 1), /σ_min < σ_max/);
});

Deno.test("EDM's preconditioning against its definitions (σ_data = 0.5)", () => {
  const d = 0.5;
  const at = edmPreconditioning(d, d); // σ = σ_data: c_skip = ½, c_out = σ_d/√2, c_in = 1/(σ_d√2)
  assertClose(at.cSkip, 0.5, 1e-15, 0, "c_skip");
  assertClose(at.cOut, d / Math.SQRT2, 1e-15, 0, "c_out");
  assertClose(at.cIn, 1 / (d * Math.SQRT2), 1e-15, 0, "c_in");
  for (const sigma of [0.002, 0.1, 1, 80]) {
    const p = edmPreconditioning(sigma, d);
    assertClose(p.weight * p.cOut ** 2, 1, 1e-12, 0, `λ·c_out² at σ = ${sigma}`);
    // D(x) = c_skip·x + c_out·F is unbiased for F = the ideal target at x = x0 + σn:
    // c_skip² σ_d² + ... : the effective input c_in·x has unit variance.
    assertClose(p.cIn ** 2 * (d * d + sigma * sigma), 1, 1e-12, 0, `Var(c_in·x) at σ = ${sigma}`);
  }
  assertClose(edmPreconditioning(0.002, d).cNoise, 0, 1e-9, 0, "c_noise at σ_min");
  assertClose(edmPreconditioning(80, d).cNoise, 1000, 1e-9, 0, "c_noise at σ_max");
});

Deno.test("σ ↔ timestep: whole steps map back to themselves, between them log σ is linear", () => {
  const sigmas = scheduleSigmas(makeSchedule({ kind: "linear", T: 1000 }));
  for (const t of [0, 1, 17, 500, 998, 999]) {
    assertClose(sigmaToT(sigmas, sigmas[t]), t, 1e-9, 0, `t = ${t}`);
  }
  const between = Math.exp((Math.log(sigmas[10]) + Math.log(sigmas[11])) / 2);
  assertClose(sigmaToT(sigmas, between), 10.5, 1e-9, 0, "half way");
  assert.equal(sigmaToT(sigmas, 1e-9), 0);
  assert.equal(sigmaToT(sigmas, 1e9), 999);
});

async function solve(name: string, steps: number, opts = {}, n = 10000, seed = 1) {
  const sampler = makeSigmaSampler(name, exact, opts);
  const { x, nfe } = await runReverse(sampler, (x) => x, steps, [n, 1], new Rng(seed));
  const v = Float64Array.from(x.dataSync());
  x.dispose();
  return { v, nfe };
}

// σ_max/s = 160 makes this a hard grid: 20 Heun steps still leave 4% on the std.
Deno.test("every σ-space sampler with the exact denoiser reaches N(μ, s²)", async () => {
  for (
    const [name, steps, opts] of [
      ["euler", 400, {}],
      ["heun", 40, {}],
      ["dpmpp2m", 40, {}],
      ["dpmpp2m_sde", 100, {}],
      ["heun", 40, { churn: 10 }],
    ] as const
  ) {
    const { mean, std } = meanStd((await solve(name, steps, opts)).v);
    assertClose(mean, MU, 0.02, 0, `${name} mean`);
    assertClose(std, S, 0.02, 0, `${name} ${JSON.stringify(opts)} std`);
  }
});

Deno.test("deterministic samplers are deterministic; churn and the SDE draw noise", async () => {
  for (const name of ["euler", "heun", "dpmpp2m"]) {
    const a = await solve(name, 8, {}, 50, 1);
    const b = await solve(name, 8, {}, 50, 1);
    assert.deepEqual(a.v, b.v, name);
  }
  // Same prior draw (seed), different paths: the noise comes from the same Rng after it,
  // so compare against the deterministic run instead.
  const plain = await solve("euler", 8, {}, 50, 1);
  const churned = await solve("euler", 8, { churn: 5 }, 50, 1);
  assert.notDeepEqual(plain.v, churned.v);
  const ode = await solve("dpmpp2m", 8, {}, 50, 1);
  const sde = await solve("dpmpp2m_sde", 8, {}, 50, 1);
  assert.notDeepEqual(ode.v, sde.v);
  const sdeEta0 = await solve("dpmpp2m_sde", 8, { eta: 0 }, 50, 1);
  for (let i = 0; i < 50; i++) assertClose(sdeEta0.v[i], ode.v[i], 1e-4, 1e-5, "η = 0 is 2M");
});

Deno.test("Heun's error falls faster with steps than Euler's (second order against first)", async () => {
  // From one fixed x(σ_max), compare with the ODE's closed-form end point.
  const errorOf = async (name: string, steps: number) => {
    const sampler = makeSigmaSampler(name, exact, { grid: "karras" });
    const total = sampler.setSteps(steps);
    const start = tf.tensor2d([[-150], [-40], [10], [95]]);
    const want = [-150, -40, 10, 95].map((x) => MU + (x - MU) * S / Math.sqrt(S * S + 80 * 80));
    const { x } = await runReverse(sampler, (x) => x, steps, [4, 1], new Rng(1), { start });
    assert.equal(total, steps);
    const got = x.dataSync();
    x.dispose();
    return Math.max(...want.map((w, i) => Math.abs(got[i] - w)));
  };
  const euler = [
    await errorOf("euler", 10),
    await errorOf("euler", 20),
    await errorOf("euler", 40),
  ];
  const heun = [await errorOf("heun", 10), await errorOf("heun", 20), await errorOf("heun", 40)];
  for (let i = 0; i < 3; i++) assert.ok(heun[i] < euler[i], `heun ${heun[i]} < euler ${euler[i]}`);
  const order = (e: number[]) => Math.log2(e[1] / e[2]);
  assert.ok(order(euler) < 1.5, `Euler's observed order ${order(euler)}`);
  assert.ok(order(heun) > 1.5, `Heun's observed order ${order(heun)}`);
});

Deno.test("σ-space sampling frees every tensor it makes", async () => {
  const before = tf.memory().numTensors;
  for (const name of ["euler", "heun", "dpmpp2m", "dpmpp2m_sde"]) {
    await solve(name, 6, { churn: 2 }, 10);
  }
  assert.equal(tf.memory().numTensors, before);
});
