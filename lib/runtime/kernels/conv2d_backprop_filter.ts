/**
 * Conv2DBackpropFilter for the wasm backend, which tfjs-backend-wasm 4.22.0
 * lacks: it is the weight gradient of every `tf.conv2d`, so without it no
 * convolutional model can train on wasm. The filter gradient is itself a
 * forward convolution once batch and channel axes trade places, so it runs
 * on wasm's fast (XNNPACK) Conv2D kernel: the input, as [Ci, H, W, B], is
 * convolved with the output gradient, as a filter [outH, outW, B, Co], at
 * dilation = the original stride, giving [Ci, kh, kw, Co]. Dilation 1, any
 * stride, 'same'/'valid'/explicit padding, NHWC or NCHW.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import { inputTensor } from "./kernel_util.ts";

/** The attributes tfjs passes to Conv2DBackpropFilter. */
interface Attrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  filterShape: [number, number, number, number];
}

/**
 * dW[kh, kw, ci, co] = Σ_{b, oh, ow} xPadded[b, oh·sh + kh, ow·sw + kw, ci] ·
 * dy[b, oh, ow, co], from x and dy in `attrs.dataFormat` (NHWC: x [B, H, W,
 * Ci], dy [B, outH, outW, Co]).
 *
 * Read with b as the channel axis and ci as the batch axis, the sum is a
 * 'valid' convolution of xPadded [Ci, H', W', B] with the filter dy [outH,
 * outW, B, Co] dilated by (sh, sw).
 */
function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Attrs): tf.Tensor4D {
  const nchw = attrs.dataFormat === "NCHW";
  const shape = nchw ? [x.shape[0], x.shape[2], x.shape[3], x.shape[1]] : x.shape;
  const info = tf.backend_util.computeConv2DInfo(
    shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [kh, kw] = attrs.filterShape;
  const { outHeight, outWidth, strideHeight: sh, strideWidth: sw, padInfo, inHeight, inWidth } =
    info;
  // Rows and columns the taps reach beyond the padded input (only with
  // dimRoundingMode 'ceil'): zeros there add nothing.
  const bottom = Math.max(padInfo.bottom, (outHeight - 1) * sh + kh - inHeight - padInfo.top);
  const right = Math.max(padInfo.right, (outWidth - 1) * sw + kw - inWidth - padInfo.left);
  const xT = tf.transpose(x, nchw ? [1, 2, 3, 0] : [3, 1, 2, 0]); // [Ci, H, W, B]
  const dyT = tf.transpose(dy, nchw ? [2, 3, 0, 1] : [1, 2, 0, 3]); // [outH, outW, B, Co]
  const taps = tf.conv2d(
    xT,
    dyT,
    1,
    [[0, 0], [padInfo.top, bottom], [padInfo.left, right], [0, 0]],
    "NHWC",
    [sh, sw],
  ); // [Ci, ≥kh, ≥kw, Co]
  const exact = taps.shape[1] === kh && taps.shape[2] === kw
    ? taps
    : tf.slice(taps, [0, 0, 0, 0], [-1, kh, kw, -1]); // [Ci, kh, kw, Co]
  return tf.transpose(exact, [1, 2, 0, 3]); // [kh, kw, Ci, Co]
}

/** Conv2DBackpropFilter kernel function: inputs x and dy, result [kh, kw, Ci, Co]. */
export function wasmConv2DBackpropFilter(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const attrs = args.attrs as unknown as Attrs;
  const backend = args.backend as tf.KernelBackend;
  return tf.tidy(() =>
    filterGradient(
      inputTensor(args.inputs.x as tf.TensorInfo, backend) as tf.Tensor4D,
      inputTensor(args.inputs.dy as tf.TensorInfo, backend) as tf.Tensor4D,
      attrs,
    )
  );
}

/** This file's wasm kernel, for {@link installKernels}. */
export const WASM_CONV2D_BACKPROP_FILTER: Record<string, KernelMaker> = {
  [tf.Conv2DBackpropFilter]: () => wasmConv2DBackpropFilter,
};
