/** `deno task train`: trains (or resumes) one run of any zoo model. */
import { basename, join } from "node:path";
import { describeDataset } from "../data/registry.ts";
import { resolveConfig, typedConfig } from "../models/config.ts";
import type { RunConfig } from "../models/model.ts";
import { modelEntry } from "../models/registry.ts";
import { type BackendName, initBackend } from "../runtime/backend.ts";
import { Progress } from "../runtime/progress.ts";
import { train } from "../trainer/trainer.ts";
import { describeDevice } from "./device.ts";

/** Options of {@link trainCommand}. */
export interface TrainCommandOptions {
  model: string;
  data: string;
  steps?: number;
  out?: string;
  seed?: number;
  set: RunConfig;
  backend: BackendName;
}

/** Resolves the configuration, trains with a progress bar, returns the run directory. */
export async function trainCommand(opts: TrainCommandOptions): Promise<string> {
  const entry = modelEntry(opts.model);
  describeDataset(opts.data);
  const given: RunConfig = { ...opts.set };
  if (opts.steps !== undefined) given.steps = opts.steps;
  if (opts.seed !== undefined) given.seed = opts.seed;
  const config: RunConfig = {
    model: opts.model,
    data: opts.data,
    ...resolveConfig(entry.keys, given),
  };
  const out = opts.out ??
    join("runs", "train", `${opts.model}-${opts.data.replace(/[^\w.-]+/g, "_")}-${stamp()}`);
  const backend = await initBackend(opts.backend);
  const progress = new Progress(
    `train ${opts.model} on ${basename(opts.data)}`,
    typedConfig(entry.keys, config).steps,
  );
  await train({
    runDir: out,
    entry,
    config,
    backend: backend.name,
    device: describeDevice(backend),
    onResume: (step) => console.error(`resuming from the checkpoint at step ${step}`),
    onProgress: (p) =>
      progress.update(
        p.step,
        `loss ${p.loss.toFixed(4)}  bands ${bandText(p.bands)}  ${
          p.stepsPerSec.toFixed(1)
        } steps/s`,
        p.etaSec,
      ),
  });
  console.error(`run directory: ${out}`);
  return out;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
}

/** Band means for the progress line; "–" for a band that no sample of the interval fell in. */
export function bandText(bands: (number | null)[]): string {
  return bands.map((b) => (b === null ? "–" : b.toFixed(3))).join(" ");
}
