import assert from "node:assert/strict";
import { featureStats, frechetDistance } from "../../lib/metrics/frechet.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose } from "../helpers.ts";

type M = number[][];
const mul = (a: M, b: M): M =>
  a.map((r) => b[0].map((_, j) => r.reduce((s, v, k) => s + v * b[k][j], 0)));
const add = (a: M, b: M, s = 1): M => a.map((r, i) => r.map((v, j) => v + s * b[i][j]));
const eye = (d: number): M =>
  Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? 1 : 0)));
const trace = (a: M) => a.reduce((s, r, i) => s + r[i], 0);
function inverse(a: M): M {
  const d = a.length;
  const m = a.map((r, i) => [...r, ...eye(d)[i]]);
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    const piv = m[c][c];
    for (let j = 0; j < 2 * d; j++) m[c][j] /= piv;
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = m[r][c];
      for (let j = 0; j < 2 * d; j++) m[r][j] -= f * m[c][j];
    }
  }
  return m.map((r) => r.slice(d));
}
/** √M by the Denman–Beavers iteration: an independent route to the matrix square root. */
function sqrtm(a: M): M {
  let y = a;
  let z = eye(a.length);
  for (let i = 0; i < 60; i++) {
    const yn = add(y, inverse(z)).map((r) => r.map((v) => v / 2));
    const zn = add(z, inverse(y)).map((r) => r.map((v) => v / 2));
    y = yn;
    z = zn;
  }
  return y;
}
/** FD with tr √(Σ1 Σ2) computed as tr √ of the (non-symmetric) product by Denman–Beavers. */
function independentFd(m1: number[], s1: M, m2: number[], s2: M): number {
  const diff = m1.reduce((s, v, i) => s + (v - m2[i]) ** 2, 0);
  return diff + trace(s1) + trace(s2) - 2 * trace(sqrtm(mul(s1, s2)));
}
function randomSpd(d: number, rng: Rng, rank = d): M {
  const a = Array.from({ length: d }, () => Array.from({ length: rank }, () => rng.normal()));
  return mul(a, a[0].map((_, j) => a.map((r) => r[j])));
}

Deno.test("FD is 0 for identical statistics", () => {
  const s = randomSpd(4, new Rng(1));
  assertClose(frechetDistance([1, 2, 3, 4], s, [1, 2, 3, 4], s), 0, 1e-9);
});

Deno.test("FD matches the closed form for diagonal Gaussians", () => {
  const a = [0.5, 2, 1.5];
  const b = [1, 0.25, 3];
  const diag = (v: number[]) => v.map((x, i) => v.map((_, j) => (i === j ? x : 0)));
  const expected = 1 + 4 + a.reduce((s, x, i) => s + (Math.sqrt(x) - Math.sqrt(b[i])) ** 2, 0);
  assertClose(frechetDistance([0, 0, 0], diag(a), [1, 2, 0], diag(b)), expected, 1e-10);
});

Deno.test("FD agrees with an independent float64 computation (Denman–Beavers √ of Σ1Σ2)", () => {
  const rng = new Rng(7);
  for (const d of [2, 3, 5]) {
    const s1 = randomSpd(d, rng);
    const s2 = randomSpd(d, rng);
    const m1 = Array.from({ length: d }, () => rng.normal());
    const m2 = Array.from({ length: d }, () => rng.normal());
    assertClose(
      frechetDistance(m1, s1, m2, s2),
      independentFd(m1, s1, m2, s2),
      1e-8,
      1e-8,
      `d=${d}`,
    );
  }
});

Deno.test("singular covariances (fewer samples than dimensions) get the 1e-6 diagonal offset", () => {
  const rng = new Rng(9);
  const s1 = randomSpd(4, rng, 2); // rank 2
  const s2 = randomSpd(4, rng);
  const off = (s: M) => add(s, eye(4).map((r) => r.map((v) => v * 1e-6)));
  const got = frechetDistance([0, 0, 0, 0], s1, [1, 0, 0, 0], s2);
  assert.ok(Number.isFinite(got));
  assertClose(got, independentFd([0, 0, 0, 0], off(s1), [1, 0, 0, 0], off(s2)), 1e-6, 1e-6);
});

Deno.test("featureStats: mean and unbiased covariance match the naive formulas", () => {
  const rng = new Rng(2);
  const n = 50;
  const d = 3;
  const x = Float64Array.from({ length: n * d }, () => rng.normal());
  const { mu, sigma } = featureStats(x, n, d);
  for (let a = 0; a < d; a++) {
    let m = 0;
    for (let i = 0; i < n; i++) m += x[i * d + a] / n;
    assertClose(mu[a], m, 1e-12);
    for (let b = 0; b < d; b++) {
      let mb = 0;
      for (let i = 0; i < n; i++) mb += x[i * d + b] / n;
      let c = 0;
      for (let i = 0; i < n; i++) c += (x[i * d + a] - m) * (x[i * d + b] - mb);
      assertClose(sigma[a][b], c / (n - 1), 1e-12);
    }
  }
  assert.throws(() => featureStats(x, n, 4), /are not 50 rows of 4/);
});
