/**
 * Training-step benchmark and kernel profile: one DDPM step (loss, gradients,
 * Adam) of the MLP on batch 1024 of 2-D points and of the MNIST UNet on batch
 * 64 of 28×28×1, timed on the chosen backend, with the kernel times of one
 * profiled step summed per kernel name.
 *
 *   npx -y deno@2.9.6 run -A --no-check lib/bench/train_step.ts [wasm|cpu] [mlp|unet]…
 */
import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, initBackend } from "../runtime/backend.ts";
import { Rng } from "../runtime/rng.ts";
import type { Network } from "../network/layers.ts";
import { MLPDiffusion } from "../network/mlp.ts";
import { UNet } from "../network/unet.ts";
import { GaussianDiffusion } from "../diffusion/gaussian.ts";
import { makeSchedule } from "../diffusion/schedules.ts";
import { UniformTimesteps } from "../diffusion/timesteps.ts";
import { Adam } from "../trainer/optim.ts";
import { trainStep } from "../trainer/trainer.ts";
import { TRAIN_ONLY, type ZooModel } from "../models/model.ts";

/** One network's timing and profile. */
export interface StepRecord {
  /** `mlp` or `unet`. */
  name: string;
  /** Median milliseconds per step (loss read back included). */
  medianMs: number;
  /** Fastest step, milliseconds. */
  bestMs: number;
  /** Timed steps. */
  iters: number;
  /**
   * Self milliseconds of one profiled step per kernel (a kernel's time less
   * that of the kernels it ran inside it), largest first.
   */
  kernels: [string, number][];
}

/** The benchmarked networks: constructor, batch shape, timed steps. */
const CASES: Record<string, { net: () => Network; shape: number[]; iters: number }> = {
  mlp: { net: () => new MLPDiffusion({ dIn: 2 }), shape: [1024, 2], iters: 20 },
  unet: { net: () => new UNet(), shape: [64, 28, 28, 1], iters: 3 },
};

/** A ZooModel whose batch is a fixed random x0 with fresh timesteps and noise. */
function syntheticModel(name: string, net: Network, x0: tf.Tensor): ZooModel {
  const proc = new GaussianDiffusion(makeSchedule({ kind: "linear", T: 1000 }));
  const ts = new UniformTimesteps(1000);
  const batch = x0.shape[0];
  return {
    name,
    sampling: TRAIN_ONLY,
    init: (r) => net.init(r),
    loss: (w, r) => {
      const { t } = ts.draw(batch, r);
      const noise = tf.randomNormal(x0.shape, 0, 1, "float32", r.seed());
      const per = proc.perSampleLoss((x, tt) => net.apply(w, x, tt), x0, t, noise);
      return { loss: tf.mean(per) as tf.Scalar, perSample: per, position: new Float32Array(batch) };
    },
    sample: () => Promise.reject(new Error("benchmark model: no sampling")),
    dispose() {},
  };
}

/**
 * Runs `f` with every kernel of the current backend timed, and returns each
 * kernel's self milliseconds. A kernel's self time excludes kernels it
 * called (project kernels are built from others); kernels are assumed
 * synchronous, as they are on wasm and cpu.
 */
export async function selfTimes(f: () => Promise<void>): Promise<Map<string, number>> {
  const backend = tf.getBackend();
  const configs = tf.getKernelsForBackend(backend);
  const self = new Map<string, number>();
  const stack: number[] = [];
  for (const c of configs) {
    tf.unregisterKernel(c.kernelName, backend);
    tf.registerKernel({
      ...c,
      kernelFunc: (args) => {
        stack.push(0);
        const t0 = performance.now();
        try {
          return c.kernelFunc(args);
        } finally {
          const total = performance.now() - t0;
          const inner = stack.pop()!;
          if (stack.length) stack[stack.length - 1] += total;
          self.set(c.kernelName, (self.get(c.kernelName) ?? 0) + total - inner);
        }
      },
    });
  }
  try {
    await f();
  } finally {
    for (const c of configs) {
      tf.unregisterKernel(c.kernelName, backend);
      tf.registerKernel(c);
    }
  }
  return self;
}

/** Times `iters` training steps of one case (after two warm-up steps) and profiles one more. */
export async function benchStep(name: string): Promise<StepRecord> {
  const c = CASES[name];
  if (!c) throw new Error(`unknown case ${name}; one of ${Object.keys(CASES).join(", ")}`);
  const rng = new Rng(0);
  const x0 = tf.randomNormal(c.shape);
  const model = syntheticModel(name, c.net(), x0);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(model.init(rng))) params[k] = tf.variable(t, true, name + k);
  const adam = new Adam(params);
  const step = async (s: number) => {
    const r = trainStep(model, params, adam, rng, s, 1e-3, 0);
    await r.loss.data();
    tf.dispose([r.loss, r.perSample]);
  };
  await step(0);
  await step(1);
  const times: number[] = [];
  for (let i = 0; i < c.iters; i++) {
    const t0 = performance.now();
    await step(i + 2);
    times.push(performance.now() - t0);
  }
  const agg = await selfTimes(() => step(c.iters + 2));
  tf.dispose([x0, ...Object.values(params)]);
  adam.dispose();
  times.sort((a, b) => a - b);
  return {
    name,
    medianMs: times[Math.floor(times.length / 2)],
    bestMs: times[0],
    iters: c.iters,
    kernels: [...agg].sort((a, b) => b[1] - a[1]),
  };
}

if (import.meta.main) {
  const backend = (Deno.args.find((a) => ["wasm", "cpu"].includes(a)) ?? "wasm") as BackendName;
  const names = Deno.args.filter((a) => a in CASES);
  await initBackend(backend, null);
  for (const name of names.length ? names : Object.keys(CASES)) {
    const r = await benchStep(name);
    console.log(
      `${r.name}: median ${r.medianMs.toFixed(1)} ms/step, best ${
        r.bestMs.toFixed(1)
      } (${r.iters} steps, ${backend})`,
    );
    console.log(
      "  " + r.kernels.slice(0, 14).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", "),
    );
  }
}
