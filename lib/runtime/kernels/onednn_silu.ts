/**
 * SiLU (x·σ(x)) and its gradient as one oneDNN eltwise pass each (its
 * "swish"), on the wasm heap in place. As tf ops the activation is Sigmoid
 * and Multiply forward, and backward four Multiplies, a Sub and an Add (the
 * product rule through σ' = σ(1 − σ)): eight passes over the activation for
 * what oneDNN does in two, vectorised. JavaScript cannot stand in here:
 * V8's Math.exp costs about 20 ns a value, ten times the wasm kernels.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { Onednn } from "../onednn.ts";
import type { WasmBackend } from "./kernel_util.ts";

/** Kernel name of the forward pass: input x; output y = x·σ(x). */
export const SILU = "DmwSilu";
/** Kernel name of the gradient: inputs dy, x; output dx. */
export const SILU_GRAD = "DmwSiluGrad";

type Args = Parameters<tf.KernelFunc>[0];

function float32(t: tf.TensorInfo, kernel: string): void {
  if (t.dtype !== "float32") throw new Error(`${kernel}: wants float32, got ${t.dtype}`);
}

/** The two kernels on `dnnl`, for {@link installKernels}. */
export function onednnSiluMakers(dnnl: Onednn): Record<string, KernelMaker> {
  return {
    [SILU]: () => (args: Args) => {
      const { x } = args.inputs as { x: tf.TensorInfo };
      float32(x, SILU);
      const backend = args.backend as WasmBackend;
      const out = backend.makeOutput(x.shape, "float32");
      if (tf.util.sizeFromShape(x.shape) > 0) {
        // Views only after the last allocation: a growing heap detaches them.
        dnnl.silu({
          kind: "forward",
          x: backend.typedArrayFromHeap(x),
          y: backend.typedArrayFromHeap(out),
        });
      }
      return out;
    },
    [SILU_GRAD]: () => (args: Args) => {
      const { dy, x } = args.inputs as { dy: tf.TensorInfo; x: tf.TensorInfo };
      float32(x, SILU_GRAD);
      float32(dy, SILU_GRAD);
      const backend = args.backend as WasmBackend;
      const out = backend.makeOutput(x.shape, "float32");
      if (tf.util.sizeFromShape(x.shape) > 0) {
        dnnl.silu({
          kind: "backward",
          x: backend.typedArrayFromHeap(x),
          dy: backend.typedArrayFromHeap(dy),
          dx: backend.typedArrayFromHeap(out),
        });
      }
      return out;
    },
  };
}

/** SiLU of x by the kernels, with its gradient; the current backend must have them. */
export const siluByKernels: (x: tf.Tensor) => tf.Tensor = tf.customGrad((...args) => {
  const x = args[0] as tf.Tensor;
  const save = args[1] as tf.GradSaveFunc;
  save([x]);
  return {
    value: tf.engine().runKernel(SILU, { x }) as tf.Tensor,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.engine().runKernel(SILU_GRAD, { dy, x: saved[0] }) as tf.Tensor,
  };
}) as (x: tf.Tensor) => tf.Tensor;
