/**
 * D3PM (Austin et al. 2021) on MNIST quantised to K grey levels (K = 2 is
 * binarised MNIST): uniform or absorbing-state transition kernels, the
 * x0-parameterised reverse process, the hybrid loss L_λ = L_vb + λ·L_simple,
 * ancestral sampling, and the test-set negative ELBO in bits per pixel.
 *
 * The network ({@link D3pmNet}) is a small two-level UNet: x_t goes in
 * one-hot over the S states (S = K, or K + 1 with the absorbing kernel's
 * MASK), and K logits of p̃θ(x0 | x_t) come out per pixel.
 */
import { CHANNELS, COUNT, COUNT0, NONNEG, type TypedConfig, typedConfig } from "./config.ts";
import * as tf from "@tensorflow/tfjs-core";
import { loadMnist } from "../data/mnist.ts";
import { runReverse } from "../diffusion/reverse.ts";
import {
  D3PM_KERNELS,
  D3PM_SCHEDULES,
  D3pmAncestral,
  type D3pmBatch,
  D3pmProcess,
  oneHot,
} from "../diffusion/d3pm.ts";
import {
  conv,
  dense,
  groupNormSilu,
  initConv,
  initDense,
  initNorm,
  initResBlock,
  type Network,
  resBlock,
  silu,
  sinusoidalEmbedding,
  upsample2x,
  type Weights,
} from "../network/layers.ts";
import type { Rng } from "../runtime/rng.ts";
import type {
  BatchLoss,
  KeySpec,
  MetricResult,
  ModelEntry,
  RunConfig,
  SampleOutput,
  SampleRequest,
  SamplingSupport,
  ZooModel,
} from "./model.ts";

/** Pixels of an MNIST image. */
const PIXELS = 28 * 28;

/** Grey levels the data can be quantised to. */
export const D3PM_LEVELS: readonly number[] = [2, 4, 8, 16];

/** Configuration keys of the D3PM model (besides the trainer's). */
export const D3PM_KEYS = {
  kernel: { default: "absorbing", help: "transition kernel", choices: D3PM_KERNELS },
  levels: {
    default: 2,
    help: "grey levels K of the quantised MNIST: 2 (binarised), 4, 8 or 16",
    range: { int: true, min: 2, max: 16 },
  },
  T: {
    default: 1000,
    help: "diffusion steps (training cost does not depend on T; sampling does)",
    range: COUNT,
  },
  schedule: {
    default: "auto",
    help: "β schedule (auto = linear for uniform, mi = 1/(T−t+1) for absorbing)",
    choices: ["auto", ...D3PM_SCHEDULES],
  },
  lambda: {
    default: 0.001,
    help: "λ, the weight of the auxiliary cross-entropy L_simple in L_vb + λ·L_simple",
    range: NONNEG,
  },
  batch: { default: 32, help: "batch size", range: COUNT },
  ch: {
    default: 16,
    help: "base channels of the x0 predictor (16: about 1 s per step on wasm)",
    range: CHANNELS,
  },
  sample_steps: {
    default: 0,
    help: "default sampling steps (0 = T; fewer jump with Q_{s+1}⋯Q_t)",
    range: COUNT0,
  },
  eval_t: {
    default: 8,
    help: "timesteps per test image in the bpd estimate: t = 1 and a stratified draw from 2..T",
    range: COUNT,
  },
} as const satisfies Record<string, KeySpec>;

/** The resolved configuration of the model, typed by its keys. */
export type D3pmConfig = TypedConfig<typeof D3PM_KEYS>;

/** Quantises 0..255 pixels to K levels: level = ⌊pixel·K/256⌋. */
export function quantise(pixels: Uint8Array, K: number): Int32Array {
  return Int32Array.from(pixels, (v) => Math.floor(v * K / 256));
}

/** Decodes levels 0..K−1 to grey values in [−1, 1]. */
export function decodeLevels(levels: Int32Array, K: number): Float32Array {
  return Float32Array.from(levels, (v) => v / (K - 1) * 2 - 1);
}

/**
 * The timesteps and weights of the bpd estimate for one image: t = 1 with
 * weight 1, then one t drawn uniformly from each of m − 1 near-equal strata of
 * 2..T, weighted by the stratum's size, so Σ weight·L_{t−1} is an unbiased
 * estimate of Σ_{t=1}^T L_{t−1}. With m ≥ T it is the exact sum.
 */
export function stratifiedTimesteps(
  T: number,
  m: number,
  rng: Rng,
): { t: number[]; weight: number[] } {
  const t = [1];
  const weight = [1];
  const strata = Math.min(Math.max(m - 1, 1), T - 1);
  for (let j = 0; j < strata; j++) {
    const lo = 2 + Math.floor(j * (T - 1) / strata);
    const hi = 2 + Math.floor((j + 1) * (T - 1) / strata); // exclusive
    if (hi <= lo) continue;
    t.push(lo + rng.int(hi - lo));
    weight.push(hi - lo);
  }
  return { t, weight };
}

/** Configuration of {@link D3pmNet}. */
export interface D3pmNetConfig {
  /** Input channels (states of x_t, one-hot). */
  states: number;
  /** Output channels (logits of the K categories of x0). */
  categories: number;
  /** Base channel count. @default 32 */
  ch?: number;
  /** Time-embedding width. @default 128 */
  temb?: number;
}

/**
 * The x0 predictor: a two-level UNet for 28×28 images (ResBlocks with
 * GroupNorm, SiLU, 3×3 convs and the time embedding added; stride-2 conv
 * down, nearest up, skip concatenation) with `states` channels in and
 * `categories` out. Upsampling duplicates by concatenation and reshape, whose
 * gradient is a slice, on every backend.
 */
export class D3pmNet implements Network {
  readonly config: Required<D3pmNetConfig>;

  /** Builds the network description; parameters come from {@link init}. */
  constructor(config: D3pmNetConfig) {
    this.config = { ch: 32, temb: 128, ...config };
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { states, categories, ch, temb } = this.config;
    const w: Weights = {};
    initDense(w, "tmlp1", temb, temb, rng);
    initDense(w, "tmlp2", temb, temb, rng);
    initConv(w, "inc", 3, states, ch, rng);
    initResBlock(w, "down0", ch, ch, temb, rng);
    initConv(w, "ds0", 3, ch, ch, rng);
    initResBlock(w, "down1", ch, 2 * ch, temb, rng);
    initConv(w, "ds1", 3, 2 * ch, 2 * ch, rng);
    initResBlock(w, "mid1", 2 * ch, 2 * ch, temb, rng);
    initResBlock(w, "mid2", 2 * ch, 2 * ch, temb, rng);
    initResBlock(w, "up1", 4 * ch, 2 * ch, temb, rng);
    initResBlock(w, "up0", 3 * ch, ch, temb, rng);
    initNorm(w, "outn", ch);
    initConv(w, "outc", 3, ch, categories, rng);
    return w;
  }

  /** x [B, 28, 28, states], t [B] → logits [B, 28, 28, categories]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D): tf.Tensor {
    const e = dense(w, "tmlp2", silu(dense(w, "tmlp1", sinusoidalEmbedding(t, this.config.temb)))); // [B, temb]
    const h0 = conv(w, "inc", x as tf.Tensor4D); // [B, 28, 28, ch]
    const h1 = resBlock(w, "down0", h0, e); // [B, 28, 28, ch]
    const h2 = resBlock(w, "down1", conv(w, "ds0", h1, 2), e); // [B, 14, 14, 2ch]
    let h = conv(w, "ds1", h2, 2); // [B, 7, 7, 2ch]
    h = resBlock(w, "mid2", resBlock(w, "mid1", h, e), e);
    h = resBlock(w, "up1", tf.concat([upsample2x(h), h2], 3), e); // [B, 14, 14, 2ch]
    h = resBlock(w, "up0", tf.concat([upsample2x(h), h1], 3), e); // [B, 28, 28, ch]
    return conv(w, "outc", groupNormSilu(w, "outn", h)); // [B, 28, 28, categories]
  }
}

/** A D3PM on quantised MNIST. */
export class D3pm implements ZooModel {
  readonly name = "d3pm";
  /** The resolved configuration. */
  readonly config: D3pmConfig;
  readonly sampling: SamplingSupport = {
    samplers: ["ancestral"],
    defaultSampler: "ancestral",
    etaSamplers: [],
    churnSamplers: [],
    guidance: false,
    classes: 0,
    ownMetrics: ["bpd"],
  };
  readonly process: D3pmProcess;
  readonly network: D3pmNet;
  readonly batchSize: number;
  readonly lambda: number;
  #train: { images: Uint8Array; n: number } | undefined;

  /** Builds the model for a resolved configuration. */
  constructor(raw: RunConfig) {
    const config = (this.config = typedConfig(D3PM_KEYS, raw));
    const K = config.levels;
    if (!D3PM_LEVELS.includes(K)) {
      throw new Error(`--set levels: must be one of ${D3PM_LEVELS.join(", ")}, got ${K}`);
    }
    const T = config.T;
    if (!Number.isInteger(T) || T < 2) throw new Error(`--set T: must be an integer ≥ 2, got ${T}`);
    const schedule = config.schedule === "auto" ? undefined : config.schedule;
    this.process = new D3pmProcess({ kernel: config.kernel, K, T, schedule });
    this.network = new D3pmNet({ states: this.process.S, categories: K, ch: config.ch });
    this.batchSize = config.batch;
    this.lambda = config.lambda;
  }

  /** Fresh network parameters. */
  init(rng: Rng): Weights {
    return this.network.init(rng);
  }

  /** Logits of p̃θ(x0 | x_t): x_t [B·784] states, t [B] → [B·784, K]. */
  logits(w: Weights, xt: Int32Array, t: Int32Array): tf.Tensor2D {
    const { S, K } = this.process;
    const B = t.length;
    const x = tf.reshape(oneHot(xt, S), [B, 28, 28, S]); // [B, 28, 28, S]
    const out = this.network.apply(w, x, tf.tensor1d(Float32Array.from(t))); // [B, 28, 28, K]
    return tf.reshape(out, [B * PIXELS, K]);
  }

  /** A batch of quantised images x0 [B·784] with their x_t at the given timesteps. */
  #batch(pixels: Uint8Array, t: Int32Array, rng: Rng): D3pmBatch {
    const x0 = quantise(pixels, this.process.K);
    return { x0, xt: this.process.qSample(x0, t, rng), t };
  }

  /** L_λ = L_vb + λ·L_simple per sample at a uniform t in 1..T, on a batch of training images. */
  loss(w: Weights, rng: Rng, _step: number): BatchLoss {
    this.#train ??= loadMnist("train");
    const { images, n } = this.#train;
    const B = this.batchSize;
    const T = this.process.T;
    const pixels = new Uint8Array(B * PIXELS);
    for (let b = 0; b < B; b++) {
      const i = rng.int(n);
      pixels.set(images.subarray(i * PIXELS, (i + 1) * PIXELS), b * PIXELS);
    }
    const t = Int32Array.from({ length: B }, () => 1 + rng.int(T));
    const batch = this.#batch(pixels, t, rng);
    const { vb, ce } = this.process.lossTerms(this.logits(w, batch.xt, t), batch); // [B], [B]
    const perSample = tf.add(vb, tf.mul(ce, this.lambda)) as tf.Tensor1D;
    const position = Float32Array.from(t, (v) => (v - 1) / T);
    return { loss: tf.mean(perSample) as tf.Scalar, perSample, position };
  }

  /** Ancestral sampling from x_T (all MASK, or uniform levels), decoded to [−1, 1] grey. */
  async sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput> {
    const T = this.process.T;
    const steps = req.steps ?? ((this.config.sample_steps) || T);
    const sampler = new D3pmAncestral(this.process);
    const chunk = 64;
    const images = new Float32Array(req.n * PIXELS);
    let nfe = 0;
    for (let start = 0; start < req.n; start += chunk) {
      const m = Math.min(chunk, req.n - start);
      const r = await runReverse(
        sampler,
        (x, t) =>
          tf.tidy(() => this.logits(w, x.dataSync() as Int32Array, new Int32Array(m).fill(t))),
        steps,
        [m * PIXELS],
        rng,
        { onStep: (i, total) => req.onProgress?.(start * total + i * m, req.n * total) },
      );
      images.set(decodeLevels((await r.x.data()) as Int32Array, this.process.K), start * PIXELS);
      r.x.dispose();
      nfe = r.nfe;
    }
    return { kind: "image", images, n: req.n, height: 28, width: 28, channels: 1, nfe };
  }

  /**
   * `bpd`: the negative ELBO in bits per pixel on the first n MNIST test
   * images, −ELBO = KL(q(x_T|x0) ‖ p(x_T)) + Σ_{t=1}^T L_{t−1}. The sum over t
   * is estimated without bias per image from `eval_t` timesteps (t = 1 exactly,
   * the rest stratified over 2..T, see {@link stratifiedTimesteps}) and one
   * x_t per timestep; spread is the standard error over images, so it covers
   * both the image sample and the Monte Carlo noise.
   */
  async evaluate(
    w: Weights,
    metric: string,
    n: number,
    rng: Rng,
  ): Promise<MetricResult | undefined> {
    if (metric !== "bpd") return undefined;
    const test = loadMnist("test");
    const count = Math.min(n, test.n);
    const m = this.config.eval_t;
    const rows: { image: number; t: number; weight: number }[] = [];
    for (let image = 0; image < count; image++) {
      const { t, weight } = stratifiedTimesteps(this.process.T, m, rng);
      t.forEach((tt, j) => rows.push({ image, t: tt, weight: weight[j] }));
    }
    const nats = new Float64Array(count).fill(this.process.priorKl * PIXELS);
    const chunk = 64;
    for (let start = 0; start < rows.length; start += chunk) {
      const part = rows.slice(start, start + chunk);
      const pixels = new Uint8Array(part.length * PIXELS);
      part.forEach((r, b) =>
        pixels.set(test.images.subarray(r.image * PIXELS, (r.image + 1) * PIXELS), b * PIXELS)
      );
      const t = Int32Array.from(part, (r) => r.t);
      const batch = this.#batch(pixels, t, rng);
      const vb = tf.tidy(() => this.process.lossTerms(this.logits(w, batch.xt, t), batch).vb); // [b] nats/pixel
      const v = await vb.data();
      vb.dispose();
      part.forEach((r, b) => (nats[r.image] += r.weight * v[b] * PIXELS));
    }
    const bits = Array.from(nats, (v) => v / (PIXELS * Math.LN2));
    const mean = bits.reduce((a, b) => a + b, 0) / count;
    const variance = bits.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(count - 1, 1);
    return {
      metric: "bpd",
      value: mean,
      n: count,
      spread: Math.sqrt(variance / count),
      priorBpd: this.process.priorKl / Math.LN2,
      timestepsPerImage: rows.length / count,
    };
  }

  /** Frees the process tables. */
  dispose(): void {
    this.process.dispose();
  }
}

/** The registry entry of the D3PM model. */
export const D3PM_ENTRY: ModelEntry = {
  description:
    "D3PM: discrete diffusion on K-level MNIST, uniform or absorbing kernel, L_vb + λ·CE, bpd",
  keys: D3PM_KEYS,
  data: "mnist",
  create: (config) => Promise.resolve(new D3pm(config)),
};
