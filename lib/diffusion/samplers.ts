/**
 * The samplers of every Gaussian model, behind the one reverse-process
 * interface ({@link ReverseProcess}), so a sweep swaps them by name. On a
 * DDPM's discrete schedule: DDPM ancestral (over all T steps or respaced),
 * DDIM with η, and DPM-Solver++(2M) walk the schedule's own timesteps; the
 * σ-space samplers (Euler, Heun with S_churn, DPM++ 2M SDE; `sigma.ts`) walk
 * a Karras grid or the schedule's σ's. EDM-preconditioned models take the
 * σ-space samplers, rectified flows their ODE samplers (`flow.ts`).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import { makeFlowSampler } from "./flow.ts";
import { epsFromX0, type Objective, predictX0 } from "./gaussian.ts";
import type { NetFn, ReverseProcess } from "./reverse.ts";
import type { Schedule } from "./schedules.ts";
import {
  discreteSigmaModel,
  edmSigmaModel,
  makeSigmaSampler,
  type SigmaGrid,
  type SigmaModel,
} from "./sigma.ts";

/** Every Gaussian sampler name. */
export const SAMPLERS = ["ddpm", "ddim", "dpmpp2m", "euler", "heun", "dpmpp2m_sde"] as const;
/** One of {@link SAMPLERS}. */
export type SamplerName = typeof SAMPLERS[number];

/** How a Gaussian model's network is parameterised, which decides the samplers it takes. */
export type GaussianParam =
  /** A network over a discrete schedule predicting ε, x0 or v. */
  | { kind: "discrete"; schedule: Schedule; objective: Objective }
  /** An EDM-preconditioned denoiser (Karras et al. 2022). */
  | { kind: "edm"; sigmaData: number }
  /** A rectified-flow velocity network. */
  | { kind: "flow" };

/** The samplers a parameterisation takes. */
export function samplersFor(p: Pick<GaussianParam, "kind">): readonly SamplerName[] {
  if (p.kind === "discrete") return SAMPLERS;
  if (p.kind === "edm") return ["euler", "heun", "dpmpp2m", "dpmpp2m_sde"];
  return ["euler", "heun"];
}

/** The samplers that take η: DDIM's, and DPM++ 2M SDE's noise level. */
export const ETA_SAMPLERS: readonly SamplerName[] = ["ddim", "dpmpp2m_sde"];
/** The samplers that take EDM's S_churn. */
export const CHURN_SAMPLERS: readonly SamplerName[] = ["euler", "heun"];

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
  /** σ-space samplers on a discrete schedule: a Karras grid or the schedule's σ's. @default "karras" */
  grid?: SigmaGrid;
  /** ρ of the Karras grid. @default 7 */
  rho?: number;
  /** EDM's S_churn for Euler and Heun. @default 0 */
  churn?: number;
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

/** A sampler on the schedule's own (respaced) timesteps. */
abstract class DiscreteSampler implements ReverseProcess {
  abstract readonly name: SamplerName;
  protected use: number[] = [];
  protected abar: number[] = [];
  protected abarPrev: number[] = [];

  constructor(
    protected readonly schedule: Schedule,
    protected readonly objective: Objective,
    protected readonly opts: SamplerOptions,
  ) {}

  setSteps(steps: number): number {
    this.use = spacedTimesteps(this.schedule.T, steps, this.opts.spacing ?? "leading");
    ({ abar: this.abar, abarPrev: this.abarPrev } = respaced(this.schedule, this.use));
    this.reset();
    return this.use.length;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    return tf.randomNormal(shape, 0, 1, "float32", rng.seed());
  }

  /** Respaced-chain index of visiting position i. */
  protected k(i: number): number {
    return this.use.length - 1 - i;
  }

  /** The clipped x0 estimate at position i (one network call). */
  protected x0(i: number, x: tf.Tensor, net: NetFn): tf.Tensor {
    const k = this.k(i);
    return clipX0(
      predictX0(this.objective, net(x, this.use[k]), x, this.abar[k]),
      this.opts.clip ?? "none",
    );
  }

  abstract step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor;

  reset(): void {}
}

/** DDPM ancestral sampling on the (possibly respaced) chain. */
class DdpmSampler extends DiscreteSampler {
  readonly name = "ddpm" as const;

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const beta = 1 - a / ap;
    return tf.tidy(() => {
      const x0 = this.x0(i, x, net);
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
class DdimSampler extends DiscreteSampler {
  readonly name = "ddim" as const;

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const eta = this.opts.eta ?? 0;
    return tf.tidy(() => {
      const x0 = this.x0(i, x, net);
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
class DpmSolverPP2M extends DiscreteSampler {
  readonly name = "dpmpp2m" as const;
  #prevX0: tf.Tensor | undefined;
  #prevH = 0;

  step(i: number, x: tf.Tensor, net: NetFn, _rng: Rng): tf.Tensor {
    const k = this.k(i);
    const a = this.abar[k];
    const ap = this.abarPrev[k];
    const x0 = tf.keep(tf.tidy(() => this.x0(i, x, net)));
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
        if (prev && Number.isFinite(prevH)) {
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

/** The σ-space view of a parameterisation (none for a flow). */
function sigmaModelOf(p: GaussianParam): SigmaModel | undefined {
  if (p.kind === "discrete") return discreteSigmaModel(p.schedule, p.objective);
  if (p.kind === "edm") return edmSigmaModel(p.sigmaData);
  return undefined;
}

/**
 * Creates a sampler by name for a model's parameterisation; a name the
 * parameterisation does not take is refused with the ones it does.
 */
export function makeSampler(
  name: string,
  param: GaussianParam,
  opts: SamplerOptions = {},
): ReverseProcess {
  const known = samplersFor(param);
  if (!(known as readonly string[]).includes(name)) {
    const what = param.kind === "discrete"
      ? ""
      : ` for ${param.kind === "edm" ? "EDM" : "flow"} models`;
    throw new Error(`unknown sampler "${name}"${what} (${known.join(", ")})`);
  }
  if (param.kind === "flow") return makeFlowSampler(name);
  if (param.kind === "discrete") {
    const { schedule, objective } = param;
    if (name === "ddpm") return new DdpmSampler(schedule, objective, opts);
    if (name === "ddim") return new DdimSampler(schedule, objective, opts);
    if (name === "dpmpp2m") return new DpmSolverPP2M(schedule, objective, opts);
  }
  return makeSigmaSampler(name, sigmaModelOf(param)!, {
    grid: opts.grid,
    rho: opts.rho,
    churn: opts.churn,
    eta: opts.eta,
    timesteps: param.kind === "discrete"
      ? (steps) => spacedTimesteps(param.schedule.T, steps, opts.spacing ?? "leading")
      : undefined,
  });
}
