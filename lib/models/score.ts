/**
 * The class-conditional score model on MNIST: the VE SDE with the cosine
 * noise scale (lib/diffusion/score_sde.ts), denoising score matching, the
 * transformer UNet with cross-attention to the label
 * (lib/network/unet.ts), classifier-free guidance, and the
 * Euler–Maruyama sampler. Also draws its figures: the forward process, one
 * reverse run, and attention maps.
 *
 * σ(1) defaults to 5, not the 1 of Song et al.'s tutorial: with pixels in [−1, 1], x_1 = x_0 + ε
 * still shows the digit, so a sampler started from N(0, 1) begins where
 * training never was (see {@link mnistPriorMismatch}). Measured with 16
 * channels, 250 steps of batch 32 at lr 3e-3, 5 samples per digit (30
 * Euler–Maruyama steps, guidance 3): the classifier read 18% of them as the
 * requested digit at σ(1) = 1 and 68% at σ(1) = 5.
 */
import {
  CHANNELS,
  COUNT,
  NONNEG,
  OPEN_UNIT,
  POSITIVE,
  type TypedConfig,
  typedConfig,
} from "./config.ts";
import * as tf from "@tensorflow/tfjs-core";
import { loadMnist, mnistPixelMoments, mnistToFloat } from "../data/mnist.ts";
import { type NetFn, runReverse } from "../diffusion/reverse.ts";
import { eulerMaruyama, type PriorMismatch, priorMismatch, VeSde } from "../diffusion/score_sde.ts";
import { makeSigmaSampler, SIGMA_SAMPLERS } from "../diffusion/sigma.ts";
import type { Weights } from "../network/layers.ts";
import { UNet } from "../network/unet.ts";
import { Rng } from "../runtime/rng.ts";
import type {
  BatchLoss,
  FigureOptions,
  KeySpec,
  ModelEntry,
  RunConfig,
  SampleOutput,
  SampleRequest,
  SamplingSupport,
  ZooModel,
} from "./model.ts";

/** Configuration keys of the score model (besides the trainer's). */
export const SCORE_KEYS = {
  batch: { default: 64, help: "batch size", range: COUNT },
  sigma_max: {
    default: 5,
    help:
      "σ(1): the cosine noise scale is rescaled to reach it (the tutorial's σ(1) = 1 leaves the digit visible at t = 1)",
    range: POSITIVE,
  },
  eps: {
    default: 1e-3,
    help: "smallest diffusion time in training and sampling",
    range: OPEN_UNIT,
  },
  fourier_scale: {
    default: 30,
    help: "standard deviation of the random Fourier time frequencies",
    range: POSITIVE,
  },
  ch: { default: 32, help: "UNet base channels", range: CHANNELS },
  mults: {
    default: [1, 2, 2],
    help: "UNet channel multiplier per level (28, 14, 7 pixels)",
    range: COUNT,
  },
  attn_res: {
    default: [7],
    help: "image sizes whose levels get a transformer block (the middle always has one)",
    range: COUNT,
  },
  heads: { default: 4, help: "attention heads", range: COUNT },
  label_in_time: {
    default: true,
    help:
      "also add the label embedding to the time embedding (false: the label reaches the network through cross-attention only)",
  },
  context_tokens: {
    default: 4,
    help: "context tokens made from the label for cross-attention",
    range: COUNT,
  },
  label_dropout: {
    default: 0.1,
    help: "fraction of training labels replaced by the null label (classifier-free guidance)",
    range: { min: 0, below: 1 },
  },
  guidance: {
    default: 0,
    help: "default guidance scale w: s = (1 + w)·s_cond − w·s_uncond (0 = unguided)",
    range: NONNEG,
  },
  guidance_rescale: {
    default: 0,
    help:
      "default guidance rescale φ (Lin et al. 2023, 3.4): blend of the guided score rescaled to the conditional one's std",
    range: { min: 0, max: 1 },
  },
  lr_epoch_decay: {
    default: 0.98,
    help:
      "Song et al.'s tutorial schedule: learning rate × max(lr_floor, lr_epoch_decay^epoch) (1 = off)",
    range: { above: 0, max: 1 },
  },
  lr_floor: {
    default: 0.2,
    help: "the smallest factor of that per-epoch decay",
    range: { min: 0, max: 1 },
  },
  sampler: {
    default: "em",
    help: "sampler: em (Euler–Maruyama), or on a Karras σ grid euler, heun, dpmpp2m, dpmpp2m_sde",
    choices: ["em", ...SIGMA_SAMPLERS],
  },
  sample_steps: { default: 500, help: "default Euler–Maruyama steps", range: COUNT },
} as const satisfies Record<string, KeySpec>;

/** The resolved configuration of the model, typed by its keys. */
export type ScoreConfig = TypedConfig<typeof SCORE_KEYS>;

/**
 * Guidance rescale (Lin et al. 2023, section 3.4): the guided output scaled
 * per sample to the standard deviation of the conditional one, blended with
 * the unscaled guided output by φ: φ·g·std(c)/std(g) + (1 − φ)·g.
 */
export function rescaleGuidance(guided: tf.Tensor, cond: tf.Tensor, phi: number): tf.Tensor {
  if (phi === 0) return guided;
  return tf.tidy(() => {
    const axes = Array.from({ length: guided.rank - 1 }, (_, i) => i + 1);
    const std = (v: tf.Tensor) => tf.sqrt(tf.moments(v, axes, true).variance);
    const rescaled = tf.mul(guided, tf.div(std(cond), std(guided)));
    return tf.add(tf.mul(rescaled, phi), tf.mul(guided, 1 - phi));
  });
}

/** Number of digit classes; label {@link NUM_CLASSES} is the null label. */
export const NUM_CLASSES = 10;

/**
 * The tutorial's learning-rate factor after `epoch` full epochs:
 * max(floor, decay^epoch) (PyTorch's `LambdaLR` stepped once per epoch).
 *
 * @example epochLrFactor(10, 0.98, 0.2) // 0.98¹⁰ ≈ 0.817
 */
export function epochLrFactor(epoch: number, decay: number, floor: number): number {
  return Math.max(floor, decay ** epoch);
}

/** The conditional score model on MNIST. */
export class ScoreModel implements ZooModel {
  readonly name = "score";
  /** The resolved configuration. */
  readonly config: ScoreConfig;
  get sampling(): SamplingSupport {
    return {
      samplers: ["em", ...SIGMA_SAMPLERS],
      defaultSampler: this.config.sampler,
      etaSamplers: ["dpmpp2m_sde"],
      churnSamplers: ["euler", "heun"],
      guidance: true,
      classes: 10,
      ownMetrics: [],
    };
  }
  readonly sde: VeSde;
  readonly network: UNet;
  readonly batchSize: number;
  #images: Uint8Array;
  #labels: Uint8Array;
  #n: number;

  /** Builds the model for a resolved configuration (data must be mnist). */
  constructor(raw: RunConfig) {
    const config = (this.config = typedConfig(SCORE_KEYS, raw));
    if (config.data !== "mnist") {
      throw new Error(`model score trains on mnist only, not data=${JSON.stringify(config.data)}`);
    }
    this.sde = new VeSde({ sigmaMax: config.sigma_max, eps: config.eps });
    this.network = new UNet({
      time: "fourier",
      attention: "transformer",
      ch: config.ch,
      mults: config.mults,
      attnRes: config.attn_res,
      heads: config.heads,
      labelInTime: config.label_in_time,
      contextTokens: config.context_tokens,
      fourierScale: config.fourier_scale,
      fourierSeed: config.seed,
      numClasses: NUM_CLASSES,
    });
    this.batchSize = config.batch;
    const { images, labels, n } = loadMnist("train");
    this.#images = images;
    this.#labels = labels;
    this.#n = n;
  }

  /** Fresh network parameters. */
  init(rng: Rng): Weights {
    return this.network.init(rng);
  }

  /** {@link epochLrFactor} of the epoch ⌊step·batch / 60,000⌋ that `step` lies in. */
  lrMultiplier(step: number): number {
    const epoch = Math.floor(step * this.batchSize / this.#n);
    return epochLrFactor(
      epoch,
      this.config.lr_epoch_decay,
      this.config.lr_floor,
    );
  }

  /** DSM on one batch: t ~ U(eps, 1), labels dropped to null with probability label_dropout. */
  loss(w: Weights, rng: Rng, _step: number): BatchLoss {
    const B = this.batchSize;
    const idx = Int32Array.from({ length: B }, () => rng.int(this.#n));
    const drop = this.config.label_dropout;
    const labels = Float32Array.from(
      idx,
      (i) => (rng.uniform() < drop ? NUM_CLASSES : this.#labels[i]),
    );
    const times = this.sde.drawTimes(B, rng);
    const noiseSeed = rng.seed();
    const x0 = tf.tensor4d(mnistToFloat(this.#images, idx), [B, 28, 28, 1]);
    const t = tf.tensor1d(times);
    const noise = tf.randomNormal(x0.shape, 0, 1, "float32", noiseSeed);
    const xt = this.sde.perturb(x0, t, noise); // [B, 28, 28, 1]
    const out = this.network.apply(w, xt, t, tf.tensor1d(labels)); // s_θ·σ(t)
    const perSample = this.sde.dsmPerSample(out, noise); // [B]
    return { loss: tf.mean(perSample) as tf.Scalar, perSample, position: times };
  }

  /**
   * The guided score at (x, t): s = (1 + w)·s(x, t, y) − w·s(x, t, ∅), from
   * one network call on the doubled batch. x [n, 28, 28, 1], labels [n].
   */
  guidedScore(
    w: Weights,
    x: tf.Tensor,
    t: number,
    labels: Float32Array,
    guidance: number,
    rescale = 0,
  ): tf.Tensor {
    return tf.tidy(() => {
      const n = x.shape[0];
      if (guidance === 0) {
        const tt = tf.fill([n], t) as tf.Tensor1D;
        return this.sde.scoreFromOutput(this.network.apply(w, x, tt, tf.tensor1d(labels)), tt);
      }
      const both = tf.concat([tf.tensor1d(labels), tf.fill([n], NUM_CLASSES)]) as tf.Tensor1D; // [2n]
      const t2 = tf.fill([2 * n], t) as tf.Tensor1D;
      const s = this.sde.scoreFromOutput(this.network.apply(w, tf.concat([x, x]), t2, both), t2); // [2n, ...]
      const [cond, uncond] = tf.split(s, 2);
      return rescaleGuidance(
        tf.sub(tf.mul(cond, 1 + guidance), tf.mul(uncond, guidance)),
        cond,
        rescale,
      );
    });
  }

  /**
   * Samples digits with the Euler–Maruyama sampler ("em"). `req.labels`:
   * one label for every sample, one per sample, or none for the digits
   * 0–9 row-wise (sample i gets ⌊10i/n⌋).
   */
  async sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput> {
    const labels = this.#labelsFor(req);
    const sampler = req.sampler ?? this.config.sampler;
    const steps = req.steps ?? (this.config.sample_steps);
    const guidance = req.guidance ?? (this.config.guidance);
    const rescale = req.guidanceRescale ?? (this.config.guidance_rescale);
    const chunk = 256;
    const images = new Float32Array(req.n * 784);
    let nfe = 0;
    for (let start = 0; start < req.n; start += chunk) {
      const m = Math.min(chunk, req.n - start);
      const part = labels.subarray(start, start + m);
      const score: NetFn = (x, t) => this.guidedScore(w, x, t, part, guidance, rescale);
      const costPerCall = guidance === 0 ? 1 : 2;
      const onStep = (i: number) => req.onProgress?.(start * steps + i * m, req.n * steps);
      const r = sampler === "em"
        ? await eulerMaruyama(score, this.sde, [m, 28, 28, 1], rng, { steps, costPerCall, onStep })
        : await runReverse(
          makeSigmaSampler(sampler, this.sde.sigmaModel(), { churn: req.churn, eta: req.eta }),
          score,
          steps,
          [m, 28, 28, 1],
          rng,
          { costPerCall, onStep },
        ).then(({ x, nfe }) => ({ final: x, nfe }));
      images.set((await r.final.data()) as Float32Array, start * 784);
      r.final.dispose();
      nfe = r.nfe;
    }
    return {
      kind: "image",
      images,
      n: req.n,
      height: 28,
      width: 28,
      channels: 1,
      labels: Int32Array.from(labels),
      nfe,
    };
  }

  /** The forward process, one reverse run and attention maps (`score_figures.ts`). */
  async figures(w: Weights, outDir: string, opts: FigureOptions): Promise<string[]> {
    const { scoreFigures } = await import("./score_figures.ts");
    return scoreFigures({ model: this, weights: w }, outDir, opts);
  }

  /** The label of each requested sample (checks sampler and labels). */
  #labelsFor(req: SampleRequest): Float32Array {
    const sampler = req.sampler ?? (this.config.sampler);
    if (!this.sampling.samplers.includes(sampler)) {
      throw new Error(
        `model score: unknown sampler "${sampler}" (${this.sampling.samplers.join(", ")})`,
      );
    }
    const { n, labels } = req;
    if (labels?.some((l) => !Number.isInteger(l) || l < 0 || l >= NUM_CLASSES)) {
      throw new Error(`model score: labels must be digits 0–9, got ${JSON.stringify(labels)}`);
    }
    if (!labels) return Float32Array.from({ length: n }, (_, i) => Math.floor(i * NUM_CLASSES / n));
    if (labels.length === 1) return new Float32Array(n).fill(labels[0]);
    if (labels.length !== n) {
      throw new Error(`model score: ${labels.length} labels for ${n} samples`);
    }
    return Float32Array.from(labels);
  }

  /** Nothing to free: the MNIST arrays live in JavaScript memory. */
  dispose(): void {}
}

/** How far N(0, σ(1)² I) is from the MNIST marginal at t = 1 (see {@link priorMismatch}). */
export function mnistPriorMismatch(sigmaMax: number): PriorMismatch {
  const { mean, variance } = mnistPixelMoments();
  return priorMismatch(mean, variance, sigmaMax);
}

/** The registry entry of the score model. */
export const SCORE_ENTRY: ModelEntry = {
  description:
    "conditional score SDE (VE, cosine σ) with a transformer UNet, classifier-free guidance, Euler–Maruyama",
  keys: SCORE_KEYS,
  data: "mnist",
  create: (config) => Promise.resolve(new ScoreModel(config)),
};
