/**
 * Flow matching with straight paths (rectified flow: Liu et al. 2022;
 * Lipman et al. 2022): x_t = (1 − t)·x0 + t·ε for t in [0, 1], and the
 * network regresses the constant velocity v = ε − x0 of that path. Sampling
 * integrates the ODE dx/dt = v(x, t) from pure noise at t = 1 down to t = 0,
 * with Euler or Heun, through the same reverse-process interface as the
 * other samplers. The network sees 1000·t as its time input, the range a
 * DDPM network's step embedding is built for.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import type { NetFn, ReverseProcess } from "./reverse.ts";

/** The network's time input for flow time t. */
export const FLOW_TIME_SCALE = 1000;

/** How training draws t. */
export type FlowTimes = "uniform" | "logit-normal";

/**
 * Training times: U(0, 1), or logit-normal (Esser et al. 2024: t = sigmoid(m + s·n),
 * n ~ N(0, 1), m = 0, s = 1), which puts more weight mid-path.
 */
export function drawFlowTimes(n: number, kind: FlowTimes, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => {
    if (kind === "uniform") return rng.uniform();
    return 1 / (1 + Math.exp(-rng.normal()));
  });
}

/** x_t = (1 − t)·x0 + t·ε for per-sample t [B] (broadcast over the other axes). */
export function flowInterpolate(x0: tf.Tensor, noise: tf.Tensor, t: Float32Array): tf.Tensor {
  return tf.tidy(() => {
    const tt = tf.tensor(t, [t.length, ...new Array(x0.rank - 1).fill(1)]);
    return tf.add(tf.mul(x0, tf.sub(1, tt)), tf.mul(noise, tt));
  });
}

/** The velocity target ε − x0. */
export function flowTarget(x0: tf.Tensor, noise: tf.Tensor): tf.Tensor {
  return tf.sub(noise, x0);
}

/** The flow samplers. */
export const FLOW_SAMPLERS = ["euler", "heun"] as const;

/**
 * Euler or Heun on dx/dt = v(x, t) over the uniform grid t_i = 1 − i/N. In
 * σ-space (x/(1 − t) = x0 + σε with σ = t/(1 − t)) the Euler step is the same
 * update as the σ-space Euler sampler's, so the two families agree.
 */
class FlowOdeSampler implements ReverseProcess {
  #times: number[] = [];

  constructor(readonly name: "euler" | "heun") {}

  setSteps(steps: number): number {
    if (!Number.isInteger(steps) || steps < 1) {
      throw new Error(`flow sampler: steps must be an integer ≥ 1, got ${steps}`);
    }
    this.#times = Array.from({ length: steps + 1 }, (_, i) => 1 - i / steps);
    return steps;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    return tf.randomNormal(shape, 0, 1, "float32", rng.seed());
  }

  step(i: number, x: tf.Tensor, net: NetFn): tf.Tensor {
    const t = this.#times[i];
    const next = this.#times[i + 1];
    const dt = next - t;
    return tf.tidy(() => {
      const v = net(x, t * FLOW_TIME_SCALE);
      const x2 = tf.add(x, tf.mul(v, dt));
      if (this.name === "euler" || next === 0) return x2;
      const v2 = net(x2, next * FLOW_TIME_SCALE);
      return tf.add(x, tf.mul(tf.add(v, v2), dt / 2));
    });
  }

  reset(): void {}
}

/** Creates a flow sampler by name. */
export function makeFlowSampler(name: string): ReverseProcess {
  if (name === "euler" || name === "heun") return new FlowOdeSampler(name);
  throw new Error(`unknown flow sampler "${name}" (${FLOW_SAMPLERS.join(", ")})`);
}
