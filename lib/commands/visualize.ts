/**
 * `deno task visualize`: the reference figures of the DDPM paper's building blocks — the sinusoidal time
 * embedding for t ∈ {0, 1, 10, 100} over 320 dimensions (heatmap) and its
 * first 64 dimensions (lines), the forward process on a few MNIST digits
 * for each schedule, and ᾱ_t and log-SNR for each schedule. With a run
 * (`--run DIR`), the figures its model draws from its weights instead (the
 * score model: forward process, one reverse run, attention maps).
 */
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { qSampleWith } from "../diffusion/gaussian.ts";
import { logSnr, makeSchedule, type ScheduleKind } from "../diffusion/schedules.ts";
import { sinusoidalEmbedding } from "../network/layers.ts";
import { type BackendName, initBackend } from "../runtime/backend.ts";
import { heatmap, imageGrid, linePlot, writePng } from "../runtime/png.ts";
import { Rng } from "../runtime/rng.ts";
import { openRun } from "./run.ts";

const KINDS: ScheduleKind[] = ["linear", "cosine", "sigmoid"];

/** Options of {@link visualizeCommand}. */
export interface VisualizeCommandOptions {
  /** Output folder. */
  out: string;
  backend: BackendName;
  /** A run directory: draw its model's figures instead of the reference figures. */
  run?: string;
  /** The run's weights: raw or a tracked EMA decay. @default the largest tracked */
  ema?: string;
  /** The run's checkpoint step. @default the latest */
  checkpoint?: number;
  /** Sampling steps of a reverse-process figure. @default the run's */
  steps?: number;
  /** Seed of the run's figures. @default 0 */
  seed?: number;
}

/** Writes every figure into `out`; returns the paths. */
export async function visualizeCommand(opts: VisualizeCommandOptions): Promise<string[]> {
  await initBackend(opts.backend);
  if (opts.run) return await runFigures(opts.run, opts);
  const paths: string[] = [];
  const save = (name: string, pic: Parameters<typeof writePng>[1]) => {
    const p = join(opts.out, name);
    writePng(p, pic);
    paths.push(p);
  };

  const ts = [0, 1, 10, 100];
  const emb = tf.tidy(() => sinusoidalEmbedding(tf.tensor1d(ts), 320).dataSync()) as Float32Array; // [4, 320]
  save("time_embedding_heatmap.png", heatmap(emb, ts.length, 320, 6));
  save(
    "time_embedding_first64.png",
    linePlot(ts.map((_, r) => Array.from(emb.subarray(r * 320, r * 320 + 64)))),
  );

  const { images } = loadMnist("test");
  const idx = Int32Array.from([0, 1, 2, 3]);
  const x0 = mnistToFloat(images, idx);
  const steps = [0, 50, 100, 200, 400, 600, 800, 999];
  for (const kind of KINDS) {
    const s = makeSchedule({ kind, T: 1000 });
    const frames = new Float32Array(idx.length * steps.length * 784);
    const rng = new Rng(4);
    idx.forEach((_, d) => {
      const noise = tf.tensor(rng.normalArray(784), [784]);
      steps.forEach((t, j) => {
        const xt = tf.tidy(() =>
          qSampleWith(tf.tensor(x0.subarray(d * 784, (d + 1) * 784)), noise, s.alphasCumprod[t])
        );
        frames.set(xt.dataSync(), (d * steps.length + j) * 784);
        xt.dispose();
      });
      noise.dispose();
    });
    save(
      `forward_${kind}.png`,
      imageGrid(frames, idx.length * steps.length, 28, 28, steps.length, 2),
    );
  }

  const schedules = KINDS.map((kind) => makeSchedule({ kind, T: 1000 }));
  save("alphas_cumprod.png", linePlot(schedules.map((s) => Array.from(s.alphasCumprod))));
  save(
    "log_snr.png",
    linePlot(
      schedules.map((s) => Array.from(logSnr(s)).map((v) => Math.max(-15, Math.min(15, v)))),
    ),
  );
  return paths;
}

/** The figures a run's model draws from its weights. */
async function runFigures(dir: string, opts: VisualizeCommandOptions): Promise<string[]> {
  const run = await openRun(dir, { checkpoint: opts.checkpoint, ema: opts.ema });
  try {
    if (!run.model.figures) throw new Error(`${dir}: model ${run.model.name} draws no figures`);
    return await run.model.figures(run.weights, opts.out, { seed: opts.seed, steps: opts.steps });
  } finally {
    run.close();
  }
}
