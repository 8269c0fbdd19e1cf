/**
 * Noise schedules as small pure functions, computed in float64. Index 0 is
 * the first diffusion step (the paper's t = 1).
 */

/** The schedule kinds {@link makeSchedule} knows. */
export type ScheduleKind = "linear" | "cosine" | "sigmoid";

/** Options of {@link makeSchedule}. */
export interface ScheduleOptions {
  /** Schedule family. */
  kind: ScheduleKind;
  /** Number of diffusion steps, 10 to 4000. */
  T: number;
  /** First β of the linear schedule. @default 1e-4 · 1000/T */
  betaStart?: number;
  /** Last β of the linear schedule. @default 0.02 · 1000/T */
  betaEnd?: number;
  /** Rescale to zero terminal SNR (Lin et al. 2023, Algorithm 1): ᾱ_T = 0 exactly. @default false */
  zeroSnr?: boolean;
}

/** A discrete schedule and the quantities derived from it (all length T, float64). */
export interface Schedule {
  kind: ScheduleKind;
  T: number;
  betas: Float64Array;
  alphas: Float64Array;
  alphasCumprod: Float64Array;
  alphasCumprodPrev: Float64Array;
  /** β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t). */
  posteriorVariance: Float64Array;
}

/** β linearly from betaStart to betaEnd inclusive (Ho et al.), scaled by 1000/T by default. */
export function linearBetas(T: number, betaStart?: number, betaEnd?: number): Float64Array {
  const scale = 1000 / T;
  const a = betaStart ?? 1e-4 * scale;
  const b = betaEnd ?? 0.02 * scale;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = T === 1 ? a : a + (b - a) * i / (T - 1);
  return out;
}

/** Cosine schedule (Nichol & Dhariwal): ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β ≤ 0.999. */
export function cosineBetas(T: number, s = 0.008): Float64Array {
  const f = (t: number) => Math.cos((t / T + s) / (1 + s) * Math.PI / 2) ** 2;
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(1 - f(i + 1) / f(i), 0.999);
  return out;
}

/**
 * Sigmoid schedule (lucidrains, after Jabri et al.): ᾱ(t) from a shifted
 * sigmoid over [start, end] = [−3, 3] with temperature τ = 1, β ≤ 0.999.
 */
export function sigmoidBetas(T: number, start = -3, end = 3, tau = 1): Float64Array {
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const vStart = sig(start / tau);
  const vEnd = sig(end / tau);
  const f = (t: number) => (-sig((t / T * (end - start) + start) / tau) + vEnd) / (vEnd - vStart);
  const out = new Float64Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(Math.max(1 - f(i + 1) / f(i), 0), 0.999);
  return out;
}

/**
 * Rescales betas to zero terminal SNR (Lin et al. 2023, "Common Diffusion
 * Noise Schedules and Sample Steps are Flawed", Algorithm 1): √ᾱ is shifted
 * so that its last value is 0 and scaled so that its first is unchanged,
 * then the betas are recovered from the new ᾱ. The last β becomes 1.
 */
export function rescaleZeroSnr(betas: Float64Array): Float64Array {
  const T = betas.length;
  const sqrtAbar = new Float64Array(T);
  let acc = 1;
  for (let i = 0; i < T; i++) {
    acc *= 1 - betas[i];
    sqrtAbar[i] = Math.sqrt(acc);
  }
  const first = sqrtAbar[0];
  const last = sqrtAbar[T - 1];
  const abar = sqrtAbar.map((v) => ((v - last) * first / (first - last)) ** 2);
  return abar.map((a, i) => 1 - (i === 0 ? a : a / abar[i - 1]));
}

/** Builds a schedule and its derived quantities from its betas. */
export function scheduleFromBetas(kind: ScheduleKind, betas: Float64Array): Schedule {
  const T = betas.length;
  const alphas = new Float64Array(T);
  const alphasCumprod = new Float64Array(T);
  const alphasCumprodPrev = new Float64Array(T);
  const posteriorVariance = new Float64Array(T);
  let acc = 1;
  for (let i = 0; i < T; i++) {
    alphas[i] = 1 - betas[i];
    alphasCumprodPrev[i] = acc;
    acc *= alphas[i];
    alphasCumprod[i] = acc;
    posteriorVariance[i] = betas[i] * (1 - alphasCumprodPrev[i]) / (1 - alphasCumprod[i]);
  }
  return { kind, T, betas, alphas, alphasCumprod, alphasCumprodPrev, posteriorVariance };
}

/**
 * Makes a schedule.
 *
 * @example
 * ```ts
 * const s = makeSchedule({ kind: "cosine", T: 1000 });
 * s.alphasCumprod[999]; // ≈ 0 (all signal gone)
 * ```
 */
export function makeSchedule(opts: ScheduleOptions): Schedule {
  const { kind, T } = opts;
  if (!Number.isInteger(T) || T < 10 || T > 4000) {
    throw new Error(`schedule: T must be an integer from 10 to 4000, got ${T}`);
  }
  const betas = kind === "linear"
    ? linearBetas(T, opts.betaStart, opts.betaEnd)
    : kind === "cosine"
    ? cosineBetas(T)
    : kind === "sigmoid"
    ? sigmoidBetas(T)
    : undefined;
  if (!betas) throw new Error(`schedule: unknown kind "${kind}" (linear, cosine or sigmoid)`);
  return scheduleFromBetas(kind, opts.zeroSnr ? rescaleZeroSnr(betas) : betas);
}

/** log-SNR_t = log(ᾱ_t / (1 − ᾱ_t)) for every step. */
export function logSnr(s: Schedule): Float64Array {
  return s.alphasCumprod.map((a) => Math.log(a / (1 - a)));
}
