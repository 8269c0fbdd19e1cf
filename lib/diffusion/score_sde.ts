/**
 * The variance-exploding score SDE of the conditional score model: the
 * forward process x_t = x_0 + σ(t)·ε with the cosine-shaped noise scale
 * σ(t) = sqrt(1 − cos²((t + 0.008)/1.008 · π/2)) (= sin of that angle), the
 * denoising score-matching loss, and the Euler–Maruyama sampler of the
 * reverse-time SDE.
 *
 * The process knows nothing about a network: the loss takes the raw network
 * output, and the sampler takes any `(x_t, t) → score` function.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import { type NetFn, type ReverseProcess, runReverse } from "./reverse.ts";
import type { SigmaModel } from "./sigma.ts";

/** Options of {@link VeSde}. */
export interface VeSdeOptions {
  /**
   * σ at t = 1: the schedule is rescaled to σ(t)·sigmaMax/σ(1). Song et al.'s
   * schedule has σ(1) = 1. @default 1
   */
  sigmaMax?: number;
  /** Smallest diffusion time used in training and sampling. @default 1e-3 */
  eps?: number;
}

/** The angle (t + 0.008)/1.008 · π/2 of the cosine schedule. */
function angle(t: number): number {
  return (t + 0.008) / 1.008 * Math.PI / 2;
}

/**
 * The VE SDE dx = g(t) dw with marginal x_t | x_0 ~ N(x_0, σ(t)² I).
 *
 * For x_t = x_0 + σ(t)ε the forward SDE has zero drift and
 * g(t)² = d[σ(t)²]/dt, so that the variance it accumulates from 0 to t is
 * σ(t)² − σ(0)². With σ(t) = c·sin(a(t)), a(t) = (t + 0.008)/1.008 · π/2 and
 * c = sigmaMax (σ(1) = sin(π/2) = 1 before scaling):
 *
 *   g(t)² = c² · 2 sin a cos a · a'(t) = c² · sin(2a(t)) · π / (2 · 1.008),
 *
 * which vanishes at t = 1 (a = π/2): the schedule flattens out there.
 */
export class VeSde {
  /** σ(1). */
  readonly sigmaMax: number;
  /** Smallest diffusion time. */
  readonly eps: number;

  /** A process with the given σ(1) and smallest time. */
  constructor(opts: VeSdeOptions = {}) {
    this.sigmaMax = opts.sigmaMax ?? 1;
    this.eps = opts.eps ?? 1e-3;
    if (!(this.sigmaMax > 0)) {
      throw new Error(`VeSde: sigmaMax must be positive, got ${this.sigmaMax}`);
    }
    if (!(this.eps > 0 && this.eps < 1)) {
      throw new Error(`VeSde: eps must lie in (0, 1), got ${this.eps}`);
    }
  }

  /** σ(t), the marginal standard deviation of x_t − x_0. */
  sigma(t: number): number {
    return this.sigmaMax * Math.sin(angle(t));
  }

  /** The time of σ: the inverse of {@link sigma} on [0, 1], clamped there. */
  timeOf(sigma: number): number {
    const a = Math.asin(Math.min(1, Math.max(0, sigma / this.sigmaMax)));
    return Math.min(1, Math.max(0, a * 2 * 1.008 / Math.PI - 0.008));
  }

  /**
   * The process as a σ-space denoiser for the σ-space samplers (Euler, Heun,
   * DPM++): x_t = x0 + σ(t)ε is already σ-space, and Tweedie's formula gives
   * D(x; σ) = x + σ²·s(x, t(σ)), where `net` returns the score s.
   */
  sigmaModel(): SigmaModel {
    return {
      sigmaMin: this.sigma(this.eps),
      sigmaMax: this.sigmaMax,
      denoise: (x, sigma, score) =>
        tf.tidy(() => tf.add(x, tf.mul(score(x, this.timeOf(sigma)), sigma * sigma))),
    };
  }

  /** g(t)² = d[σ(t)²]/dt (see the class comment). */
  g2(t: number): number {
    return this.sigmaMax ** 2 * Math.sin(2 * angle(t)) * Math.PI / (2 * 1.008);
  }

  /** σ(t) of a batch of times: t [B] → [B]. */
  sigmaOf(t: tf.Tensor1D): tf.Tensor1D {
    return tf.tidy(() =>
      tf.mul(tf.sin(tf.mul(tf.add(t, 0.008), Math.PI / 2 / 1.008)), this.sigmaMax)
    );
  }

  /** Diffusion times drawn from U(eps, 1). */
  drawTimes(n: number, rng: Rng): Float32Array {
    return Float32Array.from({ length: n }, () => this.eps + (1 - this.eps) * rng.uniform());
  }

  /** x_t = x_0 + σ(t)·ε: x0 and noise [B, ...], t [B] → [B, ...]. */
  perturb(x0: tf.Tensor, t: tf.Tensor1D, noise: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x0, tf.mul(noise, this.#perSample(this.sigmaOf(t), x0.rank))));
  }

  /**
   * Denoising score matching per sample: Σ_pixels (s_θ·σ(t) + ε)², where the
   * score is s_θ = out/σ(t), so s_θ·σ(t) is the raw network output `out`.
   * out and noise [B, ...] → [B].
   */
  dsmPerSample(out: tf.Tensor, noise: tf.Tensor): tf.Tensor1D {
    return tf.tidy(() => {
      const axes = Array.from({ length: out.rank - 1 }, (_, i) => i + 1);
      return tf.sum(tf.square(tf.add(out, noise)), axes) as tf.Tensor1D;
    });
  }

  /** The score s_θ = out/σ(t) from a raw network output: out [B, ...], t [B] → [B, ...]. */
  scoreFromOutput(out: tf.Tensor, t: tf.Tensor1D): tf.Tensor {
    return tf.tidy(() => tf.div(out, this.#perSample(this.sigmaOf(t), out.rank)));
  }

  /** [B] → [B, 1, …, 1] for broadcasting against a rank-`rank` batch. */
  #perSample(v: tf.Tensor1D, rank: number): tf.Tensor {
    return tf.reshape(v, [-1, ...new Array(rank - 1).fill(1)]);
  }
}

/**
 * The Euler–Maruyama sampler of the reverse-time SDE, as a
 * {@link ReverseProcess} whose network function returns the score. For the
 * forward SDE dx = g(t) dw (zero drift), the reverse-time SDE is
 *
 *   dx = −g(t)² ∇ₓ log p_t(x) dt + g(t) dw̄   (dt < 0),
 *
 * so one step from t to t − Δt (Δt > 0) is
 *
 *   x_{t−Δt} = x_t + g(t)²·s(x_t, t)·Δt + g(t)·sqrt(Δt)·z,   z ~ N(0, I).
 *
 * Song et al.'s tutorial code halves the drift (g²·s·Δt/2); that is the drift
 * of the probability-flow ODE, which carries no noise term. Halving the drift
 * while keeping the SDE's noise leaves excess variance (the Gaussian test in
 * tests/diffusion/score_sde_test.ts shows it), so the full drift is used here.
 *
 * Starts from x_1 ~ N(0, σ(1)² I); times run linearly from 1 to eps (the
 * score is evaluated `steps` times), and the last step returns its mean.
 */
export class EulerMaruyama implements ReverseProcess {
  readonly name = "em";
  #dt = 0;
  #steps = 0;

  /** The sampler of `sde`. */
  constructor(readonly sde: VeSde) {}

  setSteps(steps: number): number {
    if (!Number.isInteger(steps) || steps < 2) {
      throw new Error(`Euler–Maruyama: steps must be an integer ≥ 2, got ${steps}`);
    }
    this.#steps = steps;
    this.#dt = (1 - this.sde.eps) / (steps - 1);
    return steps;
  }

  /** The diffusion time at position i. */
  time(i: number): number {
    return 1 - i * this.#dt;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    return tf.tidy(() =>
      tf.mul(tf.randomNormal(shape, 0, 1, "float32", rng.seed()), this.sde.sigmaMax)
    );
  }

  step(i: number, x: tf.Tensor, score: NetFn, rng: Rng): tf.Tensor {
    const t = this.time(i);
    const g2 = this.sde.g2(t);
    const dt = this.#dt;
    return tf.tidy(() => {
      const mean = tf.add(x, tf.mul(score(x, t), g2 * dt));
      if (i === this.#steps - 1) return mean;
      const z = tf.randomNormal(x.shape, 0, 1, "float32", rng.seed());
      return tf.add(mean, tf.mul(z, Math.sqrt(g2 * dt)));
    });
  }

  reset(): void {}
}

/** Options of {@link eulerMaruyama}. */
export interface EulerMaruyamaOptions {
  /** Number of steps from t = 1 to t = eps. @default 500 */
  steps?: number;
  /** How many intermediate images to keep, evenly spaced over the run (0 = none). @default 0 */
  keep?: number;
  /** Called after each step with the steps done. */
  onStep?: (done: number) => void;
  /** Network evaluations one score call costs per sample (2 when guided as one doubled batch). @default 1 */
  costPerCall?: number;
}

/** The result of {@link eulerMaruyama}. */
export interface EulerMaruyamaResult {
  /** The final samples [n, ...] (the mean of the last step, without its noise). */
  final: tf.Tensor;
  /** Snapshots of x [n·…] before the steps listed in {@link times}. */
  intermediates: Float32Array[];
  /** The diffusion time of each snapshot. */
  times: number[];
  /** Network evaluations per sample. */
  nfe: number;
}

/** Runs {@link EulerMaruyama} from its prior, keeping `keep` evenly spaced snapshots. */
export async function eulerMaruyama(
  score: NetFn,
  sde: VeSde,
  shape: number[],
  rng: Rng,
  opts: EulerMaruyamaOptions = {},
): Promise<EulerMaruyamaResult> {
  const steps = opts.steps ?? 500;
  const em = new EulerMaruyama(sde);
  em.setSteps(steps); // checks steps before the prior is drawn
  const keep = opts.keep ?? 0;
  const keepAt = new Set(
    Array.from({ length: keep }, (_, k) => Math.round(k * (steps - 1) / Math.max(1, keep - 1))),
  );
  const intermediates: Float32Array[] = [];
  const times: number[] = [];
  const snapshot = async (i: number, x: tf.Tensor) => {
    if (!keepAt.has(i)) return;
    intermediates.push((await x.data()) as Float32Array);
    times.push(em.time(i));
  };
  const start = em.prior(shape, rng);
  await snapshot(0, start);
  const r = await runReverse(em, score, steps, shape, rng, {
    start,
    costPerCall: opts.costPerCall,
    onStep: async (done, _total, x) => {
      if (done < steps) await snapshot(done, x);
      opts.onStep?.(done);
    },
  });
  return { final: r.x, intermediates, times, nfe: r.nfe };
}

/** How far the sampler's prior is from the true marginal at t = 1, summed over dimensions. */
export interface PriorMismatch {
  /** Σ_i KL(N(m_i, v_i + σ²) ‖ N(0, σ²)) in nats. */
  kl: number;
  /** 2-Wasserstein distance between the two diagonal Gaussians. */
  w2: number;
  /** KL per dimension. */
  klPerDim: number;
}

/**
 * The gap between the prior N(0, σ(1)² I) the sampler starts from and the
 * marginal of x_1 = x_0 + σ(1)ε, approximated per dimension by the Gaussian
 * with its moments, N(mean_i, var_i + σ(1)²) where mean and var are the
 * data's per-dimension moments:
 *
 *   KL_i = ½[(var_i + mean_i²)/σ² − ln(1 + var_i/σ²)],
 *   W2² = Σ_i mean_i² + (sqrt(var_i + σ²) − σ)².
 *
 * With σ(1) = 1 and MNIST in [−1, 1] (mean pixel ≈ −0.74) the gap is large:
 * the sampler starts far from where the forward process ends.
 */
export function priorMismatch(
  mean: Float64Array,
  variance: Float64Array,
  sigmaMax: number,
): PriorMismatch {
  const s2 = sigmaMax * sigmaMax;
  let kl = 0;
  let w2sq = 0;
  for (let i = 0; i < mean.length; i++) {
    kl += 0.5 * ((variance[i] + mean[i] ** 2) / s2 - Math.log1p(variance[i] / s2));
    w2sq += mean[i] ** 2 + (Math.sqrt(variance[i] + s2) - sigmaMax) ** 2;
  }
  return { kl, w2: Math.sqrt(w2sq), klPerDim: kl / mean.length };
}
