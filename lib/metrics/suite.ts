/**
 * Metrics by name, computed on a model's samples, each with a bootstrap
 * spread (the standard deviation of the metric over resamples of the
 * generated rows). This is what `deno task eval` and the sweeps call.
 */
import { isToy, sampleToy } from "../data/toy2d.ts";
import type { MetricResult, RunConfig, SampleOutput } from "../models/model.ts";
import { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";
import { FEATURE_DIM, loadClassifier } from "./classifier.ts";
import { featureStats, frechetDistance } from "./frechet.ts";
import { classifierScore, kid, mnistReference, precisionRecall, takeRows } from "./images.ts";
import { mmd, slicedWasserstein } from "./points.ts";

/** Metric names by the kind of samples they apply to. */
export const METRICS = {
  image: ["fid", "kid", "pr", "class-accuracy", "is"],
  points: ["mmd", "swd"],
} as const;

/** What a metric needs besides the samples. */
export interface MetricContext {
  /** The run's dataset name. */
  data: string;
  /** Seed for reference draws, projections and resampling. */
  seed: number;
  /** Extra settings (`--set` on eval). */
  extra?: RunConfig;
}

/** The metrics `eval` computes when none is named. */
export function defaultMetrics(data: string): string[] {
  return data === "mnist" ? ["fid"] : isToy(data) ? ["mmd", "swd"] : [];
}

/** The sample count `eval` draws when none is named. */
export function defaultSampleCount(data: string): number {
  return data === "mnist" ? 500 : 1000;
}

/** Standard deviation of `fn` over `reps` bootstrap resamples of n rows. */
export function bootstrapStd(
  n: number,
  reps: number,
  rng: Rng,
  fn: (idx: Int32Array) => number,
): number {
  const values: number[] = [];
  for (let r = 0; r < reps; r++) values.push(fn(Int32Array.from({ length: n }, () => rng.int(n))));
  const mean = values.reduce((a, b) => a + b, 0) / reps;
  return Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / Math.max(1, reps - 1));
}

/** Computes one metric on samples. */
export async function computeMetric(
  name: string,
  s: SampleOutput,
  ctx: MetricContext,
): Promise<MetricResult> {
  const rng = new Rng(ctx.seed ^ 0x3e7a1c);
  if (s.kind === "points") {
    if (!(METRICS.points as readonly string[]).includes(name)) {
      throw unknown(name, METRICS.points, "2-D samples");
    }
    if (!isToy(ctx.data)) {
      throw new Error(`${name}: no reference distribution for dataset "${ctx.data}"`);
    }
    const ref = sampleToy(ctx.data, s.n, new Rng(ctx.seed ^ 0x4ef));
    const d = s.dim;
    const f = name === "mmd"
      ? (x: ArrayLike<number>) => mmd(x, ref, d)
      : (x: ArrayLike<number>) => slicedWasserstein(x, ref, d, new Rng(ctx.seed ^ 0x51d));
    const value = f(s.points);
    const spread = bootstrapStd(s.n, 10, rng, (idx) => f(takeRows(s.points, d, idx)));
    return { metric: name, value, n: s.n, spread };
  }
  if (s.kind === "image") {
    if (!(METRICS.image as readonly string[]).includes(name)) {
      throw unknown(name, METRICS.image, "image samples");
    }
    const clf = await loadClassifier();
    const n = s.n;
    if (name === "class-accuracy") {
      if (!s.labels) {
        throw new Error(
          "class-accuracy needs a class-conditional model (its samples carry labels)",
        );
      }
      const pred = clf.predict(s.images, n);
      const hits = Float64Array.from(pred, (p, i) => (p === s.labels![i] ? 1 : 0));
      const acc = (idx: ArrayLike<number>) =>
        Array.from(idx).reduce((a, i) => a + hits[i], 0) / idx.length;
      const perClass: Record<string, number> = {};
      for (let c = 0; c < 10; c++) {
        const idx = Array.from(s.labels.keys()).filter((i) => s.labels![i] === c);
        if (idx.length) perClass[c] = acc(idx);
      }
      const all = Array.from({ length: n }, (_, i) => i);
      return { metric: name, value: acc(all), n, spread: bootstrapStd(n, 20, rng, acc), perClass };
    }
    if (name === "is") {
      const probs = clf.probabilities(s.images, n);
      const f = (idx: ArrayLike<number>) => classifierScore(takeRows(probs, 10, idx), idx.length);
      return {
        metric: name,
        value: classifierScore(probs, n),
        n,
        spread: bootstrapStd(n, 10, rng, f),
      };
    }
    const feats = clf.features(s.images, n);
    const ref = mnistReference(clf);
    const d = FEATURE_DIM;
    if (name === "fid") {
      const { mu, sigma } = ref.stats;
      const f = (x: ArrayLike<number>, m: number) => {
        const st = featureStats(x, m, d);
        return frechetDistance(st.mu, st.sigma, mu, sigma);
      };
      const value = f(feats, n);
      return {
        metric: name,
        value,
        n,
        spread: bootstrapStd(n, 10, rng, (idx) => f(takeRows(feats, d, idx), n)),
      };
    }
    if (name === "kid") {
      const r = kid(feats, n, ref.features, ref.n, d, rng);
      return { metric: name, value: r.mean, n, spread: r.std };
    }
    const m = Math.min(n, 1000);
    const real = takeRows(ref.features, d, rng.permutation(ref.n).subarray(0, m));
    const gen = takeRows(feats, d, rng.permutation(n).subarray(0, m));
    const pr = precisionRecall(real, m, gen, m, d);
    return { metric: "precision", value: pr.precision, n: m, spread: NaN, recall: pr.recall };
  }
  throw new Error(`${name}: tabular samples are evaluated by the tabddpm model's own metrics`);
}

function unknown(name: string, valid: readonly string[], what: string): Error {
  return new Error(
    `unknown metric "${name}" for ${what}${didYouMean(name, valid)}; valid: ${valid.join(", ")}`,
  );
}
