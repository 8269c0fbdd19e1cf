/**
 * Timestep samplers: uniform; loss-aware resampling (uniform until every t has
 * ten losses, then p(t) ∝ √E[L_t²] mixed with 0.1% uniform, the last ten kept,
 * importance weights 1/(T·p) that keep the loss unbiased), and its state.
 */
import assert from "node:assert/strict";
import {
  LossAwareTimesteps,
  makeTimestepSampler,
  UniformTimesteps,
} from "../../lib/diffusion/timesteps.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose } from "../helpers.ts";

Deno.test("uniform draws cover [0, T) evenly with weight 1", () => {
  const { t, weights } = new UniformTimesteps(4).draw(40000, new Rng(1));
  const counts = [0, 0, 0, 0];
  for (const v of t) counts[v]++;
  for (const c of counts) assertClose(c / 40000, 0.25, 0.01);
  assert.ok(weights.every((w) => w === 1));
});

Deno.test("loss-aware: uniform until every t has ten losses, then √E[L²] with the mix", () => {
  const T = 3;
  const s = new LossAwareTimesteps(T);
  const feed = (t: number, losses: number[]) =>
    s.update(Int32Array.from(losses, () => t), Float32Array.from(losses));
  feed(0, Array(10).fill(1));
  feed(1, Array(10).fill(2));
  feed(2, Array(9).fill(4));
  assert.deepEqual([...s.probabilities()], [1 / 3, 1 / 3, 1 / 3], "t = 2 has only nine");
  feed(2, [100, 4]); // eleven: the oldest 4 falls out, the 100 stays
  const rms2 = Math.sqrt((8 * 16 + 100 * 100 + 16) / 10);
  const raw = [1, 2, rms2], sum = raw.reduce((a, b) => a + b, 0);
  const want = raw.map((r) => (r / sum) * 0.999 + 0.001 / T);
  s.probabilities().forEach((p, i) => assertClose(p, want[i], 1e-12, 0, `p(${i})`));
  const { t, weights } = s.draw(60000, new Rng(2));
  const counts = [0, 0, 0];
  t.forEach((v, i) => {
    counts[v]++;
    assertClose(weights[i], 1 / (T * want[v]), 1e-6, 1e-6, `weight of t=${v}`);
  });
  counts.forEach((c, i) => assertClose(c / 60000, want[i], 0.01, 0, `frequency of t=${i}`));
  // Unbiased: E[w·L] under p equals the uniform mean of L.
  const L = [1, 2, 3];
  const weighted = want.reduce((acc, p, i) => acc + p * (1 / (T * p)) * L[i], 0);
  assertClose(weighted, (1 + 2 + 3) / 3, 1e-12);
});

Deno.test("loss-aware state round-trips through a checkpoint; unknown kinds are refused", () => {
  const s = new LossAwareTimesteps(2);
  s.update(Int32Array.of(0, 1, 1), Float32Array.of(0.5, 1, 2));
  const restored = makeTimestepSampler("loss-aware", 2, JSON.parse(JSON.stringify(s.state())));
  assert.deepEqual(restored.state(), s.state());
  assert.equal(restored.wantsLosses, true);
  assert.throws(
    () => makeTimestepSampler("importance" as "uniform", 2),
    /unknown timestep sampler "importance"/,
  );
});
