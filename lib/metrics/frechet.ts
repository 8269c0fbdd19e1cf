/**
 * The Fréchet distance between two Gaussians, FD = |μ1 − μ2|² + tr Σ1 + tr Σ2
 * − 2 tr √(√Σ1 Σ2 √Σ1), in float64 through symmetric eigendecompositions
 * (ml-matrix), so the matrix square root is always real and stable. When Σ1
 * is singular (fewer samples than dimensions, say), 1e-6 is added to both
 * diagonals first, as pytorch-fid does.
 */
import { EigenvalueDecomposition, Matrix } from "ml-matrix";

/** Mean and covariance of a feature set. */
export interface FeatureStats {
  mu: number[];
  sigma: number[][];
}

/** Mean and unbiased (n − 1) covariance of n feature rows of width d ([n·d], row-major). */
export function featureStats(features: ArrayLike<number>, n: number, d: number): FeatureStats {
  if (features.length !== n * d) {
    throw new Error(`featureStats: ${features.length} values are not ${n} rows of ${d}`);
  }
  if (n < 2) throw new Error("featureStats: need at least 2 rows");
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) mu[k] += features[i * d + k];
  for (let k = 0; k < d; k++) mu[k] /= n;
  const cov = new Float64Array(d * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) row[k] = features[i * d + k] - mu[k];
    for (let a = 0; a < d; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      const off = a * d;
      for (let b = a; b < d; b++) cov[off + b] += ra * row[b];
    }
  }
  const sigma = Array.from({ length: d }, () => new Array<number>(d));
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) sigma[a][b] = sigma[b][a] = cov[a * d + b] / (n - 1);
  }
  return { mu: Array.from(mu), sigma };
}

function symmetricSqrt(m: Matrix): { root: Matrix; minEig: number; maxEig: number } {
  const e = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const vals = e.realEigenvalues;
  const V = e.eigenvectorMatrix;
  const D = Matrix.diag(vals.map((v) => Math.sqrt(Math.max(v, 0))));
  return {
    root: V.mmul(D).mmul(V.transpose()),
    minEig: Math.min(...vals),
    maxEig: Math.max(...vals),
  };
}

/** tr √(√A B √A) for symmetric positive semi-definite A and B. */
function traceSqrtProduct(a: Matrix, b: Matrix): number {
  const rootA = symmetricSqrt(a).root;
  const m = rootA.mmul(b).mmul(rootA);
  const sym = m.add(m.transpose()).div(2);
  const vals = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).realEigenvalues;
  return vals.reduce((s, v) => s + Math.sqrt(Math.max(v, 0)), 0);
}

/** The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). */
export function frechetDistance(
  mu1: number[],
  sigma1: number[][],
  mu2: number[],
  sigma2: number[][],
): number {
  const d = mu1.length;
  if (mu2.length !== d || sigma1.length !== d || sigma2.length !== d) {
    throw new Error(
      `frechetDistance: dimensions differ (${mu1.length}, ${mu2.length}, ${sigma1.length}, ${sigma2.length})`,
    );
  }
  let s1 = new Matrix(sigma1);
  let s2 = new Matrix(sigma2);
  const { minEig, maxEig } = symmetricSqrt(s1);
  if (minEig <= 1e-12 * Math.max(maxEig, 1)) {
    const eps = Matrix.eye(d).mul(1e-6);
    s1 = s1.add(eps);
    s2 = s2.add(eps);
  }
  let diff = 0;
  for (let k = 0; k < d; k++) diff += (mu1[k] - mu2[k]) ** 2;
  return diff + s1.trace() + s2.trace() - 2 * traceSqrtProduct(s1, s2);
}
