/**
 * Multinomial diffusion (Hoogeboom et al. 2021) for categorical features, as
 * TabDDPM uses it, in log space. A row holds F categorical features as
 * one-hot slices of K_1 … K_F columns side by side ([B, D], D = ΣK_i), and
 * every per-category operation (normalising, softmax, sampling) acts on each
 * feature's slice on its own.
 *
 * Forward: q(x_t | x_{t−1}) = Cat(α_t x_{t−1} + (1 − α_t)/K) and
 * q(x_t | x_0) = Cat(ᾱ_t x_0 + (1 − ᾱ_t)/K), with the α of a Gaussian
 * {@link Schedule}. The network predicts logits of x_0 (x0-parameterisation);
 * p(x_{t−1} | x_t) is the posterior q(x_{t−1} | x_t, x̂_0) at x̂_0 = softmax.
 * It knows no particular network: it takes logits, however they were made.
 *
 * Step indices t are 0-based (index 0 is the paper's t = 1), as in
 * {@link Schedule}. Log-probabilities of zero are clamped to log(1e-30).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import type { Schedule } from "./schedules.ts";

/** The smallest probability represented; log(0) becomes log(1e-30) ≈ −69. */
const TINY = 1e-30;

/** log(max(p, 1e-30)) of a probability tensor (a one-hot, say). */
export function safeLog(p: tf.Tensor): tf.Tensor {
  return tf.log(tf.maximum(p, TINY));
}

/** log(e^a + e^b), stable. */
function logAddExp(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const m = tf.maximum(a, b);
  return tf.add(m, tf.log(tf.add(tf.exp(tf.sub(a, m)), tf.exp(tf.sub(b, m)))));
}

/** Per-sample numbers as a [B, 1] column. */
function column(v: ArrayLike<number>): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(v as ArrayLike<number>), [v.length, 1]);
}

/** A multinomial diffusion over features with `numClasses[i]` categories each. */
export class MultinomialDiffusion {
  /** The schedule whose α_t, ᾱ_t drive the categorical noise. */
  readonly schedule: Schedule;
  /** Categories K_i of each feature, in column order. */
  readonly numClasses: readonly number[];
  /** Width D = ΣK_i of the one-hot rows. */
  readonly dim: number;
  /** log K_i repeated over each feature's columns [D]. */
  readonly #logK: Float32Array;

  /** A process over `schedule` for features of `numClasses` categories (each ≥ 1). */
  constructor(schedule: Schedule, numClasses: readonly number[]) {
    if (numClasses.length === 0 || numClasses.some((k) => !Number.isInteger(k) || k < 1)) {
      throw new Error(
        `multinomial: numClasses must be positive integers, got [${numClasses.join(", ")}]`,
      );
    }
    this.schedule = schedule;
    this.numClasses = [...numClasses];
    this.dim = numClasses.reduce((a, b) => a + b, 0);
    this.#logK = new Float32Array(this.dim);
    let pos = 0;
    for (const k of numClasses) this.#logK.fill(Math.log(k), pos, pos += k);
  }

  /** Number of steps T. */
  get T(): number {
    return this.schedule.T;
  }

  /** ᾱ before step t (1 before the first step). */
  #abarPrev(t: ArrayLike<number>): number[] {
    return Array.from(t, (i) => this.schedule.alphasCumprodPrev[i]);
  }

  /**
   * log(a·x + (1 − a)/K) with x = exp(logX) [B, D] and one mixing weight a
   * per sample: the categorical kernel of every forward marginal.
   */
  mix(logX: tf.Tensor, a: ArrayLike<number>): tf.Tensor {
    return tf.tidy(() => {
      const logA = column(Array.from(a, (v) => Math.log(Math.max(v, TINY))));
      const log1mA = column(Array.from(a, (v) => Math.log(Math.max(1 - v, TINY))));
      const noise = tf.sub(log1mA, tf.tensor2d(this.#logK, [1, this.dim])); // [B, D]
      return logAddExp(tf.add(logX, logA), noise);
    });
  }

  /** log q(x_t | x_{t−1}) as a function of x_{t−1}: log(α_t x + (1 − α_t)/K) [B, D]. */
  qStep(logXPrev: tf.Tensor, t: ArrayLike<number>): tf.Tensor {
    return this.mix(logXPrev, Array.from(t, (i) => this.schedule.alphas[i]));
  }

  /** log q(x_t | x_0) = log(ᾱ_t x_0 + (1 − ᾱ_t)/K) [B, D]. */
  qProbs(logX0: tf.Tensor, t: ArrayLike<number>): tf.Tensor {
    return this.mix(logX0, Array.from(t, (i) => this.schedule.alphasCumprod[i]));
  }

  /** A draw of x_t ~ q(x_t | x_0) as a log one-hot [B, D]. */
  qSample(logX0: tf.Tensor, t: ArrayLike<number>, rng: Rng): tf.Tensor {
    return tf.tidy(() => this.sampleLogOneHot(this.qProbs(logX0, t), rng));
  }

  /**
   * The posterior between two points of a chain, log q(x_s | x_t, x_0) with
   * ᾱ_t = `abar` and ᾱ_s = `abarPrev` per sample, normalised per slice:
   * ∝ q(x_t | x_s) q(x_s | x_0), where q(x_t | x_s) mixes with ᾱ_t/ᾱ_s.
   * With ᾱ_s = 1 (before the first step) it is x_0 itself.
   */
  posteriorBetween(
    logX0: tf.Tensor,
    logXt: tf.Tensor,
    abar: ArrayLike<number>,
    abarPrev: ArrayLike<number>,
  ): tf.Tensor {
    return tf.tidy(() => {
      const step = Array.from(abar, (a, i) => a / abarPrev[i]);
      const unnormed = tf.add(this.mix(logX0, abarPrev), this.mix(logXt, step)); // [B, D]
      return this.normalize(unnormed);
    });
  }

  /** log q(x_{t−1} | x_t, x_0) [B, D], normalised per feature slice. */
  posterior(logX0: tf.Tensor, logXt: tf.Tensor, t: ArrayLike<number>): tf.Tensor {
    return this.posteriorBetween(
      logX0,
      logXt,
      Array.from(t, (i) => this.schedule.alphasCumprod[i]),
      this.#abarPrev(t),
    );
  }

  /**
   * The feature slices of x [B, D] along axis 1. One feature is x itself:
   * tfjs's gradient of a one-piece split concatenates nothing and throws.
   */
  #slices(x: tf.Tensor): tf.Tensor[] {
    return this.numClasses.length === 1 ? [x] : tf.split(x, [...this.numClasses], 1);
  }

  /** Subtracts each feature slice's logsumexp: unnormalised log-weights → log-probabilities [B, D]. */
  normalize(logits: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const parts = this.#slices(logits).map((p) => tf.sub(p, tf.logSumExp(p, 1, true)));
      return parts.length === 1 ? parts[0] : tf.concat(parts, 1);
    });
  }

  /** The x0-parameterisation: log softmax of the network's logits within each slice [B, D]. */
  predictX0(logits: tf.Tensor): tf.Tensor {
    return this.normalize(logits);
  }

  /** log p(x_{t−1} | x_t) = log q(x_{t−1} | x_t, x̂_0 = softmax(logits)) [B, D]. */
  pLogProbs(logits: tf.Tensor, logXt: tf.Tensor, t: ArrayLike<number>): tf.Tensor {
    return tf.tidy(() => this.posterior(this.predictX0(logits), logXt, t));
  }

  /**
   * The per-sample loss [B]: KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t))
   * summed over features for t > 0, and the decoder's −log p(x_0 | x_1) at
   * t = 0 (TabDDPM's L_t without its importance weights).
   */
  perSampleLoss(logits: tf.Tensor, logX0: tf.Tensor, logXt: tf.Tensor, t: Int32Array): tf.Tensor1D {
    return tf.tidy(() => {
      const logTrue = this.posterior(logX0, logXt, t); // [B, D]
      const logModel = this.pLogProbs(logits, logXt, t); // [B, D]
      const kl = tf.sum(tf.mul(tf.exp(logTrue), tf.sub(logTrue, logModel)), 1); // [B]
      const nll = tf.neg(tf.sum(tf.mul(tf.exp(logX0), logModel), 1)); // [B]
      const first = tf.tensor1d(Uint8Array.from(t, (i) => (i === 0 ? 1 : 0)), "bool");
      return tf.where(first, nll, kl) as tf.Tensor1D;
    });
  }

  /** Category indices [B, F] (int32) drawn from log-probabilities [B, D] by Gumbel-max per slice. */
  sampleIndices(logProbs: tf.Tensor, rng: Rng): tf.Tensor2D {
    return tf.tidy(() => {
      const u = tf.randomUniform(logProbs.shape, 0, 1, "float32", rng.seed());
      const gumbel = tf.neg(tf.log(tf.add(tf.neg(tf.log(tf.add(u, TINY))), TINY)));
      const parts = this.#slices(tf.add(logProbs, gumbel));
      return tf.stack(parts.map((p) => tf.argMax(p, 1)), 1) as tf.Tensor2D; // [B, F]
    });
  }

  /** A log one-hot [B, D] drawn from log-probabilities [B, D] (Gumbel-max per slice). */
  sampleLogOneHot(logProbs: tf.Tensor, rng: Rng): tf.Tensor {
    return tf.tidy(() => this.indexToLogOneHot(this.sampleIndices(logProbs, rng)));
  }

  /**
   * Category indices [B, F] → log one-hot [B, D]. The one-hot is made as
   * int32 and cast: the wasm backend's OneHot ignores a float32 dtype.
   */
  indexToLogOneHot(idx: tf.Tensor2D): tf.Tensor {
    return tf.tidy(() => {
      const cols = tf.unstack(tf.cast(idx, "int32"), 1);
      const oneHot = tf.concat(
        cols.map((c, i) => tf.oneHot(c as tf.Tensor1D, this.numClasses[i])),
        1,
      ); // [B, D]
      return safeLog(tf.cast(oneHot, "float32"));
    });
  }

  /** Log one-hot (or any log-probabilities) [B, D] → the most likely index per feature [B, F]. */
  argmaxIndices(logX: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const parts = this.#slices(logX);
      return tf.stack(parts.map((p) => tf.argMax(p, 1)), 1) as tf.Tensor2D;
    });
  }

  /** x_T for sampling: every feature uniform over its categories, as a log one-hot [B, D]. */
  noise(batch: number, rng: Rng): tf.Tensor {
    return tf.tidy(() => this.sampleLogOneHot(tf.zeros([batch, this.dim]), rng));
  }

  /**
   * One reverse step on a (possibly respaced) chain: x_s ~ q(x_s | x_t,
   * x̂_0 = softmax(logits)) with ᾱ_t = `abar`, ᾱ_s = `abarPrev`. At the last
   * step (ᾱ_s = 1) that is a draw from x̂_0 itself.
   */
  step(logits: tf.Tensor, logXt: tf.Tensor, abar: number, abarPrev: number, rng: Rng): tf.Tensor {
    return tf.tidy(() => {
      const B = logXt.shape[0];
      const logP = this.posteriorBetween(
        this.predictX0(logits),
        logXt,
        new Array(B).fill(abar),
        new Array(B).fill(abarPrev),
      );
      return this.sampleLogOneHot(logP, rng);
    });
  }
}
