/**
 * Nearest ×2 upsampling of NHWC images and its gradient as one pass each
 * over the wasm heap: each input pixel written to its 2×2 block, and each
 * gradient pixel the sum of its 2×2 block. As tf ops (lib/network/layers.ts)
 * the forward pass is two concatenations and the gradient four slices and
 * two additions, each a pass over the image.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";

/** Kernel name of the forward pass: input x [B, H, W, C]; output [B, 2H, 2W, C]. */
export const UPSAMPLE2X = "DmwUpsample2x";
/** Kernel name of the gradient: input dy [B, 2H, 2W, C]; output dx [B, H, W, C]. */
export const UPSAMPLE2X_GRAD = "DmwUpsample2xGrad";

type Args = Parameters<tf.KernelFunc>[0];

function check(t: tf.TensorInfo, kernel: string, even: boolean): number[] {
  const [B, H, W, C] = t.shape;
  if (t.shape.length !== 4 || t.dtype !== "float32" || (even && (H % 2 || W % 2))) {
    throw new Error(
      `${kernel}: wants float32 [B, H, W, C]${even ? " with H and W even" : ""}, ` +
        `got ${t.dtype} [${t.shape}]`,
    );
  }
  return [B, H, W, C];
}

/** out [B, 2H, 2W, C] from x [B, H, W, C]: each pixel to its 2×2 block. */
export function upsample2xInto(x: Float32Array, out: Float32Array, dims: number[]): void {
  const [B, H, W, C] = dims;
  const rowIn = W * C, rowOut = 2 * W * C;
  for (let r = 0; r < B * H; r++) {
    const src = r * rowIn, dst = 2 * r * rowOut;
    for (let j = 0; j < W; j++) {
      const s = src + j * C, d = dst + 2 * j * C;
      for (let c = 0; c < C; c++) {
        const v = x[s + c];
        out[d + c] = v;
        out[d + C + c] = v;
      }
    }
    out.copyWithin(dst + rowOut, dst, dst + rowOut);
  }
}

/** dx [B, H, W, C] from dy [B, 2H, 2W, C]: each pixel the sum of its 2×2 block. */
export function upsample2xGradInto(dy: Float32Array, dx: Float32Array, dims: number[]): void {
  const [B, H, W, C] = dims;
  const rowOut = 2 * W * C;
  for (let r = 0; r < B * H; r++) {
    const top = 2 * r * rowOut, bottom = top + rowOut, dst = r * W * C;
    for (let j = 0; j < W; j++) {
      const a = top + 2 * j * C, b = bottom + 2 * j * C, d = dst + j * C;
      for (let c = 0; c < C; c++) {
        dx[d + c] = dy[a + c] + dy[a + C + c] + dy[b + c] + dy[b + C + c];
      }
    }
  }
}

/** This file's wasm kernels, for {@link installKernels}. */
export const WASM_UPSAMPLE: Record<string, KernelMaker> = {
  [UPSAMPLE2X]: () => (args: Args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const [B, H, W, C] = check(x, UPSAMPLE2X, false);
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput([B, 2 * H, 2 * W, C], "float32");
    // Views only after the last allocation: a growing heap detaches them.
    upsample2xInto(backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(out), [B, H, W, C]);
    return out;
  },
  [UPSAMPLE2X_GRAD]: () => (args: Args) => {
    const { dy } = args.inputs as { dy: tf.TensorInfo };
    const [B, H2, W2, C] = check(dy, UPSAMPLE2X_GRAD, true);
    const backend = args.backend as WasmBackend;
    const dims = [B, H2 / 2, W2 / 2, C];
    const out = backend.makeOutput(dims, "float32");
    upsample2xGradInto(backend.typedArrayFromHeap(dy), backend.typedArrayFromHeap(out), dims);
    return out;
  },
};

/** Nearest ×2 upsampling by the kernels, with its gradient; the current backend must have them. */
export const upsample2xByKernels: (x: tf.Tensor4D) => tf.Tensor4D = tf.customGrad((...args) => {
  const x = args[0] as tf.Tensor;
  return {
    value: tf.engine().runKernel(UPSAMPLE2X, { x }) as tf.Tensor,
    gradFunc: (dy: tf.Tensor) => tf.engine().runKernel(UPSAMPLE2X_GRAD, { dy }) as tf.Tensor,
  };
}) as (x: tf.Tensor4D) => tf.Tensor4D;
