/**
 * Distances between sets of points (2-D toy data, or any vectors): MMD² with
 * a sum of RBF kernels at several bandwidths, and the sliced Wasserstein
 * distance. Both take flat row-major arrays [n·d].
 */
import type { Rng } from "../runtime/rng.ts";

/** RBF bandwidths σ used by {@link mmd}: k(x, y) = Σ_σ exp(−|x − y|² / (2σ²)). */
export const MMD_BANDWIDTHS = [0.05, 0.1, 0.2, 0.5, 1, 2];

function kernelSum(
  a: ArrayLike<number>,
  na: number,
  b: ArrayLike<number>,
  nb: number,
  d: number,
  gammas: number[],
  same: boolean,
): number {
  let total = 0;
  for (let i = 0; i < na; i++) {
    for (let j = same ? i + 1 : 0; j < nb; j++) {
      let sq = 0;
      for (let k = 0; k < d; k++) {
        const diff = a[i * d + k] - b[j * d + k];
        sq += diff * diff;
      }
      for (const g of gammas) total += Math.exp(-g * sq);
    }
  }
  return same ? 2 * total : total;
}

/**
 * Unbiased MMD² between samples x [n·d] and y [m·d] under the summed RBF
 * kernel (bandwidths {@link MMD_BANDWIDTHS} by default). 0 in expectation
 * for equal distributions; can be slightly negative.
 */
export function mmd(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  d: number,
  bandwidths: number[] = MMD_BANDWIDTHS,
): number {
  const n = x.length / d;
  const m = y.length / d;
  if (!Number.isInteger(n) || !Number.isInteger(m) || n < 2 || m < 2) {
    throw new Error(
      `mmd: need at least 2 rows of width ${d} in each set (got ${x.length} and ${y.length} values)`,
    );
  }
  const gammas = bandwidths.map((s) => 1 / (2 * s * s));
  const kxx = kernelSum(x, n, x, n, d, gammas, true) / (n * (n - 1));
  const kyy = kernelSum(y, m, y, m, d, gammas, true) / (m * (m - 1));
  const kxy = kernelSum(x, n, y, m, d, gammas, false) / (n * m);
  return kxx + kyy - 2 * kxy;
}

/** W1 between two 1-D samples via their quantile functions (equal or unequal sizes). */
export function wasserstein1d(a: Float64Array, b: Float64Array): number {
  const sa = Float64Array.from(a).sort();
  const sb = Float64Array.from(b).sort();
  // Merge the CDF breakpoints: ∫ |F_a⁻¹(u) − F_b⁻¹(u)| du over u ∈ [0, 1].
  let i = 0;
  let j = 0;
  let u = 0;
  let total = 0;
  while (i < sa.length && j < sb.length) {
    const ua = (i + 1) / sa.length;
    const ub = (j + 1) / sb.length;
    const next = Math.min(ua, ub);
    total += (next - u) * Math.abs(sa[i] - sb[j]);
    u = next;
    if (ua <= next) i++;
    if (ub <= next) j++;
  }
  return total;
}

/**
 * Sliced Wasserstein-1 distance: the mean over `projections` random unit
 * directions (seeded) of W1 between the projected samples.
 */
export function slicedWasserstein(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  d: number,
  rng: Rng,
  projections = 128,
): number {
  const n = x.length / d;
  const m = y.length / d;
  let total = 0;
  const px = new Float64Array(n);
  const py = new Float64Array(m);
  for (let p = 0; p < projections; p++) {
    const dir = Array.from({ length: d }, () => rng.normal());
    const norm = Math.hypot(...dir);
    for (let k = 0; k < d; k++) dir[k] /= norm;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += x[i * d + k] * dir[k];
      px[i] = s;
    }
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += y[i * d + k] * dir[k];
      py[i] = s;
    }
    total += wasserstein1d(px, py);
  }
  return total / projections;
}
