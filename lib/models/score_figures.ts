/**
 * The score model's figures for `deno task visualize --run`: the forward
 * process, one reverse run, and attention maps.
 */
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { eulerMaruyama } from "../diffusion/score_sde.ts";
import type { Weights } from "../network/layers.ts";
import { heatmap, imageGrid, writePng } from "../runtime/png.ts";
import { Rng } from "../runtime/rng.ts";
import type { FigureOptions, ZooModel } from "./model.ts";
import { NUM_CLASSES, ScoreModel } from "./score.ts";

/** Options of {@link scoreFigures}. */
export interface ScoreFigureOptions extends FigureOptions {
  /** Snapshots of the forward and reverse processes. @default 10 */
  frames?: number;
  /** Attention heads drawn per block. @default 2 */
  heads?: number;
}

/**
 * Writes the score model's figures into `outDir` and returns their paths:
 * `forward.png` (rows: digits; columns: x_t at t from 0 to 1),
 * `reverse.png` (rows: digits 0–9; columns: one sampling run from t = 1 to
 * the final image), and per transformer block and head
 * `attn_<block>_self_head<h>.png` and `attn_<block>_cross_head<h>.png`
 * (heatmaps of the attention weights, queries (pixels) as rows, for the test
 * set's first 0 at t = 0.5).
 */
export async function scoreFigures(
  run: { model: ZooModel; weights: Weights },
  outDir: string,
  opts: ScoreFigureOptions = {},
): Promise<string[]> {
  const model = run.model;
  if (!(model instanceof ScoreModel)) {
    throw new Error(`scoreFigures: needs a score model, got ${model.name}`);
  }
  const seed = opts.seed ?? 0;
  const frames = opts.frames ?? 10;
  const rng = new Rng(seed);
  const paths: string[] = [];
  const { images, labels } = loadMnist("test");
  const idx = Int32Array.from({ length: NUM_CLASSES }, (_, d) => labels.indexOf(d));
  const x0 = mnistToFloat(images, idx); // [10·784]

  const forward = new Float32Array(NUM_CLASSES * frames * 784);
  const noise = rng.normalArray(x0.length);
  for (let f = 0; f < frames; f++) {
    const sigma = f === 0 ? 0 : model.sde.sigma(f / (frames - 1));
    for (let d = 0; d < NUM_CLASSES; d++) {
      for (let p = 0; p < 784; p++) {
        forward[(d * frames + f) * 784 + p] = x0[d * 784 + p] + sigma * noise[d * 784 + p];
      }
    }
  }
  paths.push(join(outDir, "forward.png"));
  writePng(paths.at(-1)!, imageGrid(forward, NUM_CLASSES * frames, 28, 28, frames));

  const digits = Float32Array.from({ length: NUM_CLASSES }, (_, d) => d);
  const guidance = model.config.guidance;
  const rescale = model.config.guidance_rescale;
  const r = await eulerMaruyama(
    (x, t) => model.guidedScore(run.weights, x, t, digits, guidance, rescale),
    model.sde,
    [NUM_CLASSES, 28, 28, 1],
    rng,
    { steps: opts.steps ?? (model.config.sample_steps), keep: frames - 1 },
  );
  const final = (await r.final.data()) as Float32Array;
  r.final.dispose();
  const reverse = new Float32Array(NUM_CLASSES * frames * 784);
  [...r.intermediates, final].forEach((snap, f) => {
    for (let d = 0; d < NUM_CLASSES; d++) {
      reverse.set(snap.subarray(d * 784, (d + 1) * 784), (d * frames + f) * 784);
    }
  });
  paths.push(join(outDir, "reverse.png"));
  writePng(paths.at(-1)!, imageGrid(reverse, NUM_CLASSES * frames, 28, 28, frames));

  const maps = tf.tidy(() => {
    const x = tf.tensor4d(x0.subarray(0, 784), [1, 28, 28, 1]);
    const t = tf.tensor1d([0.5]);
    const xt = model.sde.perturb(x, t, tf.tensor4d(noise.subarray(0, 784), [1, 28, 28, 1]));
    return model.network.applyWithAttention(run.weights, xt as tf.Tensor4D, t, tf.tensor1d([0]))
      .attention;
  });
  for (const [name, m] of Object.entries(maps)) {
    const [, heads, N, M] = m.shape;
    const values = (await m.data()) as Float32Array;
    for (let h = 0; h < Math.min(heads, opts.heads ?? 2); h++) {
      paths.push(join(outDir, `attn_${name.replace(".", "_")}_head${h}.png`));
      writePng(
        paths.at(-1)!,
        heatmap(values.subarray(h * N * M, (h + 1) * N * M), N, M, M < 10 ? 8 : 2),
      );
    }
  }
  tf.dispose(Object.values(maps));
  return paths;
}
