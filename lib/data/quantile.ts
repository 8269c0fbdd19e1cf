/**
 * The quantile transform of TabDDPM's numeric preprocessing: a column to
 * N(0, 1) through its empirical CDF, and back.
 */
import { normalCdf, normalPpf } from "../runtime/normal.ts";

/** Options of {@link QuantileTransformer.fit}. */
export interface QuantileOptions {
  /** Number of quantiles (clamped to the number of values). @default min(1000, n) */
  nQuantiles?: number;
}

/**
 * sklearn's BOUNDS_THRESHOLD: CDF values this close to 0 or 1 map to the ends;
 * outputs are clipped just beyond Φ⁻¹(1 − BOUNDS), so the ends map back exactly.
 */
const BOUNDS = 1e-7;

/**
 * Maps a numeric column to a standard normal through its empirical CDF, as
 * scikit-learn's `QuantileTransformer(output_distribution="normal")`:
 * `nQuantiles` quantiles at evenly spaced levels (linear interpolation
 * between order statistics), values interpolated to a level (ties get the
 * middle of their levels), then the normal quantile function, clipped to
 * ±Φ⁻¹(1 − 1e−7) ≈ ±5.2. {@link QuantileTransformer.inverse} maps back.
 */
export class QuantileTransformer {
  /** The fitted quantiles, non-decreasing. */
  readonly quantiles: Float64Array;
  /** Their levels: 0, 1/(q−1), …, 1. */
  readonly references: Float64Array;

  private constructor(quantiles: Float64Array) {
    this.quantiles = quantiles;
    const q = quantiles.length;
    this.references = Float64Array.from({ length: q }, (_, i) => (q === 1 ? 0 : i / (q - 1)));
  }

  /** Fits to finite values (at least one). */
  static fit(values: ArrayLike<number>, options: QuantileOptions = {}): QuantileTransformer {
    const n = values.length;
    if (n === 0) throw new Error("QuantileTransformer.fit: no values");
    const sorted = Float64Array.from(values).sort();
    if (!Number.isFinite(sorted[0]) || !Number.isFinite(sorted[n - 1])) {
      throw new Error("QuantileTransformer.fit: values must be finite (no NaN or ±Infinity)");
    }
    const q = Math.max(1, Math.min(options.nQuantiles ?? 1000, n));
    const quantiles = new Float64Array(q);
    for (let i = 0; i < q; i++) {
      const pos = q === 1 ? 0 : (i / (q - 1)) * (n - 1);
      const lo = Math.floor(pos);
      const hi = Math.min(lo + 1, n - 1);
      quantiles[i] = sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }
    return new QuantileTransformer(quantiles);
  }

  /** Restores a transformer from its {@link QuantileTransformer.quantiles}. */
  static fromQuantiles(quantiles: ArrayLike<number>): QuantileTransformer {
    const q = Float64Array.from(quantiles);
    if (q.length === 0) throw new Error("QuantileTransformer.fromQuantiles: no quantiles");
    for (let i = 1; i < q.length; i++) {
      if (!(q[i] >= q[i - 1])) {
        throw new Error(`QuantileTransformer.fromQuantiles: quantile ${i} decreases`);
      }
    }
    return new QuantileTransformer(q);
  }

  /** Values → approximately N(0, 1). */
  transform(x: ArrayLike<number>): Float64Array {
    const qs = this.quantiles;
    const refs = this.references;
    const last = qs.length - 1;
    const negQ = Float64Array.from(qs, (_, i) => -qs[last - i]);
    const negR = Float64Array.from(refs, (_, i) => -refs[last - i]);
    const clip = normalPpf(1 - (BOUNDS - Number.EPSILON));
    const out = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      let p: number;
      if (v - BOUNDS < qs[0]) p = 0;
      else if (v + BOUNDS > qs[last]) p = 1;
      else p = 0.5 * (interp(v, qs, refs) - interp(-v, negQ, negR));
      out[i] = Math.max(-clip, Math.min(clip, normalPpf(p)));
    }
    return out;
  }

  /** N(0, 1) values → the original scale (within the fitted range). */
  inverse(z: ArrayLike<number>): Float64Array {
    const qs = this.quantiles;
    const last = qs.length - 1;
    const out = new Float64Array(z.length);
    for (let i = 0; i < z.length; i++) {
      const p = normalCdf(z[i]);
      if (p - BOUNDS < 0) out[i] = qs[0];
      else if (p + BOUNDS > 1) out[i] = qs[last];
      else out[i] = interp(p, this.references, qs);
    }
    return out;
  }
}

/** numpy.interp: piecewise-linear through (xp, fp), xp non-decreasing, constant outside. */
function interp(x: number, xp: Float64Array, fp: Float64Array): number {
  const last = xp.length - 1;
  if (!(x >= xp[0])) return fp[0];
  if (x >= xp[last]) return fp[last];
  let lo = 0;
  let hi = last;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (xp[mid] <= x) lo = mid;
    else hi = mid;
  }
  return fp[lo] + ((fp[hi] - fp[lo]) * (x - xp[lo])) / (xp[hi] - xp[lo]);
}
