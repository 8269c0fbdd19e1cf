/**
 * Conv2DBackpropFilter for the wasm backend, which tfjs-backend-wasm 4.22.0
 * lacks: it is the weight gradient of every `tf.conv2d`, so without it no
 * convolutional model can train on wasm. Built from kernels wasm has: pad,
 * one strided slice per filter tap, and one plain matmul per tap against the
 * transposed output gradient (dilation 1, any stride, 'same'/'valid'/explicit
 * padding, NHWC or NCHW).
 */
import * as tf from "@tensorflow/tfjs-core";
import { inputTensor } from "./kernel_util.ts";

const BACKEND = "wasm";

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
 * dy[b, oh, ow, co], from x [B, H, W, Ci] and dy [B, outH, outW, Co] (NHWC).
 */
function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Attrs): tf.Tensor4D {
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const [kh, kw, ci, co] = attrs.filterShape;
  const { outHeight, outWidth, strideHeight: sh, strideWidth: sw, padInfo } = info;
  const batch = x.shape[0];
  const rows = batch * outHeight * outWidth;
  const xp = tf.pad(x, [[0, 0], [padInfo.top, padInfo.bottom], [padInfo.left, padInfo.right], [
    0,
    0,
  ]]); // [B, H + pads, W + pads, Ci]
  const dyT = tf.transpose(tf.reshape(dy, [rows, co])); // [Co, rows]
  const taps: tf.Tensor2D[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const patch = tf.stridedSlice(
        xp,
        [0, i, j, 0],
        [batch, i + (outHeight - 1) * sh + 1, j + (outWidth - 1) * sw + 1, ci],
        [1, sh, sw, 1],
      ); // [B, outH, outW, Ci]
      taps.push(tf.matMul(dyT, tf.reshape(patch, [rows, ci]))); // [Co, Ci]
    }
  }
  const stacked = tf.stack(taps); // [kh·kw, Co, Ci]
  return tf.reshape(tf.transpose(stacked, [0, 2, 1]), [kh, kw, ci, co]);
}

/** Conv2DBackpropFilter kernel function: inputs x and dy, result [kh, kw, Ci, Co]. */
export function wasmConv2DBackpropFilter(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const attrs = args.attrs as unknown as Attrs;
  const backend = args.backend as tf.KernelBackend;
  return tf.tidy(() => {
    let x = inputTensor(args.inputs.x as tf.TensorInfo, backend) as tf.Tensor4D;
    let dy = inputTensor(args.inputs.dy as tf.TensorInfo, backend) as tf.Tensor4D;
    if (attrs.dataFormat === "NCHW") {
      x = tf.transpose(x, [0, 2, 3, 1]);
      dy = tf.transpose(dy, [0, 2, 3, 1]);
    }
    return filterGradient(x, dy, attrs);
  });
}

/** Registers {@link wasmConv2DBackpropFilter} unless wasm has the kernel. */
export function registerWasmConv2DBackpropFilter(): void {
  if (tf.getKernel(tf.Conv2DBackpropFilter, BACKEND)) return;
  tf.registerKernel({
    kernelName: tf.Conv2DBackpropFilter,
    backendName: BACKEND,
    kernelFunc: wasmConv2DBackpropFilter,
  });
}
