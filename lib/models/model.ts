/**
 * What every member of the zoo provides to the trainer and the commands: a
 * configuration with documented defaults, parameters, a training loss on a
 * batch it draws itself, and sampling. The trainer and the commands know
 * nothing else about a model.
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Weights } from "../network/layers.ts";
import type { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";
import { CHURN_SAMPLERS, ETA_SAMPLERS, SAMPLERS } from "../diffusion/samplers.ts";

/** A configuration value as `--set key=value` and experiment files give it. */
export type ConfigValue = number | string | boolean | number[] | string[];

/** A flat configuration: trainer keys and model keys together. */
export type RunConfig = Record<string, ConfigValue>;

/** One configuration key a model or the trainer understands. */
export interface KeySpec {
  /** Default value. */
  default: ConfigValue;
  /** One line for `--help` and error messages. */
  help: string;
  /** Allowed values, when it is a choice. */
  choices?: readonly string[];
  /** Bounds of a number, or of every number of a list (which must all be finite). */
  range?: NumberRange;
}

/** What a numeric key accepts; every bound given must hold. */
export interface NumberRange {
  /** Whole numbers only. */
  int?: boolean;
  /** A multiple of this. */
  multipleOf?: number;
  /** ≥ min. */
  min?: number;
  /** ≤ max. */
  max?: number;
  /** > above. */
  above?: number;
  /** < below. */
  below?: number;
}

/** The loss of one training batch. */
export interface BatchLoss {
  /** The scalar to minimise (weighted as the configuration says). */
  loss: tf.Scalar;
  /** Unweighted loss per sample [B], for the loss-per-timestep-band report. */
  perSample: tf.Tensor1D;
  /** Each sample's diffusion time as a fraction of the process in [0, 1). */
  position: Float32Array;
}

/** What `sample` and `eval` ask of a model. */
export interface SampleRequest {
  /** Number of samples. */
  n: number;
  /** Sampler name (the model's default when absent). */
  sampler?: string;
  /** Sampling steps (the model's default when absent). */
  steps?: number;
  /** DDIM η. */
  eta?: number;
  /** x0 clipping. */
  clip?: "none" | "static" | "dynamic";
  /** Class label(s) for conditional models: one label, or one per sample. */
  labels?: number[];
  /** Classifier-free guidance scale. */
  guidance?: number;
  /** Guidance rescale φ (Lin et al. 2023, section 3.4). */
  guidanceRescale?: number;
  /** EDM's S_churn for the Euler and Heun samplers. */
  churn?: number;
  /** Progress callback (steps done, total). */
  onProgress?: (done: number, total: number) => void;
}

/** What `deno task visualize --run` asks of a model's figures. */
export interface FigureOptions {
  /** Seed of the data drawn, the noise and any sampling. @default 0 */
  seed?: number;
  /** Sampling steps of a reverse-process figure. @default the model's */
  steps?: number;
}

/** Samples, in the data's own form. */
export type SampleOutput =
  | {
    kind: "image";
    /** [n, height, width, channels] in [−1, 1]. */
    images: Float32Array;
    n: number;
    height: number;
    width: number;
    channels: number;
    /** The label of each image, for conditional models. */
    labels?: Int32Array;
    /** Network evaluations per sample. */
    nfe?: number;
  }
  | {
    kind: "points";
    points: Float32Array;
    n: number;
    dim: number;
    /** Network evaluations per sample. */
    nfe?: number;
  }
  | {
    kind: "table";
    header: string[];
    rows: (string | number)[][];
    /** Network evaluations per sample. */
    nfe?: number;
  };

/** One evaluation result, as `deno task eval` prints it. */
export interface MetricResult {
  metric: string;
  value: number;
  /** Samples (or test items) it was computed on. */
  n: number;
  /** Bootstrap standard deviation of the value. */
  spread: number;
  /** Anything else worth recording (per-class values, settings). */
  [extra: string]: unknown;
}

/** What a model's sampling and evaluation accept, so a request is checked before any work. */
export interface SamplingSupport {
  /** Sampler names. */
  samplers: readonly string[];
  /** The sampler used when a request names none. */
  defaultSampler: string;
  /** The samplers that take η (DDIM's, DPM++ 2M SDE's). */
  etaSamplers: readonly string[];
  /** The samplers that take EDM's S_churn. */
  churnSamplers: readonly string[];
  /** Whether classifier-free guidance applies. */
  guidance: boolean;
  /** Classes a label may name; 0 for an unconditional model. */
  classes: number;
  /** Metrics the model computes itself ({@link ZooModel.evaluate}). */
  ownMetrics: readonly string[];
}

/** What a Gaussian model supports: the samplers of its parameterisation, no guidance. */
export function gaussianSampling(
  defaultSampler: string,
  classes = 0,
  samplers: readonly string[] = SAMPLERS,
): SamplingSupport {
  return {
    samplers,
    defaultSampler,
    etaSamplers: ETA_SAMPLERS.filter((s) => samplers.includes(s)),
    churnSamplers: CHURN_SAMPLERS.filter((s) => samplers.includes(s)),
    guidance: false,
    classes,
    ownMetrics: [],
  };
}

/** The support of a model that trains but does not sample (benchmark and test fixtures). */
export const TRAIN_ONLY: SamplingSupport = {
  samplers: [],
  defaultSampler: "",
  etaSamplers: [],
  churnSamplers: [],
  guidance: false,
  classes: 0,
  ownMetrics: [],
};

/** The sampling options a user sets (`--sampler`, `--steps`, `--eta`, `--churn`, `--guidance`, `--guidance-rescale`). */
export type SamplingOptions = Pick<
  SampleRequest,
  "sampler" | "steps" | "eta" | "guidance" | "guidanceRescale" | "churn"
>;

/** Just the {@link SamplingOptions} of a command's options, for a {@link SampleRequest}. */
export function pickSamplingOptions(o: SamplingOptions): SamplingOptions {
  const { sampler, steps, eta, guidance, guidanceRescale, churn } = o;
  return { sampler, steps, eta, guidance, guidanceRescale, churn };
}

/** The parts of a sampling request {@link checkSampleRequest} checks. */
export type SampleCheck = SamplingOptions & Pick<SampleRequest, "n" | "labels">;

/**
 * Throws, naming the option, when `req` asks `model` for something its
 * sampling does not support (an unknown sampler, η for a sampler without it,
 * a label for an unconditional model, …) or for a count below 1.
 */
export function checkSampleRequest(model: string, s: SamplingSupport, req: SampleCheck): void {
  const fail = (msg: string) => {
    throw new Error(`model ${model}: ${msg}`);
  };
  if (!Number.isInteger(req.n) || req.n < 1) fail(`--n must be at least 1, got ${req.n}`);
  if (req.steps !== undefined && (!Number.isInteger(req.steps) || req.steps < 1)) {
    fail(`--steps must be at least 1, got ${req.steps}`);
  }
  const sampler = req.sampler ?? s.defaultSampler;
  if (!s.samplers.includes(sampler)) {
    fail(
      `unknown sampler "${sampler}"${didYouMean(sampler, s.samplers)} (samplers: ${
        s.samplers.join(", ")
      })`,
    );
  }
  const samplerOption = (flag: string, v: number | undefined, takers: readonly string[]) => {
    if (v === undefined) return;
    if (!(v >= 0 && Number.isFinite(v))) fail(`${flag} must be ≥ 0, got ${v}`);
    if (!takers.includes(sampler)) {
      fail(
        takers.length
          ? `${flag} applies to the ${takers.join(", ")} sampler${
            takers.length > 1 ? "s" : ""
          }, not ${sampler}`
          : `${flag} does not apply to its sampler`,
      );
    }
  };
  samplerOption("--eta", req.eta, s.etaSamplers);
  samplerOption("--churn", req.churn, s.churnSamplers);
  if (req.guidance !== undefined) {
    if (!s.guidance) fail("--guidance does not apply: the model is not class-conditional");
    if (!(req.guidance >= 0 && Number.isFinite(req.guidance))) {
      fail(`--guidance must be ≥ 0, got ${req.guidance}`);
    }
  }
  if (req.guidanceRescale !== undefined) {
    if (!s.guidance) fail("--guidance-rescale does not apply: the model is not class-conditional");
    if (!(req.guidanceRescale >= 0 && req.guidanceRescale <= 1)) {
      fail(`--guidance-rescale must be in [0, 1], got ${req.guidanceRescale}`);
    }
  }
  for (const label of req.labels ?? []) {
    if (s.classes === 0) fail("--label does not apply: the model is unconditional");
    if (!Number.isInteger(label) || label < 0 || label >= s.classes) {
      fail(`--label must be a class from 0 to ${s.classes - 1}, got ${label}`);
    }
  }
}

/** A trainable, sampleable member of the zoo. */
export interface ZooModel {
  /** Registry name (`ddpm`, `score`, `d3pm`, `tabddpm`). */
  readonly name: string;
  /** What its sampling and evaluation accept. */
  readonly sampling: SamplingSupport;
  /** Fresh parameters. */
  init(rng: Rng): Weights;
  /** The loss of one batch, drawn from the model's data with `rng`. */
  loss(w: Weights, rng: Rng, step: number): BatchLoss;
  /** Called after each step with the per-sample losses, when {@link wantsLosses}. */
  observe?(perSample: Float32Array): void;
  /** Whether {@link observe} wants the per-sample losses every step. */
  readonly wantsLosses?: boolean;
  /** State to keep in checkpoints besides weights (e.g. loss-aware histories). */
  extraState?(): unknown;
  /** Restores {@link extraState}. */
  restoreExtraState?(state: unknown): void;
  /**
   * A factor on the trainer's learning rate at `step` (0-based), for a
   * schedule of the model's own on top of warmup and decay. @default 1
   */
  lrMultiplier?(step: number): number;
  /** Draws samples with the given weights (raw or an EMA). */
  sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput>;
  /**
   * Writes the model's figures for the given weights into `outDir` (for
   * `deno task visualize --run`); returns the paths written.
   */
  figures?(w: Weights, outDir: string, opts: FigureOptions): Promise<string[]>;
  /**
   * Model-specific metrics that are not computed from samples (D3PM's
   * bits per dimension, say); returns undefined for metrics it does not own.
   */
  evaluate?(w: Weights, metric: string, n: number, rng: Rng): Promise<MetricResult | undefined>;
  /** Frees data held on the backend. */
  dispose(): void;
}

/** A registry entry: the keys a model takes and how to build it. */
export interface ModelEntry {
  /** One line for `--help`. */
  description: string;
  /** The model's own configuration keys. */
  keys: Record<string, KeySpec>;
  /** The datasets it trains on (for help and validation messages). */
  data: string;
  /** Builds the model for a resolved configuration. */
  create(config: RunConfig): Promise<ZooModel>;
  /**
   * Why a combination of keys (model keys and evaluation settings such as
   * `sampler`, unset keys at their defaults) does not apply, or undefined
   * when it does: a sweep's planner leaves such grid points out, saying why.
   */
  applies?(config: RunConfig): string | undefined;
}
