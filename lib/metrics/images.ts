/**
 * Image metrics on features of the in-project MNIST network: FID against the
 * MNIST test set, KID (unbiased, cubic polynomial kernel), k-NN precision and
 * recall (Kynkäänniemi et al. 2019), class accuracy of conditional samples,
 * and an Inception-Score analogue. Feature arrays are [n·d] row-major.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import type { Rng } from "../runtime/rng.ts";
import { cacheDir, cacheKey, FEATURE_DIM, type MnistClassifier } from "./classifier.ts";
import { type FeatureStats, featureStats } from "./frechet.ts";

let reference: { features: Float32Array; n: number; stats: FeatureStats } | undefined;

/**
 * Features and statistics of the 10,000 MNIST test images: computed once per
 * machine (the features are cached beside the classifier, under its key) and
 * kept for the process.
 */
export function mnistReference(
  clf: MnistClassifier,
): { features: Float32Array; n: number; stats: FeatureStats } {
  if (reference) return reference;
  const file = join(cacheDir(), `reference-test-${cacheKey()}.f32`);
  const n = 10000;
  let features: Float32Array | undefined;
  if (fs.existsSync(file)) {
    const bytes = fs.readFileSync(file);
    if (bytes.byteLength === n * FEATURE_DIM * 4) {
      features = new Float32Array(
        bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      );
    }
  }
  if (!features) {
    const test = loadMnist("test");
    features = clf.features(
      mnistToFloat(test.images, Int32Array.from({ length: test.n }, (_, i) => i)),
      test.n,
    );
    fs.mkdirSync(cacheDir(), { recursive: true });
    const tmp = `${file}.tmp-${Deno.pid}`;
    fs.writeFileSync(
      tmp,
      new Uint8Array(features.buffer, features.byteOffset, features.byteLength),
    );
    fs.renameSync(tmp, file);
  }
  return reference = { features, n, stats: featureStats(features, n, FEATURE_DIM) };
}

/** Rows `idx` of a [n·d] array. */
export function takeRows(x: ArrayLike<number>, d: number, idx: ArrayLike<number>): Float64Array {
  const out = new Float64Array(idx.length * d);
  for (let i = 0; i < idx.length; i++) {
    for (let k = 0; k < d; k++) out[i * d + k] = x[idx[i] * d + k];
  }
  return out;
}

/**
 * KID: unbiased MMD² with k(x, y) = (x·y/d + 1)³, averaged over `subsets`
 * random subsets of `subsetSize` rows from each set; returns mean and std.
 */
export function kid(
  x: ArrayLike<number>,
  nx: number,
  y: ArrayLike<number>,
  ny: number,
  d: number,
  rng: Rng,
  subsets = 10,
  subsetSize = 1000,
): { mean: number; std: number } {
  const m = Math.min(subsetSize, nx, ny);
  const k = (a: Float64Array, i: number, b: Float64Array, j: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) s += a[i * d + t] * b[j * d + t];
    return (s / d + 1) ** 3;
  };
  const values: number[] = [];
  for (let s = 0; s < subsets; s++) {
    const a = takeRows(x, d, rng.permutation(nx).subarray(0, m));
    const b = takeRows(y, d, rng.permutation(ny).subarray(0, m));
    let kxx = 0, kyy = 0, kxy = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m; j++) {
        if (i !== j) {
          kxx += k(a, i, a, j);
          kyy += k(b, i, b, j);
        }
        kxy += k(a, i, b, j);
      }
    }
    values.push((kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m));
  }
  const mean = values.reduce((p, v) => p + v, 0) / values.length;
  const std = Math.sqrt(
    values.reduce((p, v) => p + (v - mean) ** 2, 0) / Math.max(1, values.length - 1),
  );
  return { mean, std };
}

function sqDistances(
  a: Float64Array,
  na: number,
  b: Float64Array,
  nb: number,
  d: number,
): Float64Array {
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) {
        const diff = a[i * d + t] - b[j * d + t];
        s += diff * diff;
      }
      out[i * nb + j] = s;
    }
  }
  return out;
}

/** Squared distance of each row to its k-th nearest other row of the same set. */
function kthRadii(x: Float64Array, n: number, d: number, k: number): Float64Array {
  const dist = sqDistances(x, n, x, n, d);
  const radii = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const row = Array.from(dist.subarray(i * n, (i + 1) * n)).sort((p, q) => p - q);
    radii[i] = row[k]; // row[0] is the point itself
  }
  return radii;
}

/**
 * k-NN precision (share of generated rows inside the real manifold) and
 * recall (share of real rows inside the generated manifold), k = 3.
 */
export function precisionRecall(
  real: Float64Array,
  nr: number,
  gen: Float64Array,
  ng: number,
  d: number,
  k = 3,
): { precision: number; recall: number } {
  const rr = kthRadii(real, nr, d, k);
  const rg = kthRadii(gen, ng, d, k);
  const cross = sqDistances(gen, ng, real, nr, d); // [ng, nr]
  let inReal = 0;
  for (let i = 0; i < ng; i++) {
    for (let j = 0; j < nr; j++) {
      if (cross[i * nr + j] <= rr[j]) {
        inReal++;
        break;
      }
    }
  }
  let inGen = 0;
  for (let j = 0; j < nr; j++) {
    for (let i = 0; i < ng; i++) {
      if (cross[i * nr + j] <= rg[i]) {
        inGen++;
        break;
      }
    }
  }
  return { precision: inReal / ng, recall: inGen / nr };
}

/** Inception-Score analogue: exp(E_x KL(p(y|x) ‖ p(y))) over class probabilities [n·10]. */
export function classifierScore(probs: ArrayLike<number>, n: number, classes = 10): number {
  const marginal = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) marginal[c] += probs[i * classes + c] / n;
  }
  let kl = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < classes; c++) {
      const p = probs[i * classes + c];
      if (p > 0) kl += p * (Math.log(p) - Math.log(marginal[c]));
    }
  }
  return Math.exp(kl / n);
}
