/**
 * Timestep samplers for training: uniform, or loss-aware (improved-diffusion's
 * LossSecondMomentResampler): p(t) ∝ √E[L_t²] over the last 10 losses of each
 * t, mixed with 0.1% uniform, used once every t has a full history. Each draw
 * comes with its importance weight 1/(T·p(t)) so the loss stays unbiased.
 */
import type { Rng } from "../runtime/rng.ts";

/** A batch of timesteps and their importance weights. */
export interface TimestepDraw {
  t: Int32Array;
  weights: Float32Array;
}

/** Serializable state of a timestep sampler (for checkpoints). */
export interface TimestepState {
  kind: "uniform" | "loss-aware";
  history?: number[][];
}

/** Draws training timesteps and learns from the losses when it can. */
export interface TimestepSampler {
  /** Draws `n` step indices in [0, T) with importance weights. */
  draw(n: number, rng: Rng): TimestepDraw;
  /** Whether {@link update} wants the per-sample losses (costs a read-back). */
  readonly wantsLosses: boolean;
  /** Records per-sample losses of the drawn steps. */
  update(t: Int32Array, losses: Float32Array): void;
  /** The state to checkpoint. */
  state(): TimestepState;
}

/** Uniform timesteps, weights 1. */
export class UniformTimesteps implements TimestepSampler {
  readonly wantsLosses = false;
  /** Over [0, T). */
  constructor(readonly T: number) {}

  /** Draws uniformly. */
  draw(n: number, rng: Rng): TimestepDraw {
    const t = new Int32Array(n);
    for (let i = 0; i < n; i++) t[i] = rng.int(this.T);
    return { t, weights: new Float32Array(n).fill(1) };
  }

  /** Nothing to learn. */
  update(): void {}

  /** Stateless. */
  state(): TimestepState {
    return { kind: "uniform" };
  }
}

/** Loss-aware (second-moment) resampling. */
export class LossAwareTimesteps implements TimestepSampler {
  readonly wantsLosses = true;
  #history: number[][];
  readonly historyPerTerm = 10;
  readonly uniformProb = 0.001;

  /** Over [0, T), optionally restoring a checkpointed history. */
  constructor(readonly T: number, state?: TimestepState) {
    this.#history = state?.history?.map((h) => [...h]) ?? Array.from({ length: T }, () => []);
  }

  /** Sampling probabilities p(t); uniform until every t has a full history. */
  probabilities(): Float64Array {
    const p = new Float64Array(this.T);
    if (this.#history.some((h) => h.length < this.historyPerTerm)) return p.fill(1 / this.T);
    let sum = 0;
    for (let t = 0; t < this.T; t++) {
      const h = this.#history[t];
      p[t] = Math.sqrt(h.reduce((s, v) => s + v * v, 0) / h.length);
      sum += p[t];
    }
    for (let t = 0; t < this.T; t++) {
      p[t] = (p[t] / sum) * (1 - this.uniformProb) + this.uniformProb / this.T;
    }
    return p;
  }

  /** Draws from p(t) with weights 1/(T·p). */
  draw(n: number, rng: Rng): TimestepDraw {
    const p = this.probabilities();
    const cdf = new Float64Array(this.T);
    let acc = 0;
    for (let i = 0; i < this.T; i++) cdf[i] = acc += p[i];
    const t = new Int32Array(n);
    const weights = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = rng.uniform() * acc;
      let lo = 0;
      let hi = this.T - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
      }
      t[i] = lo;
      weights[i] = 1 / (this.T * p[lo]);
    }
    return { t, weights };
  }

  /** Keeps the last 10 losses of each t. */
  update(t: Int32Array, losses: Float32Array): void {
    for (let i = 0; i < t.length; i++) {
      const h = this.#history[t[i]];
      h.push(losses[i]);
      if (h.length > this.historyPerTerm) h.shift();
    }
  }

  /** The histories. */
  state(): TimestepState {
    return { kind: "loss-aware", history: this.#history.map((h) => [...h]) };
  }
}

/** Creates a timestep sampler by name, restoring state when given. */
export function makeTimestepSampler(
  kind: "uniform" | "loss-aware",
  T: number,
  state?: TimestepState,
): TimestepSampler {
  if (kind === "uniform") return new UniformTimesteps(T);
  if (kind === "loss-aware") return new LossAwareTimesteps(T, state);
  throw new Error(`unknown timestep sampler "${kind}" (uniform or loss-aware)`);
}
