/**
 * Adam and AdamW over a record of variables, with their moments kept as
 * named tensors so a checkpoint can hold them, plus global-norm clipping and
 * the learning-rate schedule (linear warmup, then cosine, linear or none).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Weights } from "../network/layers.ts";
import { ADAM, adamInputs } from "../runtime/kernels/adam.ts";
import { hasKernel } from "../runtime/kernels/install.ts";

/** Optimizer settings. */
export interface OptimizerConfig {
  /** `adam`, or `adamw` with decoupled weight decay. @default "adam" */
  kind?: "adam" | "adamw";
  /** β1. @default 0.9 */
  beta1?: number;
  /** β2. @default 0.999 */
  beta2?: number;
  /** ε. @default 1e-8 */
  eps?: number;
  /** Decoupled weight decay (AdamW only). @default 0.01 */
  weightDecay?: number;
}

/** A non-trainable variable holding `t`'s values; `t` itself is freed. */
export function variableFrom(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

/** Adam / AdamW state: first and second moments per parameter and the step count. */
export class Adam {
  readonly config: Required<OptimizerConfig>;
  /** Moments, named `m/<param>` and `v/<param>`. */
  readonly moments: Record<string, tf.Variable> = {};
  /** Number of updates taken. */
  t = 0;

  /** An optimizer for the variables in `params`. */
  constructor(params: Record<string, tf.Variable>, config: OptimizerConfig = {}) {
    this.config = {
      kind: "adam",
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      ...config,
    };
    for (const [name, p] of Object.entries(params)) {
      this.moments[`m/${name}`] = variableFrom(tf.zerosLike(p));
      this.moments[`v/${name}`] = variableFrom(tf.zerosLike(p));
    }
  }

  /** Applies one update with learning rate `lr`. */
  apply(params: Record<string, tf.Variable>, grads: Weights, lr: number): void {
    this.t += 1;
    const { beta1, beta2, eps, kind, weightDecay } = this.config;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    const stepSize = lr * Math.sqrt(bc2) / bc1;
    if (hasKernel(ADAM)) {
      const names = Object.keys(params).filter((name) => grads[name]);
      const operands = names.map((name): [tf.Variable, tf.Variable, tf.Variable, tf.Tensor] => [
        params[name],
        this.moments[`m/${name}`],
        this.moments[`v/${name}`],
        grads[name],
      ]);
      const attrs = {
        beta1,
        beta2,
        stepSize,
        epsHat: eps * Math.sqrt(bc2),
        decay: kind === "adamw" ? lr * weightDecay : 0,
        count: names.length,
      };
      const out = tf.engine().runKernel(ADAM, adamInputs(operands), attrs) as tf.Tensor[];
      operands.forEach(([p, m, v], i) => {
        p.assign(out[3 * i]);
        m.assign(out[3 * i + 1]);
        v.assign(out[3 * i + 2]);
      });
      tf.dispose(out);
      return;
    }
    tf.tidy(() => {
      for (const [name, p] of Object.entries(params)) {
        const g = grads[name];
        if (!g) continue;
        const m = this.moments[`m/${name}`];
        const v = this.moments[`v/${name}`];
        const m2 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v2 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        m.assign(m2);
        v.assign(v2);
        let next = tf.sub(
          p,
          tf.mul(tf.div(m2, tf.add(tf.sqrt(v2), eps * Math.sqrt(bc2))), stepSize),
        );
        if (kind === "adamw" && weightDecay > 0) next = tf.sub(next, tf.mul(p, lr * weightDecay));
        p.assign(next);
      }
    });
  }

  /** Frees the moments. */
  dispose(): void {
    Object.values(this.moments).forEach((v) => v.dispose());
  }
}

/**
 * Scales gradients so their global L2 norm is at most `maxNorm`; returns the
 * scaled gradients (new tensors) and the norm before scaling as a scalar.
 */
export function clipByGlobalNorm(
  grads: Weights,
  maxNorm: number,
): { grads: Weights; norm: tf.Scalar } {
  return tf.tidy(() => {
    const norm = tf.sqrt(
      tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))),
    ) as tf.Scalar;
    const scale = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
    const out: Weights = {};
    for (const [k, g] of Object.entries(grads)) out[k] = tf.mul(g, scale);
    return { grads: out, norm };
  });
}

/** Learning-rate schedule settings. */
export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps from 0. @default 0 */
  warmup?: number;
  /** Decay after warmup to `minLr` at `total` steps. @default "none" */
  decay?: "none" | "cosine" | "linear";
  /** Final learning rate of the decay. @default 0 */
  minLr?: number;
  /** Total training steps. */
  total: number;
}

/** The learning rate at `step` (0-based). */
export function learningRate(s: LrSchedule, step: number): number {
  const warmup = s.warmup ?? 0;
  if (warmup > 0 && step < warmup) return s.lr * (step + 1) / warmup;
  const decay = s.decay ?? "none";
  if (decay === "none") return s.lr;
  const minLr = s.minLr ?? 0;
  const frac = Math.min(1, (step - warmup) / Math.max(1, s.total - warmup));
  const shape = decay === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * frac)) : 1 - frac;
  return minLr + (s.lr - minLr) * shape;
}
