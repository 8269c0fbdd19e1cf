/**
 * The training loop, visible as a loop: draw a batch and its loss from the
 * model, take gradients, clip, step Adam, update every EMA, report the loss
 * per timestep band, checkpoint. A run directory holds config.json,
 * events.jsonl and ckpt/; training in a directory that has checkpoints
 * resumes from the latest, and reproduces the losses of an unbroken run.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import { countParams, type Weights } from "../network/layers.ts";
import type { ModelEntry, RunConfig, ZooModel } from "../models/model.ts";
import { TRAINER_KEYS, typedConfig } from "../models/config.ts";
import { checkBackend } from "../runtime/backend.ts";
import { Rng, type RngState } from "../runtime/rng.ts";
import { writeFileDurably } from "../runtime/tensorfile.ts";
import {
  checkpointKey,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  readJson,
  removeStaleTemporaries,
  saveCheckpoint,
} from "./checkpoint.ts";
import { EmaSet } from "./ema.ts";
import { EventLog } from "./events.ts";
import { Adam, clipByGlobalNorm, learningRate } from "./optim.ts";

/** Progress of a run, for a progress line or a dashboard. */
export interface TrainProgress {
  step: number;
  total: number;
  loss: number;
  /** Mean loss per timestep band over the interval; null for a band no sample fell in. */
  bands: (number | null)[];
  stepsPerSec: number;
  etaSec: number;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** The run directory. */
  runDir: string;
  /** The model's registry entry. */
  entry: ModelEntry;
  /** The resolved configuration (including `model` and `data`). */
  config: RunConfig;
  /** The backend's name, for the start event. @default tf.getBackend() */
  backend?: string;
  /** What the backend computes on (the GPU adapter, the CPU and its threads), for the start event. */
  device?: string;
  /** Called at every logging step. */
  onProgress?: (p: TrainProgress) => void;
  /** Called once before the first step when the run resumes from a checkpoint at `step`. */
  onResume?: (step: number) => void;
}

/** What a finished run reports. */
export interface TrainResult {
  /** Steps completed. */
  step: number;
  /** Mean loss of the last logging interval. */
  loss: number;
  /** The step a resume started from (0 for a fresh run). */
  resumedFrom: number;
}

/** A training run that went wrong in a way the user must hear about (NaN loss, …). */
export class TrainingFailed extends Error {
  /** The step at which it failed. */
  constructor(message: string, readonly step: number) {
    super(message);
  }
}

let runCounter = 0;

/** Keys whose change between a run and its resume does not invalidate the checkpoints. */
const RESUMABLE_CHANGES = new Set([
  "steps",
  "checkpoint_at",
  "checkpoint_every",
  "log_every",
  "keep_checkpoints",
]);

function checkConfigCompatible(runDir: string, config: RunConfig): void {
  const path = join(runDir, "config.json");
  if (!fs.existsSync(path) || listCheckpoints(runDir).length === 0) return;
  const old = readJson(path, "a run configuration") as RunConfig;
  for (const k of new Set([...Object.keys(old), ...Object.keys(config)])) {
    if (RESUMABLE_CHANGES.has(k)) continue;
    if (JSON.stringify(old[k]) !== JSON.stringify(config[k])) {
      throw new Error(
        `${path}: this run was trained with ${k}=${JSON.stringify(old[k])}, not ${
          JSON.stringify(config[k])
        }; ` +
          "use another --out directory to train a different configuration",
      );
    }
  }
}

/** Trains (or resumes) a run. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { runDir } = opts;
  const config = typedConfig(TRAINER_KEYS, opts.config);
  fs.mkdirSync(runDir, { recursive: true });
  for (const p of removeStaleTemporaries(runDir)) {
    console.error(`removed a checkpoint left half-written by an earlier process: ${p}`);
  }
  checkConfigCompatible(runDir, config);
  writeFileDurably(join(runDir, "config.json"), JSON.stringify(config, null, 2));

  const model = await opts.entry.create(config);
  const rng = new Rng(config.seed);
  const run = ++runCounter;
  const init = model.init(rng);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `r${run}/${k}`);
  Object.values(init).forEach((t) => t.dispose());
  const adam = new Adam(params, {
    kind: config.optimizer,
    weightDecay: config.weight_decay,
  });
  const emas = new EmaSet(
    params,
    config.ema,
    config.ema_warmup ? { gamma: config.ema_gamma, power: config.ema_power } : undefined,
  );

  let start = 0;
  const existing = listCheckpoints(runDir);
  if (existing.length > 0) {
    start = restore(runDir, existing.at(-1)!, { params, adam, emas, rng, model });
    opts.onResume?.(start);
  }
  const total = config.steps;
  const log = new EventLog(runDir);
  log.write({
    type: "start",
    step: start,
    backend: opts.backend ?? tf.getBackend(),
    ...(opts.device ? { device: opts.device } : {}),
    params: countParams(params),
  });

  const varList = Object.values(params);
  const bands = config.bands;
  const logEvery = config.log_every;
  const pinned = new Set(config.checkpoint_at);
  const gradClip = config.grad_clip;
  const lrSchedule = {
    lr: config.lr,
    warmup: config.warmup,
    decay: config.decay,
    minLr: config.min_lr,
    total,
  };
  let sumLoss = 0;
  let count = 0;
  const bandSum = new Float64Array(bands);
  const bandCount = new Float64Array(bands);
  let lastLoss = NaN;
  let gradNorm = 0;
  let tick = performance.now();
  let tickStep = start;

  try {
    for (let step = start; step < total; step++) {
      const lr = learningRate(lrSchedule, step) * (model.lrMultiplier?.(step) ?? 1);
      const isLogStep = (step + 1) % logEvery === 0 || step + 1 === total;
      const r = trainStep(model, params, adam, rng, step, lr, gradClip);
      emas.update(params, step);
      const lossValue = (await r.loss.data())[0];
      await checkBackend();
      const perValues = (await r.perSample.data()) as Float32Array;
      const position = r.position;
      if (isLogStep && r.gradNorm) gradNorm = (await r.gradNorm.data())[0];
      tf.dispose(r.gradNorm ? [r.loss, r.perSample, r.gradNorm] : [r.loss, r.perSample]);
      if (model.wantsLosses) model.observe?.(perValues);
      if (!Number.isFinite(lossValue)) {
        throw new TrainingFailed(`loss became ${lossValue} at step ${step + 1}`, step + 1);
      }
      sumLoss += lossValue;
      count++;
      for (let i = 0; i < perValues.length; i++) {
        const b = Math.min(bands - 1, Math.floor(position[i] * bands));
        bandSum[b] += perValues[i];
        bandCount[b]++;
      }

      if (isLogStep) {
        const now = performance.now();
        const stepsPerSec = (step + 1 - tickStep) / ((now - tick) / 1000);
        lastLoss = sumLoss / count;
        const bandMeans = Array.from(
          bandSum,
          (s, i) => (bandCount[i] > 0 ? s / bandCount[i] : null),
        );
        log.write({
          type: "train",
          step: step + 1,
          loss: lastLoss,
          bands: bandMeans,
          lr,
          stepsPerSec,
          gradNorm,
        });
        opts.onProgress?.({
          step: step + 1,
          total,
          loss: lastLoss,
          bands: bandMeans,
          stepsPerSec,
          etaSec: (total - step - 1) / stepsPerSec,
        });
        sumLoss = 0;
        count = 0;
        bandSum.fill(0);
        bandCount.fill(0);
        tick = now;
        tickStep = step + 1;
      }
      const s = step + 1;
      if (s % (config.checkpoint_every) === 0 || pinned.has(s) || s === total) {
        const path = await checkpoint(runDir, s, { params, adam, emas, rng, model });
        log.write({ type: "checkpoint", step: s, path });
        pruneCheckpoints(runDir, config.keep_checkpoints, pinned);
      }
    }
    await checkBackend(true);
  } catch (e) {
    const step = e instanceof TrainingFailed ? e.step : adam.t;
    log.write({ type: "failed", step, reason: e instanceof Error ? e.message : String(e) });
    throw e;
  } finally {
    adam.dispose();
    emas.dispose();
    varList.forEach((v) => v.dispose());
    model.dispose();
  }
  log.write({ type: "done", step: total });
  return { step: total, loss: lastLoss, resumedFrom: start };
}

/** What one optimisation step leaves for the caller to read and free. */
export interface StepResult {
  /** The minimised loss. */
  loss: tf.Scalar;
  /** Unweighted per-sample losses [B]. */
  perSample: tf.Tensor1D;
  /** Each sample's position in the process, in [0, 1). */
  position: Float32Array;
  /** Global gradient norm before clipping (when clipping is on). */
  gradNorm?: tf.Scalar;
}

/**
 * One optimisation step: the model's batch loss, gradients of every
 * parameter, optional global-norm clipping, and an Adam update. Everything
 * else it creates is freed; the caller frees what {@link StepResult} holds.
 */
export function trainStep(
  model: ZooModel,
  params: Record<string, tf.Variable>,
  adam: Adam,
  rng: Rng,
  step: number,
  lr: number,
  gradClip: number,
): StepResult {
  let perSample: tf.Tensor1D | undefined;
  let position: Float32Array = new Float32Array(0);
  const { value, grads } = tf.variableGrads(() => {
    const r = model.loss(params, rng, step);
    perSample = tf.keep(r.perSample);
    position = r.position;
    return r.loss;
  }, Object.values(params));
  const named: Weights = {};
  for (const [k, v] of Object.entries(params)) named[k] = grads[v.name];
  let gradNorm: tf.Scalar | undefined;
  if (gradClip > 0) {
    const clipped = clipByGlobalNorm(named, gradClip);
    adam.apply(params, clipped.grads, lr);
    gradNorm = clipped.norm;
    tf.dispose(Object.values(clipped.grads));
  } else {
    adam.apply(params, named, lr);
  }
  tf.dispose(Object.values(grads));
  return { loss: value, perSample: perSample!, position, gradNorm };
}

/** What a checkpoint holds of a live run besides its step. */
interface LiveState {
  params: Record<string, tf.Variable>;
  adam: Adam;
  emas: EmaSet;
  rng: Rng;
  model: ZooModel;
}

/** Writes a checkpoint of everything a resume needs. */
async function checkpoint(runDir: string, step: number, live: LiveState): Promise<string> {
  const { params, adam, emas, rng, model } = live;
  const tensors: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(params)) tensors[checkpointKey.param(k)] = v;
  for (const [k, v] of Object.entries(adam.moments)) tensors[checkpointKey.adam(k)] = v;
  for (const [d, avg] of emas.averages) {
    for (const [k, v] of Object.entries(avg)) tensors[checkpointKey.ema(d, k)] = v;
  }
  return await saveCheckpoint(runDir, {
    step,
    rng: rng.state(),
    adamT: adam.t,
    emaDecays: emas.decays,
    extra: model.extraState?.() ?? null,
  }, tensors);
}

/** Loads the latest checkpoint into the live state; returns its step. */
function restore(runDir: string, step: number, live: LiveState): number {
  const { params, adam, emas, rng, model } = live;
  const { state, tensors } = loadCheckpoint(runDir, step);
  const put = (v: tf.Variable, key: string) => {
    const t = tensors[key];
    if (!t) throw new Error(`${runDir}: checkpoint at step ${step} lacks ${key}`);
    v.assign(t);
  };
  for (const [k, v] of Object.entries(params)) put(v, checkpointKey.param(k));
  for (const [k, v] of Object.entries(adam.moments)) put(v, checkpointKey.adam(k));
  for (const [d, avg] of emas.averages) {
    for (const [k, v] of Object.entries(avg)) {
      if (tensors[checkpointKey.ema(d, k)]) put(v, checkpointKey.ema(d, k));
      else v.assign(params[k]);
    }
  }
  adam.t = state.adamT as number;
  rng.setState(state.rng as RngState);
  if (state.extra !== null) model.restoreExtraState?.(state.extra);
  tf.dispose(Object.values(tensors));
  return step;
}
