/**
 * Exponential moving averages of the parameters, any number of decays in one
 * run, with optional warmup: decay_eff = min(decay, 1 − (1 + step/γ)^−p).
 */
import * as tf from "@tensorflow/tfjs-core";
import { variableFrom } from "./optim.ts";

/** EMA warmup (Karras et al. / improved-diffusion style). */
export interface EmaWarmup {
  /** γ. @default 1 */
  gamma: number;
  /** p. @default 2/3 */
  power: number;
}

/** The effective decay at `step` (0-based count of updates so far). */
export function emaDecayAt(decay: number, step: number, warmup?: EmaWarmup): number {
  if (!warmup) return decay;
  return Math.max(0, Math.min(decay, 1 - (1 + step / warmup.gamma) ** -warmup.power));
}

/** One EMA per decay, each a record of variables shaped like the parameters. */
export class EmaSet {
  /** decay (as written, e.g. "0.999") → averaged parameters. */
  readonly averages = new Map<string, Record<string, tf.Variable>>();

  /** Starts every average at the current parameters. */
  constructor(
    params: Record<string, tf.Variable>,
    readonly decays: number[],
    readonly warmup?: EmaWarmup,
  ) {
    for (const d of decays) {
      const avg: Record<string, tf.Variable> = {};
      for (const [k, p] of Object.entries(params)) avg[k] = variableFrom(tf.clone(p));
      this.averages.set(String(d), avg);
    }
  }

  /** ema ← d·ema + (1 − d)·p for every decay. */
  update(params: Record<string, tf.Variable>, step: number): void {
    tf.tidy(() => {
      for (const d of this.decays) {
        const eff = emaDecayAt(d, step, this.warmup);
        const avg = this.averages.get(String(d))!;
        for (const [k, p] of Object.entries(params)) {
          avg[k].assign(tf.add(tf.mul(avg[k], eff), tf.mul(p, 1 - eff)));
        }
      }
    });
  }

  /** Frees all averages. */
  dispose(): void {
    for (const avg of this.averages.values()) Object.values(avg).forEach((v) => v.dispose());
  }
}
