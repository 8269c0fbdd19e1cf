/**
 * DDPM (Ho et al. 2020) with the improvements a schedule sweep compares:
 * linear / cosine / sigmoid schedules, ε / x0 / v prediction, min-SNR-γ
 * weighting, uniform or loss-aware timesteps, and the DDPM, DDIM and
 * DPM-Solver++(2M) samplers. Trains on 2-D toy sets (MLPDiffusion or
 * ResNetDiffusion) and MNIST (the UNet).
 */
import { CHANNELS, COUNT, COUNT0, POSITIVE } from "./config.ts";
import * as tf from "@tensorflow/tfjs-core";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { sampleToy, TOY_DATASETS } from "../data/toy2d.ts";
import { GaussianDiffusion, type Objective, type Weighting } from "../diffusion/gaussian.ts";
import { makeSampler, sampleLoop, SAMPLERS } from "../diffusion/samplers.ts";
import { makeSchedule, type ScheduleKind } from "../diffusion/schedules.ts";
import {
  makeTimestepSampler,
  type TimestepSampler,
  type TimestepState,
} from "../diffusion/timesteps.ts";
import type { Network, Weights } from "../network/layers.ts";
import { MLPDiffusion, ResNetDiffusion } from "../network/mlp.ts";
import { UNet } from "../network/unet.ts";
import { Rng } from "../runtime/rng.ts";
import type {
  BatchLoss,
  KeySpec,
  ModelEntry,
  RunConfig,
  SampleOutput,
  SampleRequest,
  SamplingSupport,
  ZooModel,
} from "./model.ts";
import { gaussianSampling } from "./model.ts";

/** Configuration keys of the DDPM model (besides the trainer's). */
export const DDPM_KEYS: Record<string, KeySpec> = {
  schedule: { default: "linear", help: "noise schedule", choices: ["linear", "cosine", "sigmoid"] },
  T: { default: 1000, help: "diffusion steps", range: COUNT },
  objective: { default: "eps", help: "what the network predicts", choices: ["eps", "x0", "v"] },
  weighting: {
    default: "none",
    help: "loss weighting over timesteps",
    choices: ["none", "minsnr"],
  },
  gamma: { default: 5, help: "γ of min-SNR-γ weighting", range: POSITIVE },
  timesteps: {
    default: "uniform",
    help: "training timestep sampling",
    choices: ["uniform", "loss-aware"],
  },
  batch: { default: 0, help: "batch size (0 = 256 for 2-D data, 64 for MNIST)", range: COUNT0 },
  network: {
    default: "auto",
    help: "denoiser (auto = mlp for 2-D data, unet for images)",
    choices: ["auto", "mlp", "resnet", "unet"],
  },
  ch: { default: 32, help: "UNet base channels", range: CHANNELS },
  train_size: {
    default: 50000,
    help: "2-D data: size of the training set drawn from the seed",
    range: COUNT,
  },
  sampler: { default: "ddpm", help: "default sampler", choices: SAMPLERS },
  sample_steps: { default: 0, help: "default sampling steps (0 = T)", range: COUNT0 },
  spacing: {
    default: "leading",
    help:
      "timestep spacing for fewer steps: linspace, leading, trailing, or section counts like 10,10,5",
  },
};

/** The data a DDPM run trains on, as batches. */
interface DataSource {
  kind: "points" | "image";
  /** Shape of one sample. */
  shape: number[];
  /** A batch [B, ...shape] drawn with `rng`. */
  batch(rng: Rng, size: number): tf.Tensor;
  dispose(): void;
}

function pointsSource(name: string, seed: number, n: number): DataSource {
  const data = sampleToy(name, n, new Rng(seed ^ 0x5eed));
  const all = tf.tensor2d(data, [n, 2]);
  return {
    kind: "points",
    shape: [2],
    batch: (rng, size) => {
      const idx = new Int32Array(size);
      for (let i = 0; i < size; i++) idx[i] = rng.int(n);
      return tf.tidy(() => tf.gather(all, tf.tensor1d(idx, "int32")));
    },
    dispose: () => all.dispose(),
  };
}

function mnistSource(): DataSource {
  const { images, n } = loadMnist("train");
  return {
    kind: "image",
    shape: [28, 28, 1],
    batch: (rng, size) => {
      const idx = new Int32Array(size);
      for (let i = 0; i < size; i++) idx[i] = rng.int(n);
      return tf.tensor4d(mnistToFloat(images, idx), [size, 28, 28, 1]);
    },
    dispose: () => {},
  };
}

/** A DDPM over one dataset. */
export class Ddpm implements ZooModel {
  readonly name = "ddpm";
  get sampling(): SamplingSupport {
    return gaussianSampling(this.config.sampler as string);
  }
  readonly process: GaussianDiffusion;
  readonly network: Network;
  readonly data: DataSource;
  readonly batchSize: number;
  #timesteps: TimestepSampler;
  #lastT: Int32Array = new Int32Array(0);

  /** Builds the model for a resolved configuration. */
  constructor(readonly config: RunConfig) {
    const T = config.T as number;
    this.process = new GaussianDiffusion(
      makeSchedule({ kind: config.schedule as ScheduleKind, T }),
      config.objective as Objective,
    );
    const dataName = String(config.data);
    this.data = dataName === "mnist"
      ? mnistSource()
      : pointsSource(dataName, config.seed as number, config.train_size as number);
    const net = config.network === "auto"
      ? (this.data.kind === "image" ? "unet" : "mlp")
      : config.network;
    if ((net === "unet") !== (this.data.kind === "image")) {
      throw new Error(`network=${net} does not fit ${dataName} (${this.data.kind} data)`);
    }
    const dIn = this.data.shape[0];
    this.network = net === "unet"
      ? new UNet({ ch: config.ch as number })
      : net === "resnet"
      ? new ResNetDiffusion({ dIn })
      : new MLPDiffusion({ dIn });
    this.batchSize = (config.batch as number) || (this.data.kind === "image" ? 64 : 256);
    this.#timesteps = makeTimestepSampler(config.timesteps as "uniform" | "loss-aware", T);
  }

  /** Whether the loss-aware sampler needs per-sample losses. */
  get wantsLosses(): boolean {
    return this.#timesteps.wantsLosses;
  }

  /** Fresh network parameters. */
  init(rng: Rng): Weights {
    return this.network.init(rng);
  }

  /** L_simple (optionally min-SNR weighted, importance weighted) on one batch. */
  loss(w: Weights, rng: Rng, _step: number): BatchLoss {
    const B = this.batchSize;
    const { t, weights } = this.#timesteps.draw(B, rng);
    this.#lastT = t;
    const x0 = this.data.batch(rng, B);
    const noise = tf.randomNormal(x0.shape, 0, 1, "float32", rng.seed());
    const perSample = this.process.perSampleLoss(
      (x, tt, c) => this.network.apply(w, x, tt, c),
      x0,
      t,
      noise,
    );
    const snrW = this.process.weights(t, {
      weighting: this.config.weighting as Weighting,
      gamma: this.config.gamma as number,
    });
    for (let i = 0; i < B; i++) snrW[i] *= weights[i];
    const loss = tf.mean(tf.mul(perSample, tf.tensor1d(snrW))) as tf.Scalar;
    const position = Float32Array.from(t, (v) => v / this.process.T);
    return { loss, perSample, position };
  }

  /** Feeds the loss-aware sampler. */
  observe(perSample: Float32Array): void {
    this.#timesteps.update(this.#lastT, perSample);
  }

  /** The loss-aware histories. */
  extraState(): TimestepState {
    return this.#timesteps.state();
  }

  /** Restores the loss-aware histories. */
  restoreExtraState(state: unknown): void {
    this.#timesteps = makeTimestepSampler(
      this.config.timesteps as "uniform" | "loss-aware",
      this.process.T,
      state as TimestepState,
    );
  }

  /** Samples with any sampler and step count. */
  async sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput> {
    const name = req.sampler ?? (this.config.sampler as string);
    const steps = req.steps ?? ((this.config.sample_steps as number) || this.process.T);
    const sampler = makeSampler(name, this.process.schedule, this.process.objective, {
      eta: req.eta,
      clip: req.clip ?? (this.data.kind === "image" ? "static" : "none"),
      spacing: this.config.spacing as string,
    });
    const chunk = this.data.kind === "image" ? 256 : 10000;
    const parts: Float32Array[] = [];
    for (let start = 0; start < req.n; start += chunk) {
      const m = Math.min(chunk, req.n - start);
      const x = await sampleLoop(
        (x, t, c) => this.network.apply(w, x, t, c),
        sampler,
        steps,
        [m, ...this.data.shape],
        rng,
        { onStep: (i) => req.onProgress?.(start * steps + (i + 1) * m, req.n * steps) },
      );
      parts.push((await x.data()) as Float32Array);
      x.dispose();
    }
    const flat = concat(parts);
    if (this.data.kind === "image") {
      return { kind: "image", images: flat, n: req.n, height: 28, width: 28, channels: 1 };
    }
    return { kind: "points", points: flat, n: req.n, dim: this.data.shape[0] };
  }

  /** Frees the training data. */
  dispose(): void {
    this.data.dispose();
  }
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** The registry entry of the DDPM model. */
export const DDPM_ENTRY: ModelEntry = {
  description:
    "DDPM: schedules, ε/x0/v objectives, min-SNR, loss-aware timesteps, DDPM/DDIM/DPM-Solver++ sampling",
  keys: DDPM_KEYS,
  data: `mnist, ${TOY_DATASETS.join(", ")}`,
  create: (config) => Promise.resolve(new Ddpm(config)),
};
