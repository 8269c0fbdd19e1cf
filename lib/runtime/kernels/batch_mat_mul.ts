/**
 * Replacement BatchMatMul for the wasm backend. tfjs-backend-wasm 4.22.0's
 * kernel is 13–24× slower with `transposeA` or `transposeB` than without
 * (784×256·256×512: ~190 ms against ~8 ms), and every matmul gradient asks
 * for a transposed product. This kernel transposes the operand explicitly
 * (Transpose kernel, cheap) and runs the original kernel untransposed.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import { swapLastAxes } from "./kernel_util.ts";

const BACKEND = "wasm";

let original: tf.KernelConfig | undefined;

/**
 * The wasm backend's own BatchMatMul kernel, as it was before
 * the project kernel replaced it (for benchmarks and tests).
 */
export function originalWasmBatchMatMul(): tf.KernelConfig {
  original ??= tf.getKernel(tf.BatchMatMul, BACKEND);
  if (!original) throw new Error("tfjs-backend-wasm has no BatchMatMul kernel");
  return original;
}

/**
 * BatchMatMul kernel function: a [...batch, m, k] (or [..., k, m] with
 * transposeA) times b [...batch, k, n] (or [..., n, k] with transposeB) gives
 * [...batch, m, n].
 */
export function wasmBatchMatMul(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const plain = originalWasmBatchMatMul().kernelFunc;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = (args.attrs ?? {}) as {
    transposeA?: boolean;
    transposeB?: boolean;
  };
  if (!transposeA && !transposeB) return plain(args) as tf.TensorInfo;
  const a2 = transposeA ? swapLastAxes(a, backend, BACKEND) : a; // [..., m, k]
  const b2 = transposeB ? swapLastAxes(b, backend, BACKEND) : b; // [..., k, n]
  try {
    return plain({
      inputs: { a: a2, b: b2 },
      backend,
      attrs: { ...args.attrs, transposeA: false, transposeB: false },
    }) as tf.TensorInfo;
  } finally {
    if (a2 !== a) backend.disposeData(a2.dataId);
    if (b2 !== b) backend.disposeData(b2.dataId);
  }
}

/** This file's wasm kernel, for {@link installKernels}; it keeps the one it replaces as its fallback. */
export const WASM_BATCH_MAT_MUL: Record<string, KernelMaker> = {
  [tf.BatchMatMul]: (current) => {
    original ??= current;
    return wasmBatchMatMul;
  },
};
