import assert from "node:assert/strict";
import { linearBetas, logSnr, makeSchedule } from "../../lib/diffusion/schedules.ts";
import { assertClose } from "../helpers.ts";

Deno.test("linear schedule: β endpoints, ᾱ and β̃ against an independent float64 computation", () => {
  const T = 1000;
  const s = makeSchedule({ kind: "linear", T });
  assertClose(s.betas[0], 1e-4, 1e-15);
  assertClose(s.betas[T - 1], 0.02, 1e-15);
  // Paper indexing, 1-based: β_t = β1 + (t−1)/(T−1)(βT − β1); ᾱ_t = exp Σ log(1 − β_s).
  const beta = (t: number) => 1e-4 + (t - 1) / (T - 1) * (0.02 - 1e-4);
  const abar = (t: number) => {
    let l = 0;
    for (let u = 1; u <= t; u++) l += Math.log1p(-beta(u));
    return Math.exp(l);
  };
  assertClose(s.alphasCumprod[T - 1], abar(T), 0, 1e-10, "ᾱ_T");
  assertClose(s.alphasCumprod[T - 1], 4.0358e-5, 0, 1e-3, "ᾱ_T known value");
  for (const t of [1, 2, 10, 250, 500, 999, 1000]) {
    const btilde = t === 1 ? 0 : beta(t) * (1 - abar(t - 1)) / (1 - abar(t));
    assertClose(s.posteriorVariance[t - 1], btilde, 1e-18, 1e-10, `β̃ at t=${t}`);
    assertClose(s.alphasCumprodPrev[t - 1], t === 1 ? 1 : abar(t - 1), 0, 1e-10);
  }
});

Deno.test("linear schedule scales by 1000/T unless betas are given", () => {
  const b = linearBetas(100);
  assertClose(b[0], 1e-3, 1e-15);
  assertClose(b[99], 0.2, 1e-12);
  const c = makeSchedule({ kind: "linear", T: 100, betaStart: 1e-4, betaEnd: 0.02 });
  assertClose(c.betas[99], 0.02, 1e-15);
});

Deno.test("cosine schedule: ᾱ_t = f(t)/f(0) until β is clipped, β ≤ 0.999", () => {
  const T = 1000;
  const s = makeSchedule({ kind: "cosine", T });
  const f = (t: number) => Math.cos(((t / T + 0.008) / 1.008) * Math.PI / 2) ** 2;
  for (const t of [1, 10, 100, 500, 900, 990]) {
    assertClose(s.alphasCumprod[t - 1], f(t) / f(0), 0, 1e-9, `ᾱ at t=${t}`);
    const btilde = (1 - f(t) / f(t - 1)) * (1 - f(t - 1) / f(0)) / (1 - f(t) / f(0));
    if (t > 1) assertClose(s.posteriorVariance[t - 1], btilde, 1e-15, 1e-8, `β̃ at t=${t}`);
  }
  assert.ok(s.betas.every((b) => b > 0 && b <= 0.999));
  assertClose(s.betas[T - 1], 0.999, 1e-12, 0, "the last β is clipped");
  assert.ok(s.alphasCumprod[T - 1] < 1e-6);
});

Deno.test("sigmoid schedule is monotone from ≈1 to ≈0", () => {
  const s = makeSchedule({ kind: "sigmoid", T: 1000 });
  for (let i = 1; i < 1000; i++) assert.ok(s.alphasCumprod[i] <= s.alphasCumprod[i - 1]);
  assert.ok(s.alphasCumprod[0] > 0.999 && s.alphasCumprod[999] < 1e-3);
});

Deno.test("log-SNR decreases; bad T and kinds are refused with the reason", () => {
  const l = logSnr(makeSchedule({ kind: "cosine", T: 50 }));
  for (let i = 1; i < 50; i++) assert.ok(l[i] < l[i - 1]);
  assert.throws(
    () => makeSchedule({ kind: "linear", T: 5 }),
    /T must be an integer from 10 to 4000/,
  );
  assert.throws(() => makeSchedule({ kind: "quadratic" as "linear", T: 100 }), /unknown kind/);
});

Deno.test("zero terminal SNR (Lin et al. Algorithm 1): ᾱ_T = 0, ᾱ_1 kept, √ᾱ shifted and scaled", () => {
  for (const kind of ["linear", "cosine", "sigmoid"] as const) {
    const plain = makeSchedule({ kind, T: 1000 });
    const zero = makeSchedule({ kind, T: 1000, zeroSnr: true });
    const a0 = Math.sqrt(plain.alphasCumprod[0]);
    const aT = Math.sqrt(plain.alphasCumprod[999]);
    for (const t of [0, 1, 250, 500, 998, 999]) {
      const want = ((Math.sqrt(plain.alphasCumprod[t]) - aT) * a0 / (a0 - aT)) ** 2;
      assertClose(zero.alphasCumprod[t], want, 1e-9, 1e-12, `${kind} ᾱ at ${t}`);
    }
    assert.equal(zero.alphasCumprod[999], 0, kind);
    assertClose(zero.betas[999], 1, 1e-12, 0, `${kind} last β`);
    for (let t = 1; t < 1000; t++) assert.ok(zero.alphasCumprod[t] < zero.alphasCumprod[t - 1]);
  }
});
