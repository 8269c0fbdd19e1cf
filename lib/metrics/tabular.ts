/**
 * Quality of synthetic table rows against real ones (the tables share their
 * columns and categories): per-column distances, the difference of the
 * association matrices, machine-learning efficacy and the distance to the
 * closest real record.
 *
 * - Numeric columns: Wasserstein-1 between the two columns divided by the
 *   real column's standard deviation (so columns in grams and in millimetres
 *   are comparable; 1 = the distributions are a standard deviation apart).
 * - Categorical and boolean columns: total variation ½ Σ_k |p_k − q_k|.
 * - Associations: Pearson's r between numeric columns, Cramér's V between
 *   categorical ones, the correlation ratio η between a numeric and a
 *   categorical one; the difference is the mean |A_real − A_synth| over the
 *   pairs of distinct columns.
 * - Efficacy: softmax regression (categorical target, accuracy) or ridge
 *   regression (numeric target, R²) on the other columns, numeric ones
 *   standardised and categorical ones one-hot.
 * - Distance to the closest record: Euclidean, numeric columns in units of the
 *   reference table's standard deviation, a differing category counting 1.
 */
import { CholeskyDecomposition, Matrix } from "ml-matrix";
import { type ColumnSpec, MISSING, type Table, withRanges } from "../data/tabular.ts";
import { wasserstein1d } from "./points.ts";

/** Mean and standard deviation (n − 1 denominator; 0 for fewer than 2 values). */
function meanStd(v: ArrayLike<number>): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  const mean = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i] - mean) ** 2;
  return { mean, std: v.length > 1 ? Math.sqrt(q / (v.length - 1)) : 0 };
}

/** A scale that is never 0: the standard deviation, or 1 for a constant column. */
function scaleOf(v: ArrayLike<number>): { mean: number; scale: number } {
  const { mean, std } = meanStd(v);
  return { mean, scale: std > 0 ? std : 1 };
}

function average(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** The median of values (the mean of the middle two for an even count). */
export function median(values: ArrayLike<number>): number {
  const s = Float64Array.from(values).sort();
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Fails unless `b` has the columns (names, kinds and categories) of `a`. */
function sameColumns(a: Table, b: Table, what: string): void {
  const key = (c: ColumnSpec) => `${c.name}:${c.categories ? c.categories.join("|") : "#"}`;
  const ka = a.columns.map(key).join(",");
  const kb = b.columns.map(key).join(",");
  if (ka !== kb) throw new Error(`${what}: ${a.name} and ${b.name} have different columns`);
}

/**
 * Decoded sample rows (a header and rows of numbers and labels, as TabDDPM's
 * `sample` gives them) as a table with `like`'s columns and categories. A
 * blank cell is the category {@link MISSING}. Errors name the row and column
 * (`name`, default "samples", names the table in them).
 */
export function samplesToTable(
  header: string[],
  rows: (string | number)[][],
  like: Table,
  name = "samples",
): Table {
  const numeric = new Map<string, Float64Array>();
  const categorical = new Map<string, Int32Array>();
  for (const c of like.columns) {
    const j = header.indexOf(c.name);
    if (j < 0) throw new Error(`${name}: no column "${c.name}" (header: ${header.join(", ")})`);
    if (!c.categories) {
      numeric.set(
        c.name,
        Float64Array.from(rows, (r, i) => {
          const x = Number(r[j]);
          if (r[j] === "" || !Number.isFinite(x)) {
            throw new Error(`${name}: row ${i + 1} column "${c.name}": ${r[j]} is not a number`);
          }
          return x;
        }),
      );
      continue;
    }
    const code = new Map(c.categories.map((l, k) => [l, k]));
    categorical.set(
      c.name,
      Int32Array.from(rows, (r, i) => {
        const label = r[j] === "" ? MISSING : String(r[j]);
        const k = code.get(label);
        if (k === undefined) {
          throw new Error(
            `${name}: row ${i + 1} column "${c.name}": "${label}" is not one of its categories`,
          );
        }
        return k;
      }),
    );
  }
  const columns = withRanges(like.columns, numeric);
  return {
    name,
    columns,
    rows: rows.length,
    numeric: Object.fromEntries(numeric),
    categorical: Object.fromEntries(categorical),
    blanks: { columns: [], droppedRows: 0, droppedColumns: [] },
  };
}

/** Category frequencies of a code column with k categories. */
function frequencies(codes: Int32Array, k: number): Float64Array {
  const p = new Float64Array(k);
  for (const c of codes) p[c] += 1 / codes.length;
  return p;
}

/** Per-column distances of synthetic from real rows, by column name. */
export interface ColumnDistances {
  /** Numeric columns: W1(real, synth) / std(real). */
  wasserstein: Record<string, number>;
  /** Categorical and boolean columns: total variation ½ Σ_k |p_k − q_k|. */
  tv: Record<string, number>;
}

/**
 * Wasserstein-1 of every numeric column in units of the real column's
 * standard deviation (unscaled when the real column is constant), and the
 * total variation distance of every categorical column.
 */
export function columnDistances(real: Table, synth: Table): ColumnDistances {
  sameColumns(real, synth, "columnDistances");
  const wasserstein = new Map<string, number>();
  const tv = new Map<string, number>();
  for (const c of real.columns) {
    if (c.categories) {
      const p = frequencies(real.categorical[c.name], c.categories.length);
      const q = frequencies(synth.categorical[c.name], c.categories.length);
      tv.set(c.name, 0.5 * p.reduce((s, v, k) => s + Math.abs(v - q[k]), 0));
    } else {
      const r = real.numeric[c.name];
      const w = wasserstein1d(r, synth.numeric[c.name]);
      wasserstein.set(c.name, w / scaleOf(r).scale);
    }
  }
  return { wasserstein: Object.fromEntries(wasserstein), tv: Object.fromEntries(tv) };
}

/** Pearson's r (0 when either column is constant). */
function pearson(a: Float64Array, b: Float64Array): number {
  const ma = meanStd(a).mean;
  const mb = meanStd(b).mean;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/** Cramér's V from the contingency table (0 when either column has one category present). */
function cramersV(a: Int32Array, ka: number, b: Int32Array, kb: number): number {
  const n = a.length;
  const table = new Float64Array(ka * kb);
  const ra = new Float64Array(ka);
  const rb = new Float64Array(kb);
  for (let i = 0; i < n; i++) {
    table[a[i] * kb + b[i]]++;
    ra[a[i]]++;
    rb[b[i]]++;
  }
  let chi2 = 0;
  for (let i = 0; i < ka; i++) {
    for (let j = 0; j < kb; j++) {
      const e = (ra[i] * rb[j]) / n;
      if (e > 0) chi2 += (table[i * kb + j] - e) ** 2 / e;
    }
  }
  const present = Math.min(ra.filter((v) => v > 0).length, rb.filter((v) => v > 0).length);
  return present > 1 ? Math.sqrt(chi2 / n / (present - 1)) : 0;
}

/** Correlation ratio η of a numeric column on a categorical one (0 when y is constant). */
function correlationRatio(y: Float64Array, codes: Int32Array, k: number): number {
  const mean = meanStd(y).mean;
  const sum = new Float64Array(k);
  const count = new Float64Array(k);
  let total = 0;
  for (let i = 0; i < y.length; i++) {
    sum[codes[i]] += y[i];
    count[codes[i]]++;
    total += (y[i] - mean) ** 2;
  }
  let between = 0;
  for (let c = 0; c < k; c++) {
    if (count[c] > 0) between += count[c] * (sum[c] / count[c] - mean) ** 2;
  }
  return total > 0 ? Math.sqrt(between / total) : 0;
}

/**
 * The association matrix of a table [d, d] (d columns, row-major, 1 on the
 * diagonal): Pearson's r between numeric columns, Cramér's V between
 * categorical ones, the correlation ratio η between a numeric and a
 * categorical column.
 */
export function associations(t: Table): Float64Array {
  const cols = t.columns;
  const d = cols.length;
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    out[i * d + i] = 1;
    for (let j = i + 1; j < d; j++) {
      const [a, b] = [cols[i], cols[j]];
      let v: number;
      if (!a.categories && !b.categories) v = pearson(t.numeric[a.name], t.numeric[b.name]);
      else if (a.categories && b.categories) {
        v = cramersV(
          t.categorical[a.name],
          a.categories.length,
          t.categorical[b.name],
          b.categories.length,
        );
      } else {
        const [num, cat] = a.categories ? [b, a] : [a, b];
        v = correlationRatio(t.numeric[num.name], t.categorical[cat.name], cat.categories!.length);
      }
      out[i * d + j] = v;
      out[j * d + i] = v;
    }
  }
  return out;
}

/**
 * Mean absolute difference of the two tables' {@link associations} over the
 * d(d − 1)/2 pairs of distinct columns (0 for identical tables; at most 2).
 */
export function correlationDifference(real: Table, synth: Table): number {
  sameColumns(real, synth, "correlationDifference");
  const d = real.columns.length;
  if (d < 2) throw new Error(`correlationDifference: ${real.name} has fewer than 2 columns`);
  const a = associations(real);
  const b = associations(synth);
  let total = 0;
  for (let i = 0; i < d; i++) {
    for (let j = i + 1; j < d; j++) total += Math.abs(a[i * d + j] - b[i * d + j]);
  }
  return total / ((d * (d - 1)) / 2);
}

/** Options of {@link mlEfficacy}. */
export interface EfficacyOptions {
  /** The table whose means and standard deviations standardise the features. @default the training table */
  reference?: Table;
  /** Full-batch gradient steps of the softmax regression. @default 500 */
  iterations?: number;
  /** Learning rate of the softmax regression. @default 0.5 */
  lr?: number;
  /** L2 penalty (on every weight but the intercepts), per row. @default 0.001 */
  l2?: number;
}

/** What {@link mlEfficacy} measured. */
export interface EfficacyScore {
  /** Classification for a categorical or boolean target, regression for a numeric one. */
  task: "classification" | "regression";
  /** What `score` is: accuracy (classification) or R² (regression). */
  measure: "accuracy" | "r2";
  /** Accuracy, or R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² over the test rows. */
  score: number;
  /** Classification: the F1 score averaged over the classes seen in the test labels or predictions. */
  macroF1?: number;
}

/** Rows of `t` as features [n, d]: 1, numeric columns standardised by `stats`, one-hot labels. */
function design(
  t: Table,
  target: string,
  stats: Map<string, { mean: number; scale: number }>,
): { x: Float64Array; d: number } {
  const cols = t.columns.filter((c) => c.name !== target);
  const d = 1 + cols.reduce((s, c) => s + (c.categories ? c.categories.length : 1), 0);
  const x = new Float64Array(t.rows * d);
  for (let i = 0; i < t.rows; i++) {
    let j = i * d;
    x[j++] = 1;
    for (const c of cols) {
      if (c.categories) {
        x[j + t.categorical[c.name][i]] = 1;
        j += c.categories.length;
      } else {
        const s = stats.get(c.name)!;
        x[j++] = (t.numeric[c.name][i] - s.mean) / s.scale;
      }
    }
  }
  return { x, d };
}

/** Softmax regression by full-batch gradient descent from zero weights: W [k, d]. */
function softmaxRegression(
  x: Float64Array,
  y: Int32Array,
  d: number,
  k: number,
  o: Required<Omit<EfficacyOptions, "reference">>,
): Float64Array {
  const n = y.length;
  const w = new Float64Array(k * d);
  const grad = new Float64Array(k * d);
  const p = new Float64Array(k);
  for (let it = 0; it < o.iterations; it++) {
    grad.fill(0);
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < k; c++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += w[c * d + j] * x[i * d + j];
        p[c] = s;
        max = Math.max(max, s);
      }
      let z = 0;
      for (let c = 0; c < k; c++) z += p[c] = Math.exp(p[c] - max);
      for (let c = 0; c < k; c++) {
        const g = (p[c] / z - (c === y[i] ? 1 : 0)) / n;
        for (let j = 0; j < d; j++) grad[c * d + j] += g * x[i * d + j];
      }
    }
    for (let c = 0; c < k; c++) {
      for (let j = 0; j < d; j++) {
        const penalty = j === 0 ? 0 : o.l2 * w[c * d + j];
        w[c * d + j] -= o.lr * (grad[c * d + j] + penalty);
      }
    }
  }
  return w;
}

/** Ridge regression: w = (XᵀX + λ·n·I′)⁻¹ Xᵀy, I′ without the intercept. */
function ridgeRegression(x: Float64Array, y: Float64Array, d: number, l2: number): Float64Array {
  const n = y.length;
  const a = Matrix.zeros(d, d);
  const b = Matrix.zeros(d, 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const xj = x[i * d + j];
      if (xj === 0) continue;
      b.set(j, 0, b.get(j, 0) + xj * y[i]);
      for (let l = 0; l < d; l++) a.set(j, l, a.get(j, l) + xj * x[i * d + l]);
    }
  }
  for (let j = 1; j < d; j++) a.set(j, j, a.get(j, j) + l2 * Math.max(n, 1));
  if (a.get(0, 0) === 0) a.set(0, 0, 1);
  return Float64Array.from(new CholeskyDecomposition(a).solve(b).getColumn(0));
}

/**
 * Machine-learning efficacy: a model of `target` fitted on `train` and
 * scored on `test` — softmax regression and accuracy (with macro-F1) for a
 * categorical or boolean target, ridge regression and R² for a numeric one.
 * The other columns are the features: numeric ones standardised by the
 * `reference` table, categorical ones one-hot. Deterministic: the same
 * tables give the same score.
 *
 * @example Synthetic rows against real ones, both scored on held-out real rows
 * ```ts
 * const real = mlEfficacy(trainRows, heldOut, "Species");
 * const synth = mlEfficacy(synthRows, heldOut, "Species", { reference: trainRows });
 * ```
 */
export function mlEfficacy(
  train: Table,
  test: Table,
  target: string,
  options: EfficacyOptions = {},
): EfficacyScore {
  sameColumns(train, test, "mlEfficacy");
  const ref = options.reference ?? train;
  sameColumns(ref, train, "mlEfficacy");
  const spec = train.columns.find((c) => c.name === target);
  if (!spec) {
    throw new Error(
      `mlEfficacy: target "${target}" is not a column of ${train.name} (${
        train.columns.map((c) => c.name).join(", ")
      })`,
    );
  }
  if (train.rows === 0 || test.rows === 0) {
    throw new Error(`mlEfficacy: no rows to ${train.rows === 0 ? "train on" : "score on"}`);
  }
  const o = {
    iterations: options.iterations ?? 500,
    lr: options.lr ?? 0.5,
    l2: options.l2 ?? 1e-3,
  };
  const stats = new Map(
    ref.columns.filter((c) => !c.categories).map((c) => [c.name, scaleOf(ref.numeric[c.name])]),
  );
  const tr = design(train, target, stats);
  const te = design(test, target, stats);
  const d = tr.d;
  if (spec.categories) {
    const k = spec.categories.length;
    const w = softmaxRegression(tr.x, train.categorical[target], d, k, o);
    const truth = test.categorical[target];
    const pred = new Int32Array(test.rows);
    for (let i = 0; i < test.rows; i++) {
      let best = 0;
      let bestScore = -Infinity;
      for (let c = 0; c < k; c++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += w[c * d + j] * te.x[i * d + j];
        if (s > bestScore) [best, bestScore] = [c, s];
      }
      pred[i] = best;
    }
    return { task: "classification", measure: "accuracy", ...classificationScores(truth, pred) };
  }
  const y = train.numeric[target];
  const { mean, scale } = scaleOf(y);
  const w = ridgeRegression(tr.x, Float64Array.from(y, (v) => (v - mean) / scale), d, o.l2);
  const truth = test.numeric[target];
  const testMean = meanStd(truth).mean;
  let res = 0;
  let tot = 0;
  for (let i = 0; i < test.rows; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += w[j] * te.x[i * d + j];
    res += (truth[i] - (mean + scale * s)) ** 2;
    tot += (truth[i] - testMean) ** 2;
  }
  return { task: "regression", measure: "r2", score: tot > 0 ? 1 - res / tot : 0 };
}

/** Accuracy and macro-F1 (over the classes that occur in the labels or the predictions). */
export function classificationScores(
  truth: Int32Array,
  pred: Int32Array,
): { score: number; macroF1: number } {
  const classes = [...new Set([...truth, ...pred])];
  let right = 0;
  for (let i = 0; i < truth.length; i++) if (truth[i] === pred[i]) right++;
  const f1 = classes.map((c) => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < truth.length; i++) {
      if (pred[i] === c && truth[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (truth[i] === c) fn++;
    }
    return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  });
  return { score: right / truth.length, macroF1: average(f1) };
}

/**
 * For every row of `query`, the distance to its closest row of `real`:
 * Euclidean over the columns, a numeric difference in units of `scale`'s
 * standard deviation of that column (unscaled for a constant one), a
 * categorical column adding 1 when the labels differ. `scale` defaults to
 * `real`.
 */
export function closestDistances(query: Table, real: Table, scale: Table = real): Float64Array {
  sameColumns(real, query, "closestDistances");
  sameColumns(real, scale, "closestDistances");
  const num = real.columns.filter((c) => !c.categories).map((c) => c.name);
  const cat = real.columns.filter((c) => c.categories).map((c) => c.name);
  const s = num.map((c) => scaleOf(scale.numeric[c]).scale);
  const flat = (t: Table) => {
    const x = new Float64Array(t.rows * num.length);
    const k = new Int32Array(t.rows * cat.length);
    for (let i = 0; i < t.rows; i++) {
      num.forEach((c, j) => (x[i * num.length + j] = t.numeric[c][i] / s[j]));
      cat.forEach((c, j) => (k[i * cat.length + j] = t.categorical[c][i]));
    }
    return { x, k };
  };
  const q = flat(query);
  const r = flat(real);
  const [dn, dc] = [num.length, cat.length];
  const out = new Float64Array(query.rows);
  for (let i = 0; i < query.rows; i++) {
    let best = Infinity;
    for (let m = 0; m < real.rows && best > 0; m++) {
      let sq = 0;
      for (let j = 0; j < dc && sq < best; j++) if (q.k[i * dc + j] !== r.k[m * dc + j]) sq++;
      for (let j = 0; j < dn && sq < best; j++) sq += (q.x[i * dn + j] - r.x[m * dn + j]) ** 2;
      if (sq < best) best = sq;
    }
    out[i] = Math.sqrt(best);
  }
  return out;
}

/**
 * Distance to closest record: the median over the rows of `synth` of
 * {@link closestDistances} to `real` (numeric columns in units of `real`'s
 * standard deviations). 0 when every synthetic row copies a real one.
 */
export function dcr(synth: Table, real: Table): number {
  return median(closestDistances(synth, real));
}

/** The mean of the values of a per-column record (NaN when it is empty). */
export function meanOf(perColumn: Record<string, number>): number {
  const v = Object.values(perColumn);
  return v.length ? average(v) : NaN;
}
