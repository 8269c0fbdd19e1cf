/**
 * One Adam (or AdamW) update of every parameter as a single kernel: on wasm
 * a pass over each parameter's p, m, v and g on the heap writing p', m',
 * v'; on WebGPU three dispatches per parameter (one per output). As tf ops
 * the update is about a dozen kernels per parameter (some 660 a step for the
 * MNIST UNet), each a pass over the data with its own dispatch.
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

/**
 * Kernel name: inputs p0, m0, v0, g0, p1, … (attribute `count` parameters);
 * outputs p'0, m'0, v'0, p'1, ….
 */
export const ADAM = "DmwAdam";

/** The attributes of {@link ADAM}. */
export interface AdamAttrs {
  beta1: number;
  beta2: number;
  stepSize: number;
  epsHat: number;
  decay: number;
  /** How many parameters the inputs hold. */
  count: number;
}

/** The i-th parameter's p, m, v and g among the kernel's inputs, checked. */
function operands(inputs: tf.NamedTensorInfoMap, i: number): tf.TensorInfo[] {
  const t = ["p", "m", "v", "g"].flatMap((k) => inputs[`${k}${i}`] ?? []);
  if (
    t.length !== 4 ||
    t.some((x) => x.dtype !== "float32" || !tf.util.arraysEqual(x.shape, t[0].shape))
  ) {
    throw new Error(`${ADAM}: p${i}, m${i}, v${i} and g${i} must be float32 of one shape`);
  }
  return t;
}

/** The inputs of one update of `params` (name → [p, m, v, g]), and its attributes. */
export function adamInputs(
  params: [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor][],
): tf.NamedTensorMap {
  const inputs: tf.NamedTensorMap = {};
  params.forEach(([p, m, v, g], i) => {
    Object.assign(inputs, { [`p${i}`]: p, [`m${i}`]: m, [`v${i}`]: v, [`g${i}`]: g });
  });
  return inputs;
}

/** The wasm kernel function. */
export function wasmAdam(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as WasmBackend;
  const { beta1, beta2, stepSize, epsHat, decay, count } = args.attrs as unknown as AdamAttrs;
  const params = Array.from({ length: count }, (_, i) => operands(args.inputs, i));
  const outs = params.map(([p]) => [0, 1, 2].map(() => backend.makeOutput(p.shape, "float32")));
  const c1 = 1 - beta1, c2 = 1 - beta2;
  params.forEach((ins, k) => {
    // Views only after the last allocation: a growing heap detaches them.
    const [P, M, V, G] = ins.map((t) => backend.typedArrayFromHeap(t));
    const [P2, M2, V2] = outs[k].map((t) => backend.typedArrayFromHeap(t));
    for (let i = 0; i < P.length; i++) {
      const gi = G[i];
      const mi = beta1 * M[i] + c1 * gi;
      const vi = beta2 * V[i] + c2 * gi * gi;
      M2[i] = mi;
      V2[i] = vi;
      P2[i] = P[i] - stepSize * mi / (Math.sqrt(vi) + epsHat) - decay * P[i];
    }
  });
  return outs.flat();
}

/** The fused update on wasm, for {@link installKernels}. */
export const WASM_ADAM: Record<string, KernelMaker> = { [ADAM]: () => wasmAdam };

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
  const a = args.attrs as unknown as AdamAttrs;
  const uniforms = [a.beta1, a.beta2, a.stepSize, a.epsHat, a.decay].map((x) => ({
    type: "float32",
    data: [x],
  }));
  return Array.from({ length: a.count }, (_, i) => {
    const [p, m, v, g] = operands(args.inputs, i);
    const inputs = { p: [p, m, v, g], m: [m, g], v: [v, g] };
    return (["p", "m", "v"] as const).map((which) =>
      backend.runWebGPUProgram(adamProgram(which, p.shape), inputs[which], "float32", uniforms)
    );
  }).flat();
}

/** The fused update on WebGPU, for {@link installKernels}. */
export const WEBGPU_ADAM: Record<string, KernelMaker> = { [ADAM]: () => webgpuAdam };
