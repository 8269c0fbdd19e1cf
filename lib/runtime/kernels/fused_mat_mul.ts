/**
 * Replacement _FusedMatMul (matmul + bias + activation, what
 * `tf.fused.matMul` runs) for the wasm backend. tfjs-backend-wasm 4.22.0's
 * kernel shares BatchMatMul's slow path for `transposeA`/`transposeB`, so
 * this kernel transposes the operand explicitly (Transpose kernel) and runs
 * the original kernel untransposed. The original also adds the bias wrongly
 * when the product has more than one batch (only the first batch is right),
 * so batched products with a bias, and any bias of rank above 1 (which the
 * original refuses), run as matmul + add + activation instead.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import { inputTensor, swapLastAxes } from "./kernel_util.ts";

const BACKEND = "wasm";

let original: tf.KernelConfig | undefined;

/**
 * The wasm backend's own _FusedMatMul kernel, as it was before
 * the project kernel replaced it (for benchmarks and tests).
 */
export function originalWasmFusedMatMul(): tf.KernelConfig {
  original ??= tf.getKernel(tf._FusedMatMul, BACKEND);
  if (!original) throw new Error("tfjs-backend-wasm has no _FusedMatMul kernel");
  return original;
}

/** Applies a fused activation by name, as `tf.fused.matMul` names them. */
function activate(
  x: tf.Tensor,
  activation: string,
  leakyreluAlpha: number,
  preluWeights: tf.Tensor | undefined,
): tf.Tensor {
  switch (activation) {
    case "linear":
      return x;
    case "relu":
      return tf.relu(x);
    case "relu6":
      return tf.relu6(x);
    case "elu":
      return tf.elu(x);
    case "sigmoid":
      return tf.sigmoid(x);
    case "leakyrelu":
      return tf.leakyRelu(x, leakyreluAlpha);
    case "prelu":
      if (!preluWeights) throw new Error("_FusedMatMul: prelu without weights");
      return tf.prelu(x, preluWeights);
    default:
      throw new Error(`_FusedMatMul: unknown activation ${activation}`);
  }
}

/** act(matMul(a, b) + bias) from separate ops: [...batch, m, n]. */
function unfused(
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
  backend: tf.KernelBackend,
): tf.Tensor {
  const t = (info: tf.TensorInfo | undefined) => info ? inputTensor(info, backend) : undefined;
  const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as {
    transposeA?: boolean;
    transposeB?: boolean;
    activation?: string;
    leakyreluAlpha?: number;
  };
  return tf.tidy(() => {
    const product = tf.matMul(t(inputs.a)!, t(inputs.b)!, transposeA, transposeB);
    return activate(
      tf.add(product, t(inputs.bias)!),
      activation ?? "linear",
      leakyreluAlpha ?? 0.2,
      t(inputs.preluActivationWeights),
    );
  });
}

/**
 * _FusedMatMul kernel function: act(a·b + bias) with a [...batch, m, k] (or
 * [..., k, m] with transposeA), b [...batch, k, n] (or [..., n, k] with
 * transposeB), bias broadcastable to [...batch, m, n]; gives [...batch, m, n].
 */
export function wasmFusedMatMul(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const plain = originalWasmFusedMatMul().kernelFunc;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = (args.attrs ?? {}) as {
    transposeA?: boolean;
    transposeB?: boolean;
  };
  const batch = Math.max(
    tf.util.sizeFromShape(a.shape.slice(0, -2)),
    tf.util.sizeFromShape(b.shape.slice(0, -2)),
  );
  const bias = args.inputs.bias as tf.TensorInfo | undefined;
  // tfjs-backend-wasm takes only a bias of rank 1, added right only to the first batch.
  if (bias && (batch > 1 || bias.shape.length > 1)) {
    return unfused(args.inputs, args.attrs ?? {}, backend);
  }
  if (!transposeA && !transposeB) return plain(args) as tf.TensorInfo;
  const a2 = transposeA ? swapLastAxes(a, backend, BACKEND) : a; // [..., m, k]
  const b2 = transposeB ? swapLastAxes(b, backend, BACKEND) : b; // [..., k, n]
  try {
    return plain({
      inputs: { ...args.inputs, a: a2, b: b2 },
      backend,
      attrs: { ...args.attrs, transposeA: false, transposeB: false },
    }) as tf.TensorInfo;
  } finally {
    if (a2 !== a) backend.disposeData(a2.dataId);
    if (b2 !== b) backend.disposeData(b2.dataId);
  }
}

/** This file's wasm kernel, for {@link installKernels}; it keeps the one it replaces as its fallback. */
export const WASM_FUSED_MAT_MUL: Record<string, KernelMaker> = {
  [tf._FusedMatMul]: (current) => {
    original ??= current;
    return wasmFusedMatMul;
  },
};
