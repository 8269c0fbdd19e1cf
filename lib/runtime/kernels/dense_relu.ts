/**
 * A Linear layer with ReLU (y = max(a·W + b, 0)) that stays fused while
 * gradients are recorded. tfjs-core runs `fused.matMul` with an activation
 * unfused whenever a gradient is being taped (its `shouldFuse`): a matrix
 * product, a broadcasting Add of the bias and a Relu forward, and backward a
 * Step, a Cast, a Multiply and a Sum before the two products. Here the
 * forward pass is the `_FusedMatMul` kernel itself and the gradient's
 * elementwise part one kernel (dz = dy·[y > 0] and db = Σ_rows dz) before
 * the two products. The oneDNN path has that kernel; elsewhere `dense` keeps
 * tfjs's own.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { Onednn } from "../onednn.ts";
import type { WasmBackend } from "./kernel_util.ts";

/** Kernel name: inputs dy [M, N] and y [M, N] (the ReLU's output); outputs dz [M, N] and db [N]. */
export const RELU_BIAS_GRAD = "DmwReluBiasGrad";

/**
 * The gradient kernel on oneDNN, for {@link installKernels}: dz by oneDNN's
 * ReLU backward pass from y, and db = 1ᵀ·dz as a matrix product. (As a
 * JavaScript loop on plain wasm it was slower than the tf ops it replaces.)
 */
export function onednnReluBiasGradMakers(dnnl: Onednn): Record<string, KernelMaker> {
  return {
    [RELU_BIAS_GRAD]: () => (args: Parameters<tf.KernelFunc>[0]) => {
      const { dy, y } = args.inputs as { dy: tf.TensorInfo; y: tf.TensorInfo };
      const [M, N] = y.shape;
      if (
        y.shape.length !== 2 || dy.shape.length !== 2 || dy.shape[0] !== M ||
        dy.shape[1] !== N || y.dtype !== "float32" || dy.dtype !== "float32"
      ) {
        throw new Error(`${RELU_BIAS_GRAD}: wants float32 dy and y of one shape [M, N]`);
      }
      const backend = args.backend as WasmBackend;
      const dz = backend.makeOutput([M, N], "float32");
      const db = backend.makeOutput([N], "float32");
      const dbs = backend.typedArrayFromHeap(db);
      if (M * N === 0) {
        dbs.fill(0);
        return [dz, db];
      }
      // Views only after the last allocation: a growing heap detaches them.
      const dzs = backend.typedArrayFromHeap(dz);
      dnnl.relu({
        kind: "backward",
        y: backend.typedArrayFromHeap(y),
        dy: backend.typedArrayFromHeap(dy),
        dx: dzs,
      });
      dnnl.columnSums(dzs, M, N, dbs, 1);
      return [dz, db];
    },
  };
}

/** max(a·W + b, 0) for a [M, K], W [K, N], b [N], fused forward and backward. */
export const denseReluByKernels: (a: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor) => tf.Tensor2D = tf
  .customGrad((...args) => {
    const [a, w, b] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor];
    const save = args[3] as tf.GradSaveFunc;
    const [M, K] = a.shape, [, N] = w.shape;
    const y3 = tf.engine().runKernel(
      tf._FusedMatMul,
      { a: tf.reshape(a, [1, M, K]), b: tf.reshape(w, [1, K, N]), bias: b },
      { transposeA: false, transposeB: false, activation: "relu", leakyreluAlpha: 0 },
    ) as tf.Tensor;
    const y = tf.reshape(y3, [M, N]);
    save([a, w, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [a, w, y] = saved;
        const [dz, db] = tf.engine().runKernel(RELU_BIAS_GRAD, { dy, y }) as tf.Tensor[];
        return [
          tf.matMul(dz, w, false, true),
          tf.matMul(a, dz, true, false),
          tf.reshape(db, b.shape),
        ];
      },
    };
  }) as (a: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor) => tf.Tensor2D;
