import assert from "node:assert/strict";
import { mmd, slicedWasserstein, wasserstein1d } from "../../lib/metrics/points.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose } from "../helpers.ts";

function gaussian(n: number, d: number, shift: number, rng: Rng): Float64Array {
  return Float64Array.from({ length: n * d }, () => rng.normal() + shift);
}

Deno.test("MMD² is ≈ 0 for the same distribution and clearly positive for a shifted one", () => {
  const rng = new Rng(3);
  const a = gaussian(1000, 2, 0, rng);
  const b = gaussian(1000, 2, 0, rng);
  const c = gaussian(1000, 2, 0.5, rng);
  const same = mmd(a, b, 2);
  const shifted = mmd(a, c, 2);
  assert.ok(Math.abs(same) < 0.006, `same: ${same}`);
  assert.ok(shifted > 10 * Math.abs(same) && shifted > 0.05, `shifted: ${shifted}`);
});

Deno.test("MMD² matches a direct evaluation of its definition on a tiny case", () => {
  const x = [0, 0, 1, 0];
  const y = [0, 1, 2, 2, 1, 1];
  const k = (p: number[], q: number[]) => {
    const sq = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2;
    return [0.05, 0.1, 0.2, 0.5, 1, 2].reduce((s, b) => s + Math.exp(-sq / (2 * b * b)), 0);
  };
  const X = [[0, 0], [1, 0]];
  const Y = [[0, 1], [2, 2], [1, 1]];
  const kxx = 2 * k(X[0], X[1]) / 2;
  let kyy = 0;
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) if (i !== j) kyy += k(Y[i], Y[j]);
  let kxy = 0;
  for (const p of X) for (const q of Y) kxy += k(p, q);
  assertClose(mmd(x, y, 2), kxx + kyy / 6 - 2 * kxy / 6, 1e-12);
});

Deno.test("1-D Wasserstein: a shift moves it by the shift; unequal sizes use quantiles", () => {
  const a = Float64Array.from([0, 1, 2, 3]);
  assertClose(wasserstein1d(a, a.map((v) => v + 0.7)), 0.7, 1e-12);
  assertClose(wasserstein1d(Float64Array.from([0, 1]), Float64Array.from([0, 0, 1, 1])), 0, 1e-12);
  assertClose(wasserstein1d(Float64Array.from([0]), Float64Array.from([1, 3])), 2, 1e-12);
});

Deno.test("sliced Wasserstein: 0 for identical sets, ≈ |shift|·E|cos θ| for a shifted set", () => {
  const rng = new Rng(5);
  const a = gaussian(2000, 2, 0, rng);
  assert.equal(slicedWasserstein(a, a, 2, new Rng(1)), 0);
  const b = a.map((v, i) => (i % 2 === 0 ? v + 1 : v));
  // Shifting x by 1 moves every projection on direction θ by cos θ; E|cos θ| = 2/π.
  assertClose(slicedWasserstein(a, b, 2, new Rng(1), 512), 2 / Math.PI, 0.04);
});
