/**
 * The Gaussian diffusion process: forward sampling q(x_t | x_0), the
 * posterior q(x_{t−1} | x_t, x_0), the prediction targets ε, x0 and v with
 * the conversions between them (one switch, one place), and the training
 * loss with optional min-SNR-γ weighting. It knows no particular network:
 * it takes any `(x_t, t, cond) → tensor` function.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Schedule } from "./schedules.ts";

/** What the network predicts. */
export type Objective = "eps" | "x0" | "v";

/** Loss weighting over timesteps. */
export type Weighting = "none" | "minsnr";

/** A denoiser as the process sees it: (x_t, t as float step indices, cond) → output. */
export type Denoiser = (x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D) => tf.Tensor;

/** Per-sample values of a float64 schedule array, shaped [B, 1, …] to broadcast over x of rank `rank`. */
export function extract(arr: ArrayLike<number>, t: ArrayLike<number>, rank: number): tf.Tensor {
  const v = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) v[i] = arr[t[i]];
  return tf.tensor(v, [t.length, ...new Array(rank - 1).fill(1)]);
}

/** x_t = √ᾱ·x0 + √(1−ᾱ)·ε, where `a` is ᾱ (a tensor broadcastable to x0, or a number). */
export function qSampleWith(x0: tf.Tensor, noise: tf.Tensor, a: tf.Tensor | number): tf.Tensor {
  return tf.add(tf.mul(x0, tf.sqrt(a)), tf.mul(noise, tf.sqrt(tf.sub(1, a))));
}

/** The training target of an objective: ε, x0, or v = √ᾱ·ε − √(1−ᾱ)·x0. */
export function targetFor(
  objective: Objective,
  x0: tf.Tensor,
  noise: tf.Tensor,
  a: tf.Tensor | number,
): tf.Tensor {
  switch (objective) {
    case "eps":
      return noise;
    case "x0":
      return x0;
    case "v":
      return tf.sub(tf.mul(noise, tf.sqrt(a)), tf.mul(x0, tf.sqrt(tf.sub(1, a))));
  }
}

/** The x0 estimate from a network output, at ᾱ = a. */
export function predictX0(
  objective: Objective,
  out: tf.Tensor,
  xt: tf.Tensor,
  a: tf.Tensor | number,
): tf.Tensor {
  switch (objective) {
    case "eps":
      return tf.div(tf.sub(xt, tf.mul(out, tf.sqrt(tf.sub(1, a)))), tf.sqrt(a));
    case "x0":
      return out;
    case "v":
      return tf.sub(tf.mul(xt, tf.sqrt(a)), tf.mul(out, tf.sqrt(tf.sub(1, a))));
  }
}

/** ε from an x0 estimate at ᾱ = a: (x_t − √ᾱ·x0) / √(1−ᾱ). */
export function epsFromX0(x0: tf.Tensor, xt: tf.Tensor, a: tf.Tensor | number): tf.Tensor {
  return tf.div(tf.sub(xt, tf.mul(x0, tf.sqrt(a))), tf.sqrt(tf.sub(1, a)));
}

/**
 * Min-SNR-γ weight (Hang et al. 2023) for one timestep, for the loss on the
 * objective's own target: ε → min(SNR, γ)/SNR, x0 → min(SNR, γ),
 * v → min(SNR, γ)/(SNR + 1).
 */
export function minSnrWeight(objective: Objective, alphaBar: number, gamma = 5): number {
  const snr = alphaBar / (1 - alphaBar);
  const clipped = Math.min(snr, gamma);
  return objective === "eps" ? clipped / snr : objective === "x0" ? clipped : clipped / (snr + 1);
}

/** Options of {@link GaussianDiffusion.perSampleLoss}. */
export interface LossOptions {
  /** Timestep weighting. @default "none" */
  weighting?: Weighting;
  /** γ of min-SNR-γ. @default 5 */
  gamma?: number;
}

/** The discrete-time Gaussian process over a schedule. */
export class GaussianDiffusion {
  /** The schedule, float64. */
  readonly schedule: Schedule;
  /** What the network predicts. @default "eps" */
  readonly objective: Objective;

  /** A process over `schedule` whose network predicts `objective`. */
  constructor(schedule: Schedule, objective: Objective = "eps") {
    this.schedule = schedule;
    this.objective = objective;
  }

  /** Number of steps T. */
  get T(): number {
    return this.schedule.T;
  }

  /** Forward sample at per-sample step indices t (0-based). */
  qSample(x0: tf.Tensor, t: Int32Array, noise: tf.Tensor): tf.Tensor {
    return tf.tidy(() => qSampleWith(x0, noise, extract(this.schedule.alphasCumprod, t, x0.rank)));
  }

  /**
   * Posterior q(x_{t−1} | x_t, x0): mean = c1·x0 + c2·x_t with
   * c1 = β√ᾱ_{t−1}/(1−ᾱ_t), c2 = (1−ᾱ_{t−1})√α_t/(1−ᾱ_t), variance β̃_t.
   */
  posterior(x0: tf.Tensor, xt: tf.Tensor, t: Int32Array): { mean: tf.Tensor; variance: tf.Tensor } {
    const s = this.schedule;
    const c1 = Array.from(
      t,
      (i) => s.betas[i] * Math.sqrt(s.alphasCumprodPrev[i]) / (1 - s.alphasCumprod[i]),
    );
    const c2 = Array.from(
      t,
      (i) => (1 - s.alphasCumprodPrev[i]) * Math.sqrt(s.alphas[i]) / (1 - s.alphasCumprod[i]),
    );
    const idx = Array.from(t, (_, j) => j);
    return tf.tidy(() => ({
      mean: tf.add(tf.mul(extract(c1, idx, x0.rank), x0), tf.mul(extract(c2, idx, xt.rank), xt)),
      variance: extract(s.posteriorVariance, t, x0.rank),
    }));
  }

  /** Per-timestep loss weights (min-SNR-γ or ones) for the given indices. */
  weights(t: Int32Array, opts: LossOptions = {}): Float32Array {
    const w = new Float32Array(t.length).fill(1);
    if ((opts.weighting ?? "none") === "minsnr") {
      for (let i = 0; i < t.length; i++) {
        w[i] = minSnrWeight(this.objective, this.schedule.alphasCumprod[t[i]], opts.gamma ?? 5);
      }
    }
    return w;
  }

  /**
   * Unweighted per-sample MSE between the network's output and the
   * objective's target: [B]. Weighting is applied by the caller with
   * {@link weights}, so the per-sample values stay comparable across runs.
   */
  perSampleLoss(
    net: Denoiser,
    x0: tf.Tensor,
    t: Int32Array,
    noise: tf.Tensor,
    cond?: tf.Tensor1D,
  ): tf.Tensor1D {
    const a = extract(this.schedule.alphasCumprod, t, x0.rank);
    const xt = qSampleWith(x0, noise, a);
    const out = net(xt, tf.tensor1d(Float32Array.from(t)), cond);
    const err = tf.squaredDifference(out, targetFor(this.objective, x0, noise, a));
    return tf.mean(tf.reshape(err, [x0.shape[0], -1]), 1) as tf.Tensor1D; // [B]
  }
}
