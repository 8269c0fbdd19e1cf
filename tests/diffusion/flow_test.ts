import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  drawFlowTimes,
  FLOW_TIME_SCALE,
  flowInterpolate,
  flowTarget,
  makeFlowSampler,
} from "../../lib/diffusion/flow.ts";
import { runReverse } from "../../lib/diffusion/reverse.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd, useBackend } from "../helpers.ts";

await useBackend("cpu");

// A two-component 1-D mixture: x0 ~ 0.3·N(−2, 0.3²) + 0.7·N(1.5, 0.5²). On the
// straight path x_t = (1 − t)x0 + tε, given the component k, x_t is Gaussian
// with mean (1 − t)μ_k and variance (1 − t)²s_k² + t², so the exact velocity
// E[ε − x0 | x_t] is a posterior-weighted sum of per-component regressions.
const MIX = [
  { w: 0.3, mu: -2, s: 0.3 },
  { w: 0.7, mu: 1.5, s: 0.5 },
];

function exactVelocity(x: tf.Tensor, time: number): tf.Tensor {
  const t = time / FLOW_TIME_SCALE;
  const xs = x.dataSync();
  const out = new Float32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    let norm = 0;
    let v = 0;
    for (const c of MIX) {
      const variance = (1 - t) ** 2 * c.s ** 2 + t * t;
      const d = xs[i] - (1 - t) * c.mu;
      const p = c.w * Math.exp(-d * d / (2 * variance)) / Math.sqrt(variance);
      const eps = t * d / variance; // E[ε | x_t, k]
      const x0 = c.mu + (1 - t) * c.s ** 2 * d / variance; // E[x0 | x_t, k]
      norm += p;
      v += p * (eps - x0);
    }
    out[i] = v / norm;
  }
  return tf.tensor(out, x.shape);
}

function summary(v: ArrayLike<number>) {
  const low = Array.from(v).filter((x) => x < 0);
  const high = Array.from(v).filter((x) => x >= 0);
  return { share: low.length / v.length, low: meanStd(low), high: meanStd(high) };
}

Deno.test("flow matching: Euler and Heun on the exact velocity carry noise to the mixture", async () => {
  for (const [name, steps] of [["euler", 200], ["heun", 40]] as const) {
    const { x, nfe } = await runReverse(
      makeFlowSampler(name),
      exactVelocity,
      steps,
      [20000, 1],
      new Rng(3),
    );
    const s = summary(x.dataSync());
    x.dispose();
    assert.equal(nfe, name === "euler" ? steps : 2 * steps - 1);
    assertClose(s.share, 0.3, 0.015, 0, `${name} share of the left mode`);
    assertClose(s.low.mean, -2, 0.03, 0, `${name} left mean`);
    assertClose(s.low.std, 0.3, 0.03, 0, `${name} left std`);
    assertClose(s.high.mean, 1.5, 0.03, 0, `${name} right mean`);
    assertClose(s.high.std, 0.5, 0.03, 0, `${name} right std`);
  }
});

Deno.test("flow matching: the path and its velocity target, checked by hand", () => {
  const x0 = tf.tensor2d([[1, 2], [3, 4]]);
  const noise = tf.tensor2d([[0, 1], [-1, 0]]);
  const xt = flowInterpolate(x0, noise, Float32Array.from([0.25, 1]));
  assert.deepEqual(Array.from(xt.dataSync()), [0.75, 1.75, -1, 0]);
  assert.deepEqual(Array.from(flowTarget(x0, noise).dataSync()), [-1, -1, -4, -4]);
  tf.dispose([x0, noise, xt]);
});

Deno.test("flow matching: training times are uniform or logit-normal on (0, 1)", () => {
  const uni = drawFlowTimes(20000, "uniform", new Rng(1));
  const ln = drawFlowTimes(20000, "logit-normal", new Rng(1));
  assertClose(meanStd(uni).mean, 0.5, 0.01, 0, "uniform mean");
  assertClose(meanStd(uni).std, Math.sqrt(1 / 12), 0.01, 0, "uniform std");
  // logit(t) ~ N(0, 1)
  const logits = Array.from(ln, (t) => Math.log(t / (1 - t)));
  assertClose(meanStd(logits).mean, 0, 0.03, 0, "logit mean");
  assertClose(meanStd(logits).std, 1, 0.03, 0, "logit std");
  assert.ok(ln.every((t) => t > 0 && t < 1));
});

Deno.test("flow samplers free their tensors and refuse unknown names", async () => {
  const before = tf.memory().numTensors;
  for (const name of ["euler", "heun"]) {
    const { x } = await runReverse(makeFlowSampler(name), (x) => tf.neg(x), 5, [3, 1], new Rng(1));
    x.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => makeFlowSampler("ddim"), /unknown flow sampler "ddim" \(euler, heun\)/);
});
