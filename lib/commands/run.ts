/**
 * Opening a finished (or running) run directory: its configuration, its
 * model, and the weights of a checkpoint — raw or any tracked EMA.
 */
import type * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import type { Weights } from "../network/layers.ts";
import type { RunConfig, ZooModel } from "../models/model.ts";
import { TRAINER_KEYS, typedConfig } from "../models/config.ts";
import { modelEntry } from "../models/registry.ts";
import { checkpointKey, listCheckpoints, loadCheckpoint } from "../trainer/checkpoint.ts";

/** A run opened for sampling or evaluation. */
export interface OpenRun {
  dir: string;
  config: RunConfig;
  model: ZooModel;
  /** The checkpoint step whose weights are loaded. */
  step: number;
  /** The weights chosen (`raw` or an EMA decay). */
  weights: Weights;
  /** Which weights: "raw" or the decay as written. */
  ema: string;
  /** Frees the model and the weights. */
  close(): void;
}

/** Reads a run's config.json, naming the path when it is missing. */
export function readRunConfig(dir: string): RunConfig {
  const path = join(dir, "config.json");
  if (!fs.existsSync(path)) throw new Error(`${dir}: not a run directory (no config.json)`);
  return JSON.parse(fs.readFileSync(path, "utf8"));
}

/**
 * Opens a run. `ema` picks the weights: "raw", a tracked decay, or
 * undefined for the largest tracked decay (raw when none).
 */
export async function openRun(
  dir: string,
  opts: { checkpoint?: number; ema?: string } = {},
): Promise<OpenRun> {
  const config = readRunConfig(dir);
  const typed = typedConfig(TRAINER_KEYS, config);
  const steps = listCheckpoints(dir);
  if (steps.length === 0) throw new Error(`${dir}: the run has no checkpoint yet`);
  const step = opts.checkpoint ?? steps.at(-1)!;
  const { tensors } = loadCheckpoint(dir, step);
  const decays = typed.ema.map(String);
  const ema = opts.ema ??
    (decays.length ? decays.reduce((a, b) => (Number(a) > Number(b) ? a : b)) : "raw");
  const prefix = checkpointKey.weights(ema);
  if (ema !== "raw" && !decays.includes(ema)) {
    tf_dispose(tensors);
    throw new Error(
      `${dir}: EMA ${ema} is not tracked in this run (tracked: raw, ${decays.join(", ")})`,
    );
  }
  const weights: Weights = {};
  for (const [k, t] of Object.entries(tensors)) {
    if (k.startsWith(prefix)) weights[k.slice(prefix.length)] = t;
    else t.dispose();
  }
  const model = await modelEntry(typed.model).create(config);
  return {
    dir,
    config,
    model,
    step,
    weights,
    ema,
    close() {
      model.dispose();
      tf_dispose(weights);
    },
  };
}

function tf_dispose(ts: Record<string, tf.Tensor>): void {
  for (const t of Object.values(ts)) t.dispose();
}
