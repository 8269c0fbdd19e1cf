/**
 * σ-space sampling (Karras et al. 2022, "Elucidating the Design Space of
 * Diffusion-Based Generative Models", and crowsonkb/k-diffusion): every
 * Gaussian model is seen as a denoiser D(x; σ) of x = x0 + σ·ε, whatever it
 * was trained on. A DDPM's x_t = √ᾱ·(x0 + σε) with σ = √((1−ᾱ)/ᾱ), so its
 * ε-, x0- or v-network becomes such a denoiser by scaling x and looking up
 * the (fractional) timestep of σ; an EDM-preconditioned network is one by
 * construction (c_skip, c_out, c_in, c_noise).
 *
 * On that common footing: the Karras σ grid (ρ = 7), Euler and Heun on the
 * probability-flow ODE with EDM's S_churn, and DPM-Solver++(2M) and its SDE
 * variant (Lu et al. 2022) as k-diffusion writes them.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import { type Objective, predictX0 } from "./gaussian.ts";
import type { NetFn, ReverseProcess } from "./reverse.ts";
import type { Schedule } from "./schedules.ts";

/** A Gaussian model as a denoiser of x = x0 + σ·ε. */
export interface SigmaModel {
  /** Smallest σ the model was trained on. */
  readonly sigmaMin: number;
  /** Largest σ: where sampling starts. */
  readonly sigmaMax: number;
  /** The model's own discrete σ's, ascending, when it has them (a DDPM schedule). */
  readonly sigmas?: Float64Array;
  /** The x0 estimate D(x; σ) of a batch x in σ-space (x = x0 + σε). */
  denoise(x: tf.Tensor, sigma: number, net: NetFn): tf.Tensor;
}

/**
 * ᾱ of the last step where a schedule reaches zero terminal SNR: σ-space
 * samplers must start from a finite σ, so there it is clamped to 2⁻²⁴, as
 * diffusers' Euler scheduler does.
 */
export const ZERO_SNR_ALPHA_BAR = 2 ** -24;

/** σ_t = √((1−ᾱ_t)/ᾱ_t) of every step, ascending (ᾱ_T = 0 clamped to {@link ZERO_SNR_ALPHA_BAR}). */
export function scheduleSigmas(s: Schedule): Float64Array {
  return s.alphasCumprod.map((a) => {
    const ab = Math.max(a, ZERO_SNR_ALPHA_BAR);
    return Math.sqrt((1 - ab) / ab);
  });
}

/**
 * The fractional timestep of σ: linear interpolation of log σ over the
 * schedule's steps (k-diffusion's `sigma_to_t`), clamped to [0, T − 1].
 */
export function sigmaToT(sigmas: Float64Array, sigma: number): number {
  const n = sigmas.length;
  if (sigma <= sigmas[0]) return 0;
  if (sigma >= sigmas[n - 1]) return n - 1;
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (sigmas[mid] <= sigma) lo = mid;
    else hi = mid;
  }
  const a = Math.log(sigmas[lo]);
  const b = Math.log(sigmas[hi]);
  return lo + (b === a ? 0 : (Math.log(sigma) - a) / (b - a));
}

/** σ at a fractional timestep: the inverse of {@link sigmaToT} (log σ linear between steps). */
export function tToSigma(sigmas: Float64Array, t: number): number {
  const n = sigmas.length;
  const c = Math.min(Math.max(t, 0), n - 1);
  const lo = Math.floor(c);
  if (lo === c) return sigmas[lo];
  const f = c - lo;
  return Math.exp((1 - f) * Math.log(sigmas[lo]) + f * Math.log(sigmas[lo + 1]));
}

/** A DDPM network (ε, x0 or v over a discrete schedule) as a σ-space denoiser. */
export function discreteSigmaModel(schedule: Schedule, objective: Objective): SigmaModel {
  const sigmas = scheduleSigmas(schedule);
  return {
    sigmaMin: sigmas[0],
    sigmaMax: sigmas[sigmas.length - 1],
    sigmas,
    denoise: (x, sigma, net) =>
      tf.tidy(() => {
        const a = 1 / (1 + sigma * sigma); // ᾱ of σ
        const xt = tf.mul(x, Math.sqrt(a));
        return predictX0(objective, net(xt, sigmaToT(sigmas, sigma)), xt, a);
      }),
  };
}

/** EDM's defaults (Karras et al. 2022, table 1). */
export const EDM = {
  sigmaMin: 0.002,
  sigmaMax: 80,
  pMean: -1.2,
  pStd: 1.2,
} as const;

/** EDM's preconditioning at σ for data of standard deviation σ_data. */
export interface Preconditioning {
  cSkip: number;
  cOut: number;
  cIn: number;
  /** The network's time input: EDM's c_noise = ¼·ln σ, mapped affinely onto [0, 1000] over [σ_min, σ_max]. */
  cNoise: number;
  /** The loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)²; λ·c_out² = 1. */
  weight: number;
}

/**
 * c_skip = σ_d²/(σ² + σ_d²), c_out = σ·σ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²).
 * EDM feeds c_noise = ¼ ln σ to a Fourier embedding; our networks embed step
 * indices, so the same log σ is rescaled to [0, 1000] over EDM's σ range.
 */
export function edmPreconditioning(sigma: number, sigmaData: number): Preconditioning {
  const s2 = sigma * sigma;
  const d2 = sigmaData * sigmaData;
  const lo = Math.log(EDM.sigmaMin);
  return {
    cSkip: d2 / (s2 + d2),
    cOut: sigma * sigmaData / Math.sqrt(s2 + d2),
    cIn: 1 / Math.sqrt(s2 + d2),
    cNoise: 1000 * (Math.log(sigma) - lo) / (Math.log(EDM.sigmaMax) - lo),
    weight: (s2 + d2) / (s2 * d2),
  };
}

/** An EDM-preconditioned network as a σ-space denoiser: D = c_skip·x + c_out·F(c_in·x, c_noise). */
export function edmSigmaModel(sigmaData: number): SigmaModel {
  return {
    sigmaMin: EDM.sigmaMin,
    sigmaMax: EDM.sigmaMax,
    denoise: (x, sigma, net) =>
      tf.tidy(() => {
        const p = edmPreconditioning(sigma, sigmaData);
        return tf.add(tf.mul(x, p.cSkip), tf.mul(net(tf.mul(x, p.cIn), p.cNoise), p.cOut));
      }),
  };
}

/**
 * The Karras grid: σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,
 * n values descending from σ_max to σ_min, then 0.
 */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`karras grid: steps must be ≥ 1, got ${n}`);
  if (!(sigmaMin > 0 && sigmaMax > sigmaMin)) {
    throw new Error(`karras grid: need 0 < σ_min < σ_max, got ${sigmaMin}, ${sigmaMax}`);
  }
  const a = sigmaMax ** (1 / rho);
  const b = sigmaMin ** (1 / rho);
  const out = Array.from(
    { length: n },
    (_, i) => (a + (n === 1 ? 0 : i / (n - 1)) * (b - a)) ** rho,
  );
  return [...out, 0];
}

/** Where the σ grid comes from. */
export type SigmaGrid = "karras" | "schedule";

/** Options of the σ-space samplers. */
export interface SigmaSamplerOptions {
  /** `karras` (ρ-spaced between the model's σ_min and σ_max) or the model's own σ's at `timesteps`. @default "karras" */
  grid?: SigmaGrid;
  /** ρ of the Karras grid. @default 7 */
  rho?: number;
  /** For `grid: "schedule"`: the step indices to use, ascending, given the step count. */
  timesteps?: (steps: number) => number[];
  /** EDM's S_churn (Euler and Heun): stochasticity added per step, γ = min(S_churn/N, √2 − 1). @default 0 */
  churn?: number;
  /** EDM's S_tmin, S_tmax: churn only for σ in this range. @default [0, ∞) */
  churnRange?: [number, number];
  /** EDM's S_noise. @default 1 */
  sNoise?: number;
  /** η of DPM++ 2M SDE. @default 1 */
  eta?: number;
}

/** The σ-space sampler names. */
export const SIGMA_SAMPLERS = ["euler", "heun", "dpmpp2m", "dpmpp2m_sde"] as const;

/** A σ-space sampler: a σ grid and one step on it. */
abstract class SigmaSampler implements ReverseProcess {
  abstract readonly name: string;
  protected sigmas: number[] = [];

  constructor(protected readonly model: SigmaModel, protected readonly opts: SigmaSamplerOptions) {}

  setSteps(steps: number): number {
    const m = this.model;
    if ((this.opts.grid ?? "karras") === "schedule") {
      if (!m.sigmas || !this.opts.timesteps) {
        throw new Error("sigma_grid=schedule needs a model with a discrete schedule");
      }
      const use = this.opts.timesteps(steps);
      this.sigmas = [...use.map((t) => m.sigmas![t]).reverse(), 0];
    } else {
      this.sigmas = karrasSigmas(steps, m.sigmaMin, m.sigmaMax, this.opts.rho ?? 7);
    }
    this.reset();
    return this.sigmas.length - 1;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    return tf.tidy(() =>
      tf.mul(tf.randomNormal(shape, 0, 1, "float32", rng.seed()), this.sigmas[0])
    );
  }

  abstract step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor;

  reset(): void {}

  /** EDM's churn: raises σ_i to σ̂ = σ_i(1 + γ) with fresh noise; returns x̂ and σ̂. */
  protected churn(i: number, x: tf.Tensor, rng: Rng): { x: tf.Tensor; sigma: number } {
    const sigma = this.sigmas[i];
    const [lo, hi] = this.opts.churnRange ?? [0, Infinity];
    const churn = this.opts.churn ?? 0;
    const gamma = churn > 0 && sigma >= lo && sigma <= hi
      ? Math.min(churn / (this.sigmas.length - 1), Math.SQRT2 - 1)
      : 0;
    if (gamma === 0) return { x, sigma };
    const hat = sigma * (1 + gamma);
    const z = tf.randomNormal(x.shape, 0, 1, "float32", rng.seed());
    return {
      x: tf.add(x, tf.mul(z, (this.opts.sNoise ?? 1) * Math.sqrt(hat * hat - sigma * sigma))),
      sigma: hat,
    };
  }
}

/** Euler on the probability-flow ODE dx/dσ = (x − D(x; σ))/σ (Karras et al., Algorithm 2 without the correction). */
class EulerSampler extends SigmaSampler {
  readonly name = "euler";

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    return tf.tidy(() => {
      const { x: xh, sigma } = this.churn(i, x, rng);
      const d = tf.div(tf.sub(xh, this.model.denoise(xh, sigma, net)), sigma);
      return tf.add(xh, tf.mul(d, this.sigmas[i + 1] - sigma));
    });
  }
}

/** Heun's second-order method (Karras et al., Algorithm 2); the last step to σ = 0 is Euler. */
class HeunSampler extends SigmaSampler {
  readonly name = "heun";

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    return tf.tidy(() => {
      const { x: xh, sigma } = this.churn(i, x, rng);
      const next = this.sigmas[i + 1];
      const d = tf.div(tf.sub(xh, this.model.denoise(xh, sigma, net)), sigma);
      const x2 = tf.add(xh, tf.mul(d, next - sigma));
      if (next === 0) return x2;
      const d2 = tf.div(tf.sub(x2, this.model.denoise(x2, next, net)), next);
      return tf.add(xh, tf.mul(tf.add(d, d2), (next - sigma) / 2));
    });
  }
}

/**
 * DPM-Solver++(2M) and 2M SDE (midpoint) as k-diffusion's `sample_dpmpp_2m`
 * and `sample_dpmpp_2m_sde`, in λ = −log σ: with h = λ_{i+1} − λ_i,
 *
 *   x ← (σ_{i+1}/σ_i)·e^{−ηh}·x + (1 − e^{−h−ηh})·D + correction + noise,
 *
 * where the second-order correction uses the previous D with r = h_{i−1}/h
 * and the SDE variant (η > 0) adds σ_{i+1}·√(1 − e^{−2ηh}) of fresh noise.
 */
class DpmSolverPP2MSigma extends SigmaSampler {
  readonly name: string;
  #prev: tf.Tensor | undefined;
  #prevH = 0;

  constructor(model: SigmaModel, opts: SigmaSamplerOptions, private readonly sde: boolean) {
    super(model, opts);
    this.name = sde ? "dpmpp2m_sde" : "dpmpp2m";
  }

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    const sigma = this.sigmas[i];
    const next = this.sigmas[i + 1];
    const denoised = tf.keep(this.model.denoise(x, sigma, net));
    const prev = this.#prev;
    const out = tf.tidy(() => {
      if (next === 0) return tf.clone(denoised);
      const h = Math.log(sigma) - Math.log(next);
      const eta = this.sde ? (this.opts.eta ?? 1) : 0;
      const etaH = eta * h;
      const mix = -Math.expm1(-h - etaH); // 1 − e^{−h−ηh}
      let y = tf.add(tf.mul(x, next / sigma * Math.exp(-etaH)), tf.mul(denoised, mix));
      if (prev) {
        const r = this.#prevH / h;
        const diff = tf.sub(denoised, prev);
        y = this.sde
          ? tf.add(y, tf.mul(diff, 0.5 * mix / r))
          : tf.add(y, tf.mul(diff, mix / (2 * r)));
      }
      if (this.sde && eta > 0) {
        const z = tf.randomNormal(x.shape, 0, 1, "float32", rng.seed());
        y = tf.add(y, tf.mul(z, next * Math.sqrt(-Math.expm1(-2 * etaH))));
      }
      return y;
    });
    this.#prevH = next === 0 ? 0 : Math.log(sigma) - Math.log(next);
    this.#prev?.dispose();
    this.#prev = denoised;
    return out;
  }

  override reset(): void {
    this.#prev?.dispose();
    this.#prev = undefined;
    this.#prevH = 0;
  }
}

/** Creates a σ-space sampler by name. */
export function makeSigmaSampler(
  name: string,
  model: SigmaModel,
  opts: SigmaSamplerOptions = {},
): ReverseProcess {
  switch (name) {
    case "euler":
      return new EulerSampler(model, opts);
    case "heun":
      return new HeunSampler(model, opts);
    case "dpmpp2m":
      return new DpmSolverPP2MSigma(model, opts, false);
    case "dpmpp2m_sde":
      return new DpmSolverPP2MSigma(model, opts, true);
    default:
      throw new Error(`unknown σ-space sampler "${name}" (${SIGMA_SAMPLERS.join(", ")})`);
  }
}
