/**
 * Samplers for the Gaussian process, all behind one small interface (set the
 * timesteps, take one step), so a sweep swaps them by name: DDPM ancestral
 * (over all T steps or respaced), DDIM with η, and DPM-Solver++(2M).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import { epsFromX0, type Objective, predictX0 } from "./gaussian.ts";
import type { Schedule } from "./schedules.ts";

/** The sampler names a sweep can use. */
export const SAMPLERS = ["ddpm", "ddim", "dpmpp2m"] as const;
/** One of {@link SAMPLERS}. */
export type SamplerName = typeof SAMPLERS[number];

/** How a reduced set of timesteps is spread over [0, T). */
export type Spacing = "linspace" | "leading" | "trailing";

/** x0 clipping during sampling. */
export type Clip = "none" | "static" | "dynamic";

/** Options common to the samplers. */
export interface SamplerOptions {
  /** Number of sampling steps (≤ T). @default T */
  steps?: number;
  /**
   * Timestep spacing: `linspace`, `leading` (range(0, T, T/steps), DDIM's
   * choice), `trailing`, or improved-diffusion section counts such as
   * `"10,10,5"`. @default "leading"
   */
  spacing?: Spacing | string;
  /** DDIM's η (0 deterministic, 1 ancestral-like). @default 0 */
  eta?: number;
  /** x0 clipping: `static` to [−1, 1], `dynamic` thresholding (Imagen, p = 0.995). @default "none" */
  clip?: Clip;
  /** DDPM variance: `small` β̃ or `large` β. @default "small" */
  variance?: "small" | "large";
}

/**
 * A sampler: {@link setTimesteps} fixes the (descending) original step
 * indices the network will see; {@link step} turns the network output at
 * position i into x at position i + 1.
 */
export interface Sampler {
  readonly name: SamplerName;
  /** Chooses the timesteps; returns them descending (the order they are visited). */
  setTimesteps(steps: number): number[];
  /** One reverse step from position `i` given the network output there. */
  step(out: tf.Tensor, i: number, x: tf.Tensor, rng: Rng): tf.Tensor;
  /** Frees any state kept between steps. */
  reset(): void;
}

/**
 * The timesteps to use, ascending, for `steps` of `T` under a spacing.
 * Section counts follow improved-diffusion's `space_timesteps`.
 */
export function spacedTimesteps(
  T: number,
  steps: number,
  spacing: Spacing | string = "leading",
): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new Error(`sampler: steps must be an integer from 1 to T = ${T}, got ${steps}`);
  }
  if (spacing.startsWith("ddim")) return spacedTimesteps(T, Number(spacing.slice(4)), "leading");
  if (/^\d+(,\d+)*$/.test(spacing)) return sectionTimesteps(T, spacing.split(",").map(Number));
  const out: number[] = [];
  if (spacing === "linspace") {
    for (let i = 0; i < steps; i++) {
      out.push(Math.round(steps === 1 ? 0 : i * (T - 1) / (steps - 1)));
    }
  } else if (spacing === "leading") {
    const stride = Math.floor(T / steps);
    for (let i = 0; i < steps; i++) out.push(i * stride);
  } else if (spacing === "trailing") {
    for (let i = steps; i > 0; i--) out.push(Math.round(i * T / steps) - 1);
    out.reverse();
  } else {
    throw new Error(
      `sampler: unknown spacing "${spacing}" (linspace, leading, trailing, ddimN or section counts)`,
    );
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function sectionTimesteps(T: number, counts: number[]): number[] {
  const sizePer = Math.floor(T / counts.length);
  const extra = T % counts.length;
  let start = 0;
  const out: number[] = [];
  counts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) {
      throw new Error(`sampler: cannot take ${count} steps from a section of ${size}`);
    }
    const stride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let cur = 0;
    for (let j = 0; j < count; j++) {
      out.push(start + roundHalfEven(cur));
      cur += stride;
    }
    start += size;
  });
  return out;
}

/** Rounds as Python's round() does (halves to even), so section counts match improved-diffusion. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** ᾱ at each used timestep and the one before it in the respaced chain (1 before the first). */
function respaced(schedule: Schedule, use: number[]): { abar: number[]; abarPrev: number[] } {
  const abar = use.map((t) => schedule.alphasCumprod[t]);
  return { abar, abarPrev: abar.map((_, i) => (i === 0 ? 1 : abar[i - 1])) };
}

/** Applies the clipping option to an x0 estimate. */
export function clipX0(x0: tf.Tensor, clip: Clip, percentile = 0.995): tf.Tensor {
  if (clip === "none") return x0;
  if (clip === "static") return tf.clipByValue(x0, -1, 1);
  return tf.tidy(() => {
    const B = x0.shape[0];
    const flat = tf.reshape(tf.abs(x0), [B, -1]); // [B, D]
    const k = Math.max(1, Math.ceil((1 - percentile) * flat.shape[1]!));
    const s = tf.maximum(tf.min(tf.topk(flat, k).values, 1), 1); // [B]
    const sb = tf.reshape(s, [B, ...new Array(x0.rank - 1).fill(1)]);
    return tf.div(tf.minimum(tf.maximum(x0, tf.neg(sb)), sb), sb);
  });
}

abstract class BaseSampler implements Sampler {
  abstract readonly name: SamplerName;
  protected use: number[] = [];
  protected abar: number[] = [];
  protected abarPrev: number[] = [];

  constructor(
    protected readonly schedule: Schedule,
    protected readonly objective: Objective,
    protected readonly opts: SamplerOptions,
  ) {}

  setTimesteps(steps: number): number[] {
    this.use = spacedTimesteps(this.schedule.T, steps, this.opts.spacing ?? "leading");
    ({ abar: this.abar, abarPrev: this.abarPrev } = respaced(this.schedule, this.use));
    this.reset();
    return [...this.use].reverse();
  }

  /** Respaced-chain index of visiting position i. */
  protected k(i: number): number {
    return this.use.length - 1 - i;
  }

  protected x0(out: tf.Tensor, x: tf.Tensor, k: number): tf.Tensor {
    return clipX0(predictX0(this.objective, out, x, this.abar[k]), this.opts.clip ?? "none");
  }

  abstract step(out: tf.Tensor, i: number, x: tf.Tensor, rng: Rng): tf.Tensor;

  reset(): void {}
}

/** DDPM ancestral sampling on the (possibly respaced) chain. */
class DdpmSampler extends BaseSampler {
  readonly name = "ddpm" as const;

  step(out: tf.Tensor, i: number, x: tf.Tensor, rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const beta = 1 - a / ap;
    return tf.tidy(() => {
      const x0 = this.x0(out, x, k);
      const c1 = beta * Math.sqrt(ap) / (1 - a);
      const c2 = (1 - ap) * Math.sqrt(1 - beta) / (1 - a);
      const mean = tf.add(tf.mul(x0, c1), tf.mul(x, c2));
      if (k === 0) return mean;
      const small = beta * (1 - ap) / (1 - a);
      const variance = this.opts.variance === "large" ? beta : small;
      return tf.add(
        mean,
        tf.mul(tf.randomNormal(x.shape, 0, 1, "float32", rng.seed()), Math.sqrt(variance)),
      );
    });
  }
}

/** DDIM (Song et al.) with η; η = 0 is deterministic. */
class DdimSampler extends BaseSampler {
  readonly name = "ddim" as const;

  step(out: tf.Tensor, i: number, x: tf.Tensor, rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const eta = this.opts.eta ?? 0;
    return tf.tidy(() => {
      const x0 = this.x0(out, x, k);
      const eps = epsFromX0(x0, x, a);
      const sigma = eta * Math.sqrt((1 - ap) / (1 - a)) * Math.sqrt(1 - a / ap);
      let next = tf.add(
        tf.mul(x0, Math.sqrt(ap)),
        tf.mul(eps, Math.sqrt(Math.max(1 - ap - sigma * sigma, 0))),
      );
      if (sigma > 0 && k > 0) {
        next = tf.add(next, tf.mul(tf.randomNormal(x.shape, 0, 1, "float32", rng.seed()), sigma));
      }
      return next;
    });
  }
}

/** DPM-Solver++(2M) (Lu et al. 2022), multistep in the data prediction, first order at the ends. */
class DpmSolverPP2M extends BaseSampler {
  readonly name = "dpmpp2m" as const;
  #prevX0: tf.Tensor | undefined;
  #prevH = 0;

  step(out: tf.Tensor, i: number, x: tf.Tensor, _rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const x0 = tf.keep(tf.tidy(() => this.x0(out, x, k)));
    const lambda = (ab: number) => 0.5 * Math.log(ab / (1 - ab));
    let next: tf.Tensor;
    if (k === 0) {
      next = tf.clone(x0); // the final step lands on σ = 0: x = x0
    } else {
      const h = lambda(ap) - lambda(a);
      const sigmaRatio = Math.sqrt((1 - ap) / (1 - a));
      const alphaNext = Math.sqrt(ap);
      const prev = this.#prevX0;
      const prevH = this.#prevH;
      next = tf.tidy(() => {
        let d = x0;
        if (prev) {
          const r = prevH / h;
          d = tf.sub(tf.mul(x0, 1 + 1 / (2 * r)), tf.mul(prev, 1 / (2 * r)));
        }
        return tf.sub(tf.mul(x, sigmaRatio), tf.mul(d, alphaNext * (Math.exp(-h) - 1)));
      });
      this.#prevH = h;
    }
    this.#prevX0?.dispose();
    this.#prevX0 = x0;
    return next;
  }

  override reset(): void {
    this.#prevX0?.dispose();
    this.#prevX0 = undefined;
    this.#prevH = 0;
  }
}

/** Creates a sampler by name. */
export function makeSampler(
  name: string,
  schedule: Schedule,
  objective: Objective,
  opts: SamplerOptions = {},
): Sampler {
  switch (name) {
    case "ddpm":
      return new DdpmSampler(schedule, objective, opts);
    case "ddim":
      return new DdimSampler(schedule, objective, opts);
    case "dpmpp2m":
      return new DpmSolverPP2M(schedule, objective, opts);
    default:
      throw new Error(`unknown sampler "${name}" (${SAMPLERS.join(", ")})`);
  }
}

/** Options of {@link sampleLoop}. */
export interface LoopOptions {
  /** Called after each step with the position and the new x (do not keep x). */
  onStep?: (i: number, x: tf.Tensor) => void;
  /** Class labels [B] passed to the network. */
  cond?: tf.Tensor1D;
}

/**
 * Runs a sampler from pure noise: x_T ~ N(0, I) of `shape`, then one network
 * call and one {@link Sampler.step} per timestep. Frees every intermediate.
 */
export async function sampleLoop(
  net: (x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D) => tf.Tensor,
  sampler: Sampler,
  steps: number,
  shape: number[],
  rng: Rng,
  opts: LoopOptions = {},
): Promise<tf.Tensor> {
  const ts = sampler.setTimesteps(steps);
  let x = tf.randomNormal(shape, 0, 1, "float32", rng.seed());
  for (let i = 0; i < ts.length; i++) {
    const next = tf.tidy(() => {
      const out = net(x, tf.fill([shape[0]], ts[i]) as tf.Tensor1D, opts.cond);
      return sampler.step(out, i, x, rng);
    });
    x.dispose();
    x = next;
    opts.onStep?.(i, x);
    if (i % 25 === 24) await new Promise((r) => setTimeout(r, 0));
  }
  sampler.reset();
  return x;
}
