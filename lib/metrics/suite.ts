/**
 * Metrics by name, computed on a model's samples, each with a bootstrap
 * spread (the standard deviation of the metric over resamples of the
 * generated rows). This is what `deno task eval` and the sweeps call.
 * Table samples are compared with the run's own training rows and scored
 * on its held-out rows (see {@link runTables}).
 */
import { isBuiltinTable, selectRows, type Table } from "../data/tabular.ts";
import { isToy, sampleToy } from "../data/toy2d.ts";
import type { MetricResult, RunConfig, SampleOutput } from "../models/model.ts";
import { runTables } from "../models/tabddpm.ts";
import { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";
import { FEATURE_DIM, loadClassifier } from "./classifier.ts";
import { featureStats, frechetDistance } from "./frechet.ts";
import { classifierScore, kid, mnistReference, precisionRecall, takeRows } from "./images.ts";
import { mmd, slicedWasserstein } from "./points.ts";
import {
  closestDistances,
  columnDistances,
  correlationDifference,
  meanOf,
  median,
  mlEfficacy,
  samplesToTable,
} from "./tabular.ts";

import { METRICS } from "./names.ts";
export { METRICS };

/** What a metric needs besides the samples. */
export interface MetricContext {
  /** The run's dataset name. */
  data: string;
  /** Seed for reference draws, projections and resampling. */
  seed: number;
  /** Extra settings (`--set` on eval; `target` names the efficacy target of a table). */
  extra?: RunConfig;
  /** The run's configuration (tables: how the data was loaded and split). */
  config?: RunConfig;
}

/**
 * The metrics `eval` computes when none is named; a table's efficacy needs a
 * `target` and held-out rows in the run's `config`.
 */
export function defaultMetrics(data: string, config: RunConfig = {}): string[] {
  if (isBuiltinTable(data) || data.endsWith(".csv")) {
    const efficacy = config.target && Number(config.holdout ?? 0) > 0;
    return METRICS.table.filter((m) => efficacy || !m.startsWith("efficacy"));
  }
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
  return tableMetric(name, s, ctx, rng);
}

/** Resamples for the spread of table metrics. */
const TABLE_REPS = 20;

/**
 * A table metric of decoded samples against the run's training rows (and,
 * for efficacy and the DCR reference, its held-out rows). Spread: bootstrap
 * over the samples; for efficacy over the training and the held-out rows
 * together, the model refitted on every resample.
 */
function tableMetric(
  name: string,
  s: Extract<SampleOutput, { kind: "table" }>,
  ctx: MetricContext,
  rng: Rng,
): MetricResult {
  const valid: readonly string[] = METRICS.table;
  if (!valid.includes(name)) throw unknown(name, valid, "table samples");
  if (!ctx.config) throw new Error(`${name}: needs the run's configuration (its table and split)`);
  const { train, holdout } = runTables(ctx.config);
  const synth = samplesToTable(s.header, s.rows, train);
  const n = synth.rows;
  const reference = holdout.rows > 0 ? holdout : undefined;
  const spreadOver = (f: (t: Table) => number) =>
    bootstrapStd(n, TABLE_REPS, rng, (idx) => f(selectRows(synth, idx)));
  if (name === "column-wasserstein" || name === "column-tv") {
    const key = name === "column-wasserstein" ? "wasserstein" : "tv";
    const f = (t: Table) => columnDistances(train, t)[key];
    const perColumn = f(synth);
    if (Object.keys(perColumn).length === 0) {
      throw new Error(
        `${name}: ${train.name} has no ${key === "tv" ? "categorical" : "numeric"} columns`,
      );
    }
    return {
      metric: name,
      value: meanOf(perColumn),
      n,
      spread: spreadOver((t) => meanOf(f(t))),
      perColumn,
      holdout: reference ? meanOf(f(reference)) : null,
    };
  }
  if (name === "corr-diff") {
    const f = (t: Table) => correlationDifference(train, t);
    return {
      metric: name,
      value: f(synth),
      n,
      spread: spreadOver(f),
      holdout: reference ? f(reference) : null,
    };
  }
  if (name === "dcr") {
    const d = closestDistances(synth, train);
    return {
      metric: name,
      value: median(d),
      n,
      spread: bootstrapStd(n, TABLE_REPS, rng, (idx) => median(Array.from(idx, (i) => d[i]))),
      copies: d.filter((v) => v === 0).length / n,
      holdout: reference ? median(closestDistances(reference, train)) : null,
    };
  }
  const target = String(ctx.extra?.target ?? ctx.config.target ?? "");
  if (!target) {
    throw new Error(`${name}: the run has no target column; name one with --set target=COLUMN`);
  }
  if (!reference) {
    throw new Error(
      `${name}: the run held no rows out of training (holdout 0); train with --set holdout=0.2`,
    );
  }
  const on = name === "efficacy-real" ? train : synth;
  const fit = (t: Table, test: Table) => mlEfficacy(t, test, target, { reference: train });
  const r = fit(on, reference);
  const spread = bootstrapStd(on.rows, TABLE_REPS, rng, (idx) => {
    const test = Int32Array.from({ length: reference.rows }, () => rng.int(reference.rows));
    return fit(selectRows(on, idx), selectRows(reference, test)).score;
  });
  return {
    metric: name,
    value: r.score,
    n: reference.rows,
    spread,
    target,
    measure: r.measure,
    trainRows: on.rows,
    ...(r.macroF1 === undefined ? {} : { macroF1: r.macroF1 }),
    ...(on === synth ? { real: fit(train, reference).score } : {}),
  };
}

function unknown(name: string, valid: readonly string[], what: string): Error {
  return new Error(
    `unknown metric "${name}" for ${what}${didYouMean(name, valid)}; valid: ${valid.join(", ")}`,
  );
}
