/**
 * DDPM (Ho et al. 2020) with the improvements a schedule sweep compares:
 * linear / cosine / sigmoid schedules, zero terminal SNR, ε / x0 / v
 * prediction, min-SNR-γ weighting, uniform or loss-aware timesteps, offset
 * noise; and on the same networks two other objectives, EDM's
 * preconditioned denoiser (Karras et al. 2022) and rectified flow. Samples
 * with DDPM, DDIM, DPM-Solver++(2M), and the σ-space Euler, Heun and DPM++
 * 2M SDE. Trains on 2-D toy sets (MLPDiffusion or ResNetDiffusion) and MNIST
 * (the UNet).
 */
import {
  CHANNELS,
  COUNT,
  COUNT0,
  defaultsOf,
  NONNEG,
  POSITIVE,
  type TypedConfig,
  typedConfig,
} from "./config.ts";
import * as tf from "@tensorflow/tfjs-core";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { sampleToy, TOY_DATASETS } from "../data/toy2d.ts";
import { normalCdf } from "../runtime/normal.ts";
import { drawFlowTimes, FLOW_TIME_SCALE, flowInterpolate, flowTarget } from "../diffusion/flow.ts";
import { extract, GaussianDiffusion, type Objective, predictX0 } from "../diffusion/gaussian.ts";
import { type NetFn, runReverse } from "../diffusion/reverse.ts";
import {
  CHURN_SAMPLERS,
  ETA_SAMPLERS,
  type GaussianParam,
  makeSampler,
  SAMPLERS,
  samplersFor,
} from "../diffusion/samplers.ts";
import { makeSchedule } from "../diffusion/schedules.ts";
import { EDM, edmPreconditioning, scheduleSigmas, tToSigma } from "../diffusion/sigma.ts";
import {
  makeTimestepSampler,
  type TimestepSampler,
  type TimestepState,
} from "../diffusion/timesteps.ts";
import { type Network, noGradient, type Weights } from "../network/layers.ts";
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
export const DDPM_KEYS = {
  schedule: { default: "linear", help: "noise schedule", choices: ["linear", "cosine", "sigmoid"] },
  T: { default: 1000, help: "diffusion steps", range: COUNT },
  objective: {
    default: "eps",
    help:
      "what the network learns: eps, x0 or v over the schedule; edm (Karras et al.'s preconditioned denoiser); flow (rectified flow's velocity)",
    choices: ["eps", "x0", "v", "edm", "flow"],
  },
  zero_snr: {
    default: false,
    help: "rescale the schedule to zero terminal SNR (Lin et al. 2023; needs objective=v or x0)",
  },
  offset_noise: {
    default: 0,
    help: "offset noise: add this times one N(0, 1) per sample and channel to the training noise",
    range: NONNEG,
  },
  self_cond: {
    default: false,
    help:
      "self-conditioning (Chen et al. 2022, lucidrains' 50% scheme): the network also sees its own x0 estimate",
  },
  flow_times: {
    default: "uniform",
    help: "objective=flow: how training draws t",
    choices: ["uniform", "logit-normal"],
  },
  sigma_data: {
    default: 0.5,
    help: "objective=edm: the data's standard deviation σ_data",
    range: POSITIVE,
  },
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
    help: "2-D data: size of the training set, drawn with the run's seed",
    range: COUNT,
  },
  sampler: {
    default: "auto",
    help: "default sampler (auto = ddpm for eps/x0/v, heun for edm, euler for flow)",
    choices: ["auto", ...SAMPLERS],
  },
  sample_steps: { default: 0, help: "default sampling steps (0 = T)", range: COUNT0 },
  spacing: {
    default: "auto",
    help:
      "timestep spacing for fewer steps: linspace, leading, trailing, section counts like 10,10,5; auto = trailing with zero_snr, else leading",
  },
  sigma_grid: {
    default: "karras",
    help:
      "σ grid of euler, heun and dpmpp2m_sde: karras (ρ-spaced) or schedule (its own σ's, spaced)",
    choices: ["karras", "schedule"],
  },
  rho: { default: 7, help: "ρ of the Karras σ grid", range: POSITIVE },
} as const satisfies Record<string, KeySpec>;

/** The resolved configuration of the model, typed by its keys. */
export type DdpmConfig = TypedConfig<typeof DDPM_KEYS>;

/** What `sampler=auto` samples with, per parameterisation. */
const AUTO_SAMPLER: Record<GaussianParam["kind"], string> = {
  discrete: "ddpm",
  edm: "heun",
  flow: "euler",
};

/** The objectives over the discrete schedule. */
const DISCRETE_OBJECTIVES = ["eps", "x0", "v"];

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
  /** The resolved configuration. */
  readonly config: DdpmConfig;
  get sampling(): SamplingSupport {
    const sampler = this.config.sampler === "auto"
      ? AUTO_SAMPLER[this.param.kind]
      : this.config.sampler;
    return gaussianSampling(sampler, 0, samplersFor(this.param));
  }
  readonly process: GaussianDiffusion;
  /** How the network is parameterised (decides the loss and the samplers). */
  readonly param: GaussianParam;
  readonly network: Network;
  readonly data: DataSource;
  readonly batchSize: number;
  #timesteps: TimestepSampler;
  #lastT: Int32Array = new Int32Array(0);

  /** Builds the model for a resolved configuration; refuses key combinations that do not fit. */
  constructor(raw: RunConfig) {
    const config = (this.config = typedConfig(DDPM_KEYS, raw));
    const T = config.T;
    const objective = config.objective;
    const discrete = DISCRETE_OBJECTIVES.includes(objective);
    const mismatch = objectiveMismatch(config);
    if (mismatch) throw new Error(mismatch);
    this.process = new GaussianDiffusion(
      makeSchedule({
        kind: config.schedule,
        T,
        zeroSnr: config.zero_snr,
      }),
      discrete ? objective as Objective : "eps",
    );
    this.param = discrete
      ? { kind: "discrete", schedule: this.process.schedule, objective: objective as Objective }
      : objective === "edm"
      ? { kind: "edm", sigmaData: config.sigma_data }
      : { kind: "flow" };
    const dataName = String(config.data);
    this.data = dataName === "mnist"
      ? mnistSource()
      : pointsSource(dataName, config.seed, config.train_size);
    const net = config.network === "auto"
      ? (this.data.kind === "image" ? "unet" : "mlp")
      : config.network;
    if ((net === "unet") !== (this.data.kind === "image")) {
      throw new Error(`network=${net} does not fit ${dataName} (${this.data.kind} data)`);
    }
    const dIn = this.data.shape[0];
    const extraIn = config.self_cond ? this.data.shape[this.data.shape.length - 1] : 0;
    this.network = net === "unet"
      ? new UNet({ ch: config.ch, extraIn })
      : net === "resnet"
      ? new ResNetDiffusion({ dIn, extraIn })
      : new MLPDiffusion({ dIn, extraIn });
    this.batchSize = (config.batch) || (this.data.kind === "image" ? 64 : 256);
    this.#timesteps = makeTimestepSampler(config.timesteps, T);
  }

  /** Whether the loss-aware sampler needs per-sample losses. */
  get wantsLosses(): boolean {
    return this.#timesteps.wantsLosses;
  }

  /** Fresh network parameters. */
  init(rng: Rng): Weights {
    return this.network.init(rng);
  }

  /**
   * The loss of one batch: L_simple over the schedule (optionally min-SNR
   * weighted, importance weighted), EDM's weighted denoising loss, or the
   * flow-matching velocity loss.
   */
  loss(w: Weights, rng: Rng, _step: number): BatchLoss {
    const B = this.batchSize;
    // Draw order (timesteps, data, noise) as before the other objectives existed, so runs repeat.
    const drawn = this.param.kind === "discrete" ? this.#timesteps.draw(B, rng) : undefined;
    const x0 = this.data.batch(rng, B);
    const noise = this.#noise(x0.shape, rng);
    const plain = (x: tf.Tensor, t: tf.Tensor1D) => this.network.apply(w, x, t);
    if (this.param.kind === "edm") return this.#edmLoss(x0, noise, plain, rng);
    const estimate = this.config.self_cond === true && rng.uniform() < 0.5;
    if (!drawn) {
      const t = drawFlowTimes(B, this.config.flow_times, rng);
      const xt = flowInterpolate(x0, noise, t);
      const tt = tf.tensor(t, [B, ...new Array(x0.rank - 1).fill(1)]);
      const net = this.#trainingNet(plain, estimate, (v, x) => tf.sub(x, tf.mul(tt, v)));
      const out = net(xt, tf.tensor1d(t.map((v) => v * FLOW_TIME_SCALE)));
      return meanLoss(perSampleMse(out, flowTarget(x0, noise)), t);
    }
    const { t, weights } = drawn;
    this.#lastT = t;
    const a = extract(this.process.schedule.alphasCumprod, t, x0.rank);
    const net = this.#trainingNet(
      plain,
      estimate,
      (out, x) =>
        predictX0(this.param.kind === "discrete" ? this.param.objective : "eps", out, x, a),
    );
    const perSample = this.process.perSampleLoss(net, x0, t, noise);
    const snrW = this.process.weights(t, {
      weighting: this.config.weighting,
      gamma: this.config.gamma,
    });
    for (let i = 0; i < B; i++) snrW[i] *= weights[i];
    const loss = tf.mean(tf.mul(perSample, tf.tensor1d(snrW))) as tf.Scalar;
    const position = Float32Array.from(t, (v) => v / this.process.T);
    return { loss, perSample, position };
  }

  /**
   * EDM's loss: ln σ ~ N(P_mean, P_std²), x = x0 + σn, the network F sees
   * (c_in·x, c_noise) and regresses (x0 − c_skip·x)/c_out; since λ(σ)·c_out² = 1
   * that plain MSE is EDM's weighted loss λ(σ)·‖D(x; σ) − x0‖².
   */
  #edmLoss(
    x0: tf.Tensor,
    noise: tf.Tensor,
    net: (x: tf.Tensor, t: tf.Tensor1D) => tf.Tensor,
    rng: Rng,
  ): BatchLoss {
    const B = x0.shape[0];
    const z = Float32Array.from({ length: B }, () => rng.normal());
    const pre = Array.from(
      z,
      (v) => edmPreconditioning(Math.exp(EDM.pMean + EDM.pStd * v), this.config.sigma_data),
    );
    const col = (f: (p: typeof pre[number], i: number) => number) =>
      tf.tensor(pre.map(f), [B, ...new Array(x0.rank - 1).fill(1)]);
    const sigma = col((_, i) => Math.exp(EDM.pMean + EDM.pStd * z[i]));
    const x = tf.add(x0, tf.mul(noise, sigma));
    const out = net(tf.mul(x, col((p) => p.cIn)), tf.tensor1d(pre.map((p) => p.cNoise)));
    const target = tf.div(tf.sub(x0, tf.mul(x, col((p) => p.cSkip))), col((p) => p.cOut));
    return meanLoss(perSampleMse(out, target), z.map((v) => normalCdf(v)));
  }

  /**
   * The network as training sees it. With self-conditioning its input is
   * [x_t ‖ x̂0]: x̂0 = 0, or, on half the batches, the network's own estimate
   * from a first pass with x̂0 = 0, through which no gradient flows (the pass
   * runs inside a custom gradient whose gradient is zero, so it is not taped).
   */
  #trainingNet(
    plain: (x: tf.Tensor, t: tf.Tensor1D) => tf.Tensor,
    estimate: boolean,
    x0From: (out: tf.Tensor, xt: tf.Tensor) => tf.Tensor,
  ): (x: tf.Tensor, t: tf.Tensor1D) => tf.Tensor {
    if (!this.config.self_cond) return plain;
    const axis = -1;
    return (xt, t) => {
      const zeros = tf.zerosLike(xt);
      if (!estimate) return plain(tf.concat([xt, zeros], axis), t);
      const x0 = noGradient(() => x0From(plain(tf.concat([xt, zeros], axis), t), xt), xt);
      return plain(tf.concat([xt, x0], axis), t);
    };
  }

  /** The network as sampling sees it: with self-conditioning, fed its previous x0 estimate. */
  #samplingNet(w: Weights, m: number): { net: NetFn; dispose: () => void } {
    const plain: NetFn = (x, t) => this.network.apply(w, x, tf.fill([m], t) as tf.Tensor1D);
    if (!this.config.self_cond) return { net: plain, dispose: () => {} };
    let previous: tf.Tensor | undefined;
    const sigmas = this.param.kind === "discrete" ? scheduleSigmas(this.param.schedule) : undefined;
    const x0From = (out: tf.Tensor, x: tf.Tensor, t: number) => {
      if (this.param.kind === "flow") return tf.sub(x, tf.mul(out, t / FLOW_TIME_SCALE));
      const sigma = tToSigma(sigmas!, t);
      return predictX0(
        (this.param as { objective: Objective }).objective,
        out,
        x,
        1 / (1 + sigma * sigma),
      );
    };
    const net: NetFn = (x, t) => {
      const out = plain(tf.concat([x, previous ?? tf.zerosLike(x)], -1), t);
      const next = tf.keep(x0From(out, x, t));
      previous?.dispose();
      previous = next;
      return out;
    };
    return { net, dispose: () => previous?.dispose() };
  }

  /** Training noise: N(0, I), plus offset noise shared by each sample's channel when asked. */
  #noise(shape: number[], rng: Rng): tf.Tensor {
    const offset = this.config.offset_noise;
    const noise = tf.randomNormal(shape, 0, 1, "float32", rng.seed());
    if (offset === 0) return noise;
    // One draw per sample and channel, broadcast over the spatial axes (2-D points: one per sample).
    const shared = shape.length > 2
      ? [shape[0], ...new Array(shape.length - 2).fill(1), shape[shape.length - 1]]
      : [shape[0], 1];
    return tf.add(noise, tf.mul(tf.randomNormal(shared, 0, 1, "float32", rng.seed()), offset));
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
      this.config.timesteps,
      this.process.T,
      state as TimestepState,
    );
  }

  /** Samples with any sampler the parameterisation takes and any step count. */
  async sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput> {
    const name = req.sampler ?? this.sampling.defaultSampler;
    const steps = req.steps ?? ((this.config.sample_steps) || this.process.T);
    const spacing = this.config.spacing === "auto"
      ? (this.config.zero_snr ? "trailing" : "leading")
      : this.config.spacing;
    const sampler = makeSampler(name, this.param, {
      eta: req.eta,
      clip: req.clip ?? (this.data.kind === "image" ? "static" : "none"),
      spacing,
      grid: this.config.sigma_grid,
      rho: this.config.rho,
      churn: req.churn,
    });
    const chunk = this.data.kind === "image" ? 256 : 10000;
    const parts: Float32Array[] = [];
    let nfe = 0;
    for (let start = 0; start < req.n; start += chunk) {
      const m = Math.min(chunk, req.n - start);
      const { net, dispose } = this.#samplingNet(w, m);
      const r = await runReverse(sampler, net, steps, [m, ...this.data.shape], rng, {
        onStep: (i, total) => req.onProgress?.(start * total + i * m, req.n * total),
      }).finally(dispose);
      nfe = r.nfe;
      parts.push((await r.x.data()) as Float32Array);
      r.x.dispose();
    }
    const flat = concat(parts);
    if (this.data.kind === "image") {
      return { kind: "image", images: flat, n: req.n, height: 28, width: 28, channels: 1, nfe };
    }
    return { kind: "points", points: flat, n: req.n, dim: this.data.shape[0], nfe };
  }

  /** Frees the training data. */
  dispose(): void {
    this.data.dispose();
  }
}

/**
 * Why keys do not fit the objective (naming the key and the fix), or
 * undefined; unset keys count at their defaults.
 */
function objectiveMismatch(config: RunConfig): string | undefined {
  const c = typedConfig(DDPM_KEYS, { ...defaultsOf(DDPM_KEYS), ...config });
  const objective = c.objective;
  const discrete = DISCRETE_OBJECTIVES.includes(objective);
  if (c.zero_snr && !discrete) {
    return `zero_snr applies to the schedule-based objectives (eps, x0, v), not objective=${objective}`;
  }
  if (c.zero_snr && objective === "eps") {
    return "zero_snr=true needs objective=v (Lin et al. 2023) or x0: at zero terminal SNR an ε-prediction cannot give x0";
  }
  if (c.self_cond && objective === "edm") {
    return "self_cond applies to eps, x0, v and flow, not objective=edm";
  }
  if (!discrete && c.timesteps !== "uniform") {
    return `timesteps=${c.timesteps} applies to eps, x0 and v, not objective=${objective}`;
  }
  if (!discrete && c.weighting !== "none") {
    return `weighting=${c.weighting} applies to eps, x0 and v, not objective=${objective}${
      objective === "edm" ? " (EDM weights its loss itself)" : ""
    }`;
  }
  const usable = samplersFor({ kind: discrete ? "discrete" : objective as "edm" | "flow" });
  const sampler = c.sampler;
  const taker = sampler === "auto"
    ? AUTO_SAMPLER[discrete ? "discrete" : objective as "edm" | "flow"]
    : sampler;
  // Sampling options set in a sweep (evaluation keys): each applies to some samplers only.
  if (config.churn && !(CHURN_SAMPLERS as readonly string[]).includes(taker)) {
    return `churn applies to the ${CHURN_SAMPLERS.join(", ")} samplers, not ${taker}`;
  }
  if (config.eta && !(ETA_SAMPLERS as readonly string[]).includes(taker)) {
    return `eta applies to the ${ETA_SAMPLERS.join(", ")} samplers, not ${taker}`;
  }
  if (sampler && sampler !== "auto" && !(usable as readonly string[]).includes(sampler)) {
    return `sampler=${sampler} does not apply to objective=${objective} (samplers: ${
      usable.join(", ")
    })`;
  }
  return undefined;
}

/** Mean squared error per sample: [B, ...] → [B]. */
function perSampleMse(out: tf.Tensor, target: tf.Tensor): tf.Tensor1D {
  return tf.mean(
    tf.reshape(tf.squaredDifference(out, target), [out.shape[0], -1]),
    1,
  ) as tf.Tensor1D;
}

/** An unweighted batch loss with each sample's position in the process. */
function meanLoss(perSample: tf.Tensor1D, position: Float32Array): BatchLoss {
  return { loss: tf.mean(perSample) as tf.Scalar, perSample, position };
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
  applies: objectiveMismatch,
};
