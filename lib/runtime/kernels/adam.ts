/**
 * One Adam (or AdamW) update of a parameter as a single kernel: on wasm a
 * pass over p, m, v and g on the heap writing p', m', v'; on WebGPU three
 * dispatches (one per output). As tf ops the update is about a dozen kernels
 * per parameter (some 660 a step for the MNIST UNet), each a pass over the
 * data with its own dispatch.
 *
 *   m' = β1·m + (1 − β1)·g
 *   v' = β2·v + (1 − β2)·g²
 *   p' = p − stepSize·m' / (√v' + ε̂) − decay·p
 *
 * with stepSize = lr·√(1 − β2ᵗ)/(1 − β1ᵗ), ε̂ = ε·√(1 − β2ᵗ) and decay =
 * lr·weight decay for AdamW (0 for Adam), as lib/trainer/optim.ts computes
 * them. Arithmetic in float64 on wasm, float32 on WebGPU; stored as float32.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";
import { elementwiseProgram, type WebGpuBackendLike, type WebGpuProgram } from "./webgpu.ts";

/** Kernel name: inputs p, m, v, g; outputs p', m', v'. */
export const ADAM = "DmwAdam";

/** The attributes of {@link ADAM}. */
export interface AdamAttrs {
  beta1: number;
  beta2: number;
  stepSize: number;
  epsHat: number;
  decay: number;
}

/** The wasm kernel function. */
export function wasmAdam(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as WasmBackend;
  const { p, m, v, g } = args.inputs as Record<string, tf.TensorInfo>;
  const { beta1, beta2, stepSize, epsHat, decay } = args.attrs as unknown as AdamAttrs;
  for (const t of [p, m, v, g]) {
    if (t.dtype !== "float32" || !tf.util.arraysEqual(t.shape, p.shape)) {
      throw new Error(`${ADAM}: p, m, v and g must be float32 of one shape`);
    }
  }
  const outs = [p, m, v].map(() => backend.makeOutput(p.shape, "float32"));
  // Views only after the last allocation: a growing heap detaches them.
  const [P, M, V, G] = [p, m, v, g].map((t) => backend.typedArrayFromHeap(t));
  const [P2, M2, V2] = outs.map((t) => backend.typedArrayFromHeap(t));
  const c1 = 1 - beta1, c2 = 1 - beta2;
  for (let i = 0; i < P.length; i++) {
    const gi = G[i];
    const mi = beta1 * M[i] + c1 * gi;
    const vi = beta2 * V[i] + c2 * gi * gi;
    M2[i] = mi;
    V2[i] = vi;
    P2[i] = P[i] - stepSize * mi / (Math.sqrt(vi) + epsHat) - decay * P[i];
  }
  return outs;
}

/** The fused update on wasm, for {@link installKernels}. */
export const WASM_ADAM: Record<string, KernelMaker> = { [ADAM]: () => wasmAdam };

/** Whether the current backend has the fused update. */
export function hasAdamKernel(): boolean {
  return tf.getKernel(ADAM, tf.getBackend()) !== undefined;
}

/**
 * One of p', m', v' of the update on WebGPU (three dispatches: a program has
 * one output); each binds only the buffers it reads.
 */
function adamProgram(which: "p" | "m" | "v", shape: number[]): WebGpuProgram {
  const mi = "uniforms.beta1 * m[index] + (1.0 - uniforms.beta1) * gi";
  const vi = "uniforms.beta2 * v[index] + (1.0 - uniforms.beta2) * gi * gi";
  const update = which === "m"
    ? `setOutputAtIndex(index, ${mi});`
    : which === "v"
    ? `setOutputAtIndex(index, ${vi});`
    : `let mi = ${mi};
          let vi = ${vi};
          setOutputAtIndex(index,
            p[index] - uniforms.stepSize * mi / (sqrt(vi) + uniforms.epsHat) - uniforms.decay * p[index]);`;
  return elementwiseProgram({
    shaderKey: `dmw_adam_${which}`,
    variableNames: which === "p" ? ["p", "m", "v", "g"] : [which, "g"],
    shape,
    uniforms: "beta1 : f32, beta2 : f32, stepSize : f32, epsHat : f32, decay : f32,",
    body: `let gi = g[index];
          ${update}`,
  });
}

/** The WebGPU kernel function. */
export function webgpuAdam(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as unknown as WebGpuBackendLike;
  const { p, m, v, g } = args.inputs as Record<string, tf.TensorInfo>;
  const a = args.attrs as unknown as AdamAttrs;
  const uniforms = [a.beta1, a.beta2, a.stepSize, a.epsHat, a.decay].map((x) => ({
    type: "float32",
    data: [x],
  }));
  const inputs = { p: [p, m, v, g], m: [m, g], v: [v, g] };
  return (["p", "m", "v"] as const).map((which) =>
    backend.runWebGPUProgram(adamProgram(which, p.shape), inputs[which], "float32", uniforms)
  );
}

/** The fused update on WebGPU, for {@link installKernels}. */
export const WEBGPU_ADAM: Record<string, KernelMaker> = { [ADAM]: () => webgpuAdam };
