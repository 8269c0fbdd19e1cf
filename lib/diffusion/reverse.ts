/**
 * One reverse-process interface for the whole zoo, and one loop that drives
 * any of them. A {@link ReverseProcess} fixes its grid (timesteps, σ's or
 * flow times), draws the prior, and takes one step from position i, calling
 * the network as often as the method needs (Heun twice, DDPM once, D3PM once
 * with logits). {@link runReverse} owns what every sampler would otherwise
 * repeat: the step loop, progress, freeing each intermediate, yielding to
 * the event loop, and counting network evaluations (NFE).
 */
import type * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";

/**
 * The network as a reverse process sees it: the batch x and one time value
 * shared by the batch, in the model's own time units (a discrete step index,
 * 1000·t for flows, EDM's rescaled log σ). Conditioning is closed over.
 */
export type NetFn = (x: tf.Tensor, t: number) => tf.Tensor;

/** A reverse process: a grid, a prior, and a step. */
export interface ReverseProcess {
  /** The sampler's name, as `--sampler` takes it. */
  readonly name: string;
  /** Fixes the grid for `steps` steps; returns the number of {@link step} calls. */
  setSteps(steps: number): number;
  /** The starting point, pure noise (or all-masked tokens) of `shape`. */
  prior(shape: number[], rng: Rng): tf.Tensor;
  /**
   * One step from position `i` (0 = the noisiest): returns the next x and
   * leaves `x` alone. Calls `net` as often as the method needs.
   */
  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor | Promise<tf.Tensor>;
  /** Frees state kept between steps (multistep history). */
  reset(): void;
}

/** Options of {@link runReverse}. */
export interface ReverseOptions {
  /** Network evaluations one `net` call costs per sample (2 for guidance run as one doubled batch). @default 1 */
  costPerCall?: number;
  /** Called after each step with the steps done, the total and the new x (do not keep x). */
  onStep?: (done: number, total: number, x: tf.Tensor) => void | Promise<void>;
  /** Starts from this x instead of the prior (the loop takes ownership). */
  start?: tf.Tensor;
}

/** What {@link runReverse} returns. */
export interface ReverseResult {
  /** The final sample (the caller disposes it). */
  x: tf.Tensor;
  /** Network evaluations per sample. */
  nfe: number;
}

/**
 * Runs `process` for `steps` steps from its prior of `shape` (or `opts.start`):
 * every intermediate is freed, the event loop gets a turn every few steps,
 * and the network evaluations are counted.
 */
export async function runReverse(
  process: ReverseProcess,
  net: NetFn,
  steps: number,
  shape: number[],
  rng: Rng,
  opts: ReverseOptions = {},
): Promise<ReverseResult> {
  const total = process.setSteps(steps);
  let calls = 0;
  const counted: NetFn = (x, t) => {
    calls++;
    return net(x, t);
  };
  let x = opts.start ?? process.prior(shape, rng);
  try {
    for (let i = 0; i < total; i++) {
      const next = await process.step(i, x, counted, rng);
      x.dispose();
      x = next;
      await opts.onStep?.(i + 1, total, x);
      if (i % 25 === 24) await new Promise((r) => setTimeout(r, 0));
    }
  } catch (e) {
    x.dispose();
    throw e;
  } finally {
    process.reset();
  }
  return { x, nfe: calls * (opts.costPerCall ?? 1) };
}
