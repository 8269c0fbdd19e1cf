/**
 * Discrete diffusion with structured transition matrices (D3PM, Austin et al.
 * 2021) over K categories, in two forms: pure float64 math on single
 * categorical vectors (for checks and tables), and tensor versions for
 * training on batches.
 *
 * A state is a row vector x (one-hot); a step is x_t ~ Cat(x_{t−1} Q_t).
 * - uniform: Q_t = (1 − β_t) I + β_t 11ᵀ/K over K states;
 * - absorbing: Q_t = (1 − β_t) I + β_t 1 e_mᵀ over K + 1 states, the MASK
 *   state m = K absorbing every other state.
 *
 * Both kernels are closed under products: Q_{s+1} ⋯ Q_t is the same matrix
 * form with β = 1 − ᾱ_t/ᾱ_s, where ᾱ_t = Π_{u≤t} (1 − β_u). So
 * Q̄_t = Q_1 ⋯ Q_t = ᾱ_t I + (1 − ᾱ_t) 11ᵀ/K (uniform) or
 * ᾱ_t I + (1 − ᾱ_t) 1 e_mᵀ (absorbing), and a posterior between any two
 * times s < t is as cheap as between t − 1 and t.
 *
 * Timesteps are 1-based as in the paper: t = 1..T, ᾱ_0 = 1.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import type { NetFn, ReverseProcess } from "./reverse.ts";
import { cosineBetas, linearBetas } from "./schedules.ts";

/** The transition kernels. */
export type D3pmKernel = "uniform" | "absorbing";

/** The β schedules: `linear` (Ho et al., scaled by 1000/T), `cosine` (Nichol & Dhariwal), `mi` (1/(T − t + 1)). */
export type D3pmScheduleKind = "linear" | "cosine" | "mi";

/** The kernels' names, for configuration choices. */
export const D3PM_KERNELS: readonly D3pmKernel[] = ["uniform", "absorbing"];

/** The schedules' names, for configuration choices. */
export const D3PM_SCHEDULES: readonly D3pmScheduleKind[] = ["linear", "cosine", "mi"];

/** A log-probability that stands for log 0: finite, so log-sum-exp and gradients stay finite. */
export const LOG_ZERO = -1e4;

/** Number of states of a kernel over K categories: K, or K + 1 with the MASK. */
export function numStates(kernel: D3pmKernel, K: number): number {
  return kernel === "absorbing" ? K + 1 : K;
}

/**
 * β_1..β_T (index 0 is t = 1). `mi` is 1/(T − t + 1), which interpolates the
 * mutual information between x_t and x_0 linearly to 0 for the absorbing
 * kernel (D3PM appendix A.2.2). For the absorbing kernel the last β is set
 * to 1 whatever the schedule, so x_T is all MASK and the prior term of the
 * ELBO vanishes.
 */
export function d3pmBetas(kind: D3pmScheduleKind, T: number, kernel: D3pmKernel): Float64Array {
  const betas = kind === "linear"
    ? linearBetas(T)
    : kind === "cosine"
    ? cosineBetas(T)
    : Float64Array.from({ length: T }, (_, i) => 1 / (T - i));
  if (kernel === "absorbing") betas[T - 1] = 1;
  return betas;
}

/** ᾱ_0..ᾱ_T (length T + 1, ᾱ_0 = 1) from β_1..β_T. */
export function cumulativeAlphas(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length + 1);
  out[0] = 1;
  for (let t = 1; t <= betas.length; t++) out[t] = out[t - 1] * (1 - betas[t - 1]);
  return out;
}

/**
 * One transition matrix Q = (1 − β) I + β 11ᵀ/K (uniform) or
 * (1 − β) I + β 1 e_mᵀ (absorbing), row-major [S, S], rows summing to 1:
 * Q[i][j] = q(next = j | previous = i).
 */
export function transitionMatrix(kernel: D3pmKernel, K: number, beta: number): Float64Array {
  const S = numStates(kernel, K);
  const Q = new Float64Array(S * S);
  for (let i = 0; i < S; i++) {
    Q[i * S + i] += 1 - beta;
    if (kernel === "uniform") { for (let j = 0; j < S; j++) Q[i * S + j] += beta / K; }
    else Q[i * S + K] += beta;
  }
  return Q;
}

/** The closed form of Q̄_t = Q_1 ⋯ Q_t from ᾱ_t: the transition matrix with β = 1 − ᾱ_t. */
export function cumulativeMatrix(kernel: D3pmKernel, K: number, alphaBar: number): Float64Array {
  return transitionMatrix(kernel, K, 1 - alphaBar);
}

/** The transition matrix from time s to time t > s, Q_{s+1} ⋯ Q_t: β = 1 − ᾱ_t/ᾱ_s. */
export function spanMatrix(
  kernel: D3pmKernel,
  K: number,
  abarS: number,
  abarT: number,
): Float64Array {
  return transitionMatrix(kernel, K, abarS > 0 ? 1 - abarT / abarS : 1);
}

/** Product of two row-major [S, S] matrices. */
export function matMul(a: Float64Array, b: Float64Array, S: number): Float64Array {
  const out = new Float64Array(S * S);
  for (let i = 0; i < S; i++) {
    for (let k = 0; k < S; k++) {
      const v = a[i * S + k];
      if (v !== 0) { for (let j = 0; j < S; j++) out[i * S + j] += v * b[k * S + j]; }
    }
  }
  return out;
}

/**
 * The forward posterior q(x_s | x_t, x_0) for s < t (s = t − 1 in the
 * paper): ∝ (x_t Q_{s→t}ᵀ) ⊙ (x_0 Q̄_s), normalised by x_0 Q̄_t x_tᵀ. Returns
 * [S] probabilities, or undefined when x_t is impossible given x_0.
 */
export function posterior(
  kernel: D3pmKernel,
  K: number,
  abarS: number,
  abarT: number,
  xt: number,
  x0: number,
): Float64Array | undefined {
  const S = numStates(kernel, K);
  const span = spanMatrix(kernel, K, abarS, abarT);
  const barS = cumulativeMatrix(kernel, K, abarS);
  const out = new Float64Array(S);
  let z = 0;
  for (let j = 0; j < S; j++) {
    out[j] = span[j * S + xt] * barS[x0 * S + j];
    z += out[j];
  }
  if (z <= 0) return undefined;
  for (let j = 0; j < S; j++) out[j] /= z;
  return out;
}

/**
 * Log q(x_s | x_t, x̃_0) for every x_t (S) and x̃_0 (K data categories),
 * [S, K, S] flattened, with {@link LOG_ZERO} for zeros and for whole rows
 * where x_t is impossible given x̃_0 (those x̃_0 get no weight in
 * {@link reverseProbs}).
 */
export function logPosteriorTable(
  kernel: D3pmKernel,
  K: number,
  abarS: number,
  abarT: number,
): Float32Array {
  const S = numStates(kernel, K);
  const out = new Float32Array(S * K * S).fill(LOG_ZERO);
  for (let xt = 0; xt < S; xt++) {
    for (let x0 = 0; x0 < K; x0++) {
      const p = posterior(kernel, K, abarS, abarT, xt, x0);
      if (!p) continue;
      for (let j = 0; j < S; j++) {
        if (p[j] > 0) out[(xt * K + x0) * S + j] = Math.max(Math.log(p[j]), LOG_ZERO);
      }
    }
  }
  return out;
}

/**
 * [S, K] with 0 where x̃_0 can have produced x_t (q(x_t | x̃_0) > 0) and
 * {@link LOG_ZERO} where not: added to the network's logits, it restricts
 * p̃θ(x̃_0 | x_t) to the x̃_0 consistent with x_t. Only the absorbing kernel
 * has zeros: an unmasked x_t is its own x_0.
 */
export function logConsistency(kernel: D3pmKernel, K: number, abarT: number): Float32Array {
  const S = numStates(kernel, K);
  const bar = cumulativeMatrix(kernel, K, abarT);
  const out = new Float32Array(S * K);
  for (let xt = 0; xt < S; xt++) {
    for (let x0 = 0; x0 < K; x0++) out[xt * K + x0] = bar[x0 * S + xt] > 0 ? 0 : LOG_ZERO;
  }
  return out;
}

/**
 * The x0-parameterised reverse step in float64, for checks:
 * pθ(x_s | x_t) = Σ_{x̃0} q(x_s | x_t, x̃0) p̃θ(x̃0 | x_t), where p̃θ is the
 * softmax of `logits` [K] restricted to the x̃0 consistent with x_t.
 * Returns [S] probabilities.
 */
export function reverseProbs(
  kernel: D3pmKernel,
  K: number,
  abarS: number,
  abarT: number,
  xt: number,
  logits: ArrayLike<number>,
): Float64Array {
  const S = numStates(kernel, K);
  const consistent = logConsistency(kernel, K, abarT);
  const l = Array.from({ length: K }, (_, k) => logits[k] + consistent[xt * K + k]);
  const mx = Math.max(...l);
  const e = l.map((v) => Math.exp(v - mx));
  const z = e.reduce((a, b) => a + b, 0);
  const out = new Float64Array(S);
  for (let x0 = 0; x0 < K; x0++) {
    const p = posterior(kernel, K, abarS, abarT, xt, x0);
    if (p) { for (let j = 0; j < S; j++) out[j] += p[j] * e[x0] / z; }
  }
  return out;
}

/** KL(q ‖ p) in nats between two categorical distributions (0 log 0 = 0). */
export function categoricalKl(q: ArrayLike<number>, p: ArrayLike<number>): number {
  let kl = 0;
  for (let i = 0; i < q.length; i++) if (q[i] > 0) kl += q[i] * (Math.log(q[i]) - Math.log(p[i]));
  return kl;
}

/**
 * Prior term of the ELBO per variable, KL(q(x_T | x_0) ‖ p(x_T)) in nats,
 * with p(x_T) uniform (uniform kernel) or all MASK (absorbing). By symmetry
 * it does not depend on x_0.
 */
export function priorKl(kernel: D3pmKernel, K: number, abarT: number): number {
  const S = numStates(kernel, K);
  const q = cumulativeMatrix(kernel, K, abarT).subarray(0, S); // row of x_0 = 0
  const p = kernel === "uniform"
    ? new Float64Array(S).fill(1 / K)
    : Float64Array.from({ length: S }, (_, j) => (j === K ? 1 : 0));
  return categoricalKl(q, p);
}

/**
 * One-hot float32 rows [n, depth] of integer categories. Cast after the fact:
 * the wasm backend's OneHot ignores the dtype argument and fills int32 bits.
 */
export function oneHot(categories: Int32Array, depth: number): tf.Tensor2D {
  return tf.cast(tf.oneHot(tf.tensor1d(categories, "int32"), depth), "float32") as tf.Tensor2D;
}

/**
 * A categorical draw from probabilities p[offset .. offset + n) by inverse
 * CDF. When rounding leaves u above the total, it returns the last state with
 * nonzero probability, never one of probability 0.
 */
function drawCategorical(p: ArrayLike<number>, offset: number, n: number, u: number): number {
  let acc = 0;
  let last = 0;
  for (let j = 0; j < n; j++) {
    const pj = p[offset + j];
    if (pj <= 0) continue;
    acc += pj;
    last = j;
    if (u < acc) return j;
  }
  return last;
}

/** One training or evaluation batch of the forward process, and what the loss needs of it. */
export interface D3pmBatch {
  /** Clean categories [B·N]. */
  x0: Int32Array;
  /** Noised states [B·N]. */
  xt: Int32Array;
  /** Each sample's timestep in 1..T [B]. */
  t: Int32Array;
}

/** Options of {@link D3pmProcess}. */
export interface D3pmOptions {
  /** Transition kernel. */
  kernel: D3pmKernel;
  /** Data categories (the absorbing kernel adds a MASK state). */
  K: number;
  /** Diffusion steps. */
  T: number;
  /** β schedule. @default "linear" for uniform, "mi" for absorbing */
  schedule?: D3pmScheduleKind;
}

/** The terms of the D3PM loss per sample, each [B], in nats per variable. */
export interface D3pmLossTerms {
  /** The variational term at each sample's t: KL(q(x_{t−1}|x_t,x0) ‖ pθ(x_{t−1}|x_t)), or −log pθ(x0|x1) at t = 1. */
  vb: tf.Tensor1D;
  /** The auxiliary cross-entropy −log p̃θ(x0 | x_t). */
  ce: tf.Tensor1D;
}

/**
 * A D3PM forward process with its tables: sampling q(x_t | x_0), the
 * x0-parameterised reverse step in log space, and the loss terms. It takes
 * the network's logits, not the network.
 */
export class D3pmProcess {
  readonly kernel: D3pmKernel;
  readonly K: number;
  /** States: K, or K + 1 with the MASK (index K). */
  readonly S: number;
  readonly T: number;
  readonly schedule: D3pmScheduleKind;
  /** β_1..β_T. */
  readonly betas: Float64Array;
  /** ᾱ_0..ᾱ_T. */
  readonly alphaBar: Float64Array;
  /** Log q(x_{t−1} | x_t, x̃0) for t = 1..T, [T·S, K·S] (row (t − 1)·S + x_t). */
  #table: tf.Tensor2D | undefined;
  /** {@link logConsistency} for t = 1..T, [T·S, K]. */
  #consistent: tf.Tensor2D | undefined;

  /** Builds the schedule; tables are made on first use. */
  constructor(opts: D3pmOptions) {
    this.kernel = opts.kernel;
    this.K = opts.K;
    this.S = numStates(opts.kernel, opts.K);
    this.T = opts.T;
    this.schedule = opts.schedule ?? (opts.kernel === "uniform" ? "linear" : "mi");
    this.betas = d3pmBetas(this.schedule, opts.T, opts.kernel);
    this.alphaBar = cumulativeAlphas(this.betas);
  }

  /** Prior term KL(q(x_T | x_0) ‖ p(x_T)) per variable, nats. */
  get priorKl(): number {
    return priorKl(this.kernel, this.K, this.alphaBar[this.T]);
  }

  /** The state x_T starts from when sampling: MASK, or uniform categories. */
  priorSample(n: number, rng: Rng): Int32Array {
    return this.kernel === "absorbing"
      ? new Int32Array(n).fill(this.K)
      : Int32Array.from({ length: n }, () => rng.int(this.K));
  }

  /** Draws x_t ~ q(x_t | x_0) = Cat(x_0 Q̄_t) for N variables per sample: x0 [B·N], t [B] → [B·N]. */
  qSample(x0: Int32Array, t: Int32Array, rng: Rng): Int32Array {
    const N = x0.length / t.length;
    const out = new Int32Array(x0.length);
    for (let b = 0; b < t.length; b++) {
      const keep = this.alphaBar[t[b]];
      for (let i = b * N; i < (b + 1) * N; i++) {
        if (rng.uniform() < keep) out[i] = x0[i];
        else out[i] = this.kernel === "absorbing" ? this.K : rng.int(this.K);
      }
    }
    return out;
  }

  #tables(): { table: tf.Tensor2D; consistent: tf.Tensor2D } {
    if (!this.#table || !this.#consistent) {
      const { S, K, T } = this;
      const table = new Float32Array(T * S * K * S);
      const consistent = new Float32Array(T * S * K);
      for (let t = 1; t <= T; t++) {
        table.set(
          logPosteriorTable(this.kernel, K, this.alphaBar[t - 1], this.alphaBar[t]),
          (t - 1) * S * K * S,
        );
        consistent.set(logConsistency(this.kernel, K, this.alphaBar[t]), (t - 1) * S * K);
      }
      this.#table = tf.keep(tf.tensor2d(table, [T * S, K * S]));
      this.#consistent = tf.keep(tf.tensor2d(consistent, [T * S, K]));
    }
    return { table: this.#table, consistent: this.#consistent };
  }

  /**
   * log pθ(x_s | x_t) = logsumexp_{x̃0} [log q(x_s | x_t, x̃0) + log p̃θ(x̃0 | x_t)]
   * from the network's logits [M, K] (M variables), the log posterior rows
   * [M, K·S] and consistency rows [M, K] of each variable's (t, x_t).
   * Returns log pθ [M, S] and log p̃θ [M, K].
   */
  reverseLogProbs(
    logits: tf.Tensor2D,
    logPost: tf.Tensor2D,
    consistent: tf.Tensor2D,
  ): { logP: tf.Tensor2D; logX0: tf.Tensor2D } {
    const { K, S } = this;
    const M = logits.shape[0];
    const logX0 = tf.logSoftmax(tf.add(logits, consistent)) as tf.Tensor2D; // [M, K]
    const joint = tf.add(tf.reshape(logPost, [M, K, S]), tf.reshape(logX0, [M, K, 1])); // [M, K, S]
    const logP = tf.logSumExp(joint, 1) as tf.Tensor2D; // [M, S]
    return { logP, logX0 };
  }

  /** Rows of the training tables for each variable: x_t [B·N], t [B] → gathered [B·N, K·S] and [B·N, K]. */
  #rows(xt: Int32Array, t: Int32Array): { logPost: tf.Tensor2D; consistent: tf.Tensor2D } {
    const { table, consistent } = this.#tables();
    const N = xt.length / t.length;
    const idx = new Int32Array(xt.length);
    for (let i = 0; i < xt.length; i++) idx[i] = (t[Math.floor(i / N)] - 1) * this.S + xt[i];
    const at = tf.tensor1d(idx, "int32");
    return { logPost: tf.gather(table, at), consistent: tf.gather(consistent, at) };
  }

  /**
   * The loss terms per sample from the network's logits [B·N, K] on a batch:
   * vb = mean over variables of KL(q(x_{t−1}|x_t,x0) ‖ pθ(x_{t−1}|x_t)) for
   * t ≥ 2 and of −log pθ(x0|x1) at t = 1; ce = mean of −log p̃θ(x0|x_t).
   */
  lossTerms(logits: tf.Tensor2D, batch: D3pmBatch): D3pmLossTerms {
    const { K, S } = this;
    const B = batch.t.length;
    const M = batch.x0.length;
    const N = M / B;
    const { logPost, consistent } = this.#rows(batch.xt, batch.t);
    const { logP, logX0 } = this.reverseLogProbs(logits, logPost, consistent); // [M, S], [M, K]
    const x0OneHot = oneHot(batch.x0, K); // [M, K]
    // The true posterior: the row of log q(x_{t−1} | x_t, x0) at the true x0.
    const logQ = tf.sum(tf.mul(tf.reshape(logPost, [M, K, S]), tf.reshape(x0OneHot, [M, K, 1])), 1); // [M, S]
    const q = tf.exp(logQ);
    // At t = 1 the posterior is the one-hot of x0, so this KL is −log pθ(x0 | x1).
    const vb = tf.sum(tf.mul(q, tf.sub(logQ, logP)), 1); // [M]
    const ce = tf.neg(tf.sum(tf.mul(logX0, x0OneHot), 1)); // [M]
    return {
      vb: tf.mean(tf.reshape(vb, [B, N]), 1) as tf.Tensor1D,
      ce: tf.mean(tf.reshape(ce, [B, N]), 1) as tf.Tensor1D,
    };
  }

  /**
   * One ancestral step from time t to s < t: given the network's logits
   * [M, K] at x_t [M], draws x_s ~ pθ(x_s | x_t) (jumping over the steps in
   * between with Q_{s+1} ⋯ Q_t when s < t − 1). At s = 0 it draws x_0 from
   * p̃θ(x_0 | x_t).
   */
  async step(
    logits: tf.Tensor2D,
    xt: Int32Array,
    t: number,
    s: number,
    rng: Rng,
  ): Promise<Int32Array> {
    const { K, S } = this;
    const post = tf.tensor2d(
      logPosteriorTable(this.kernel, K, this.alphaBar[s], this.alphaBar[t]),
      [S, K * S],
    );
    const cons = tf.tensor2d(logConsistency(this.kernel, K, this.alphaBar[t]), [S, K]);
    const probs = tf.tidy(() => {
      const at = tf.tensor1d(xt, "int32");
      const { logP } = this.reverseLogProbs(logits, tf.gather(post, at), tf.gather(cons, at));
      return tf.exp(logP); // [M, S]
    });
    const p = (await probs.data()) as Float32Array;
    tf.dispose([post, cons, probs]);
    const out = new Int32Array(xt.length);
    for (let i = 0; i < xt.length; i++) out[i] = drawCategorical(p, i * S, S, rng.uniform());
    return out;
  }

  /** Frees the tables. */
  dispose(): void {
    this.#table?.dispose();
    this.#consistent?.dispose();
    this.#table = undefined;
    this.#consistent = undefined;
  }
}

/**
 * D3PM's ancestral sampler as a {@link ReverseProcess}: x is the token tensor
 * [M] (int32), the network function returns logits [M, K] over x0, and each
 * step draws from pθ(x_s | x_t) on `steps` evenly spaced times from T to 0.
 */
export class D3pmAncestral implements ReverseProcess {
  readonly name = "ancestral";
  #times: number[] = [];

  /** The sampler of `process`. */
  constructor(readonly process: D3pmProcess) {}

  /** At most T steps: times round(T·(steps − i)/steps), i = 0 … steps. */
  setSteps(steps: number): number {
    const T = this.process.T;
    const k = Math.min(steps, T);
    this.#times = Array.from({ length: k + 1 }, (_, i) => Math.round(T * (k - i) / k));
    return k;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return tf.tensor(this.process.priorSample(n, rng), shape, "int32");
  }

  async step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): Promise<tf.Tensor> {
    const xt = (await x.data()) as Int32Array;
    const logits = net(x, this.#times[i]) as tf.Tensor2D;
    try {
      const next = await this.process.step(logits, xt, this.#times[i], this.#times[i + 1], rng);
      return tf.tensor(next, x.shape, "int32");
    } finally {
      logits.dispose();
    }
  }

  reset(): void {}
}
