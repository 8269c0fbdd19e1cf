/**
 * Slice, SplitV and Concat for the wasm backend as block copies over the
 * wasm heap. tfjs-backend-wasm 4.22.0 copies row by row of the innermost
 * axis with a `subarray` view and a `set` per row: the gradient of a UNet's
 * skip concatenation (a SplitV over channels of [64, 28, 28, 64]) makes
 * about 50,000 views a call, and the three kernels were about a third of
 * the MNIST UNet's training step on the oneDNN path. Here the axes that a
 * slice takes whole are merged first, so the copy runs over the fewest,
 * longest contiguous runs, and short runs are copied element by element.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";

/** Runs shorter than this are copied by a loop; longer ones by `TypedArray.set`. */
const SHORT_RUN = 64;

/** Copies `len` values from src[s..] to dst[d..]. */
function copyRun(src: Float32Array, s: number, dst: Float32Array, d: number, len: number): void {
  if (len < SHORT_RUN) {
    for (let i = 0; i < len; i++) dst[d + i] = src[s + i];
  } else {
    dst.set(src.subarray(s, s + len), d);
  }
}

/**
 * A strided block copy: for every index (i_0, …, i_{k−1}) < counts, a run of
 * `run` contiguous values from src at srcOffset + Σ i_j·srcStrides[j] to dst
 * at dstOffset + Σ i_j·dstStrides[j].
 */
export interface BlockCopy {
  counts: number[];
  srcStrides: number[];
  dstStrides: number[];
  srcOffset: number;
  dstOffset: number;
  run: number;
}

/** Performs a {@link BlockCopy}. */
export function blockCopy(src: Float32Array, dst: Float32Array, c: BlockCopy): void {
  const { counts, srcStrides, dstStrides, run } = c;
  const k = counts.length;
  if (k === 0) return copyRun(src, c.srcOffset, dst, c.dstOffset, run);
  if (counts.some((n) => n === 0) || run === 0) return;
  const last = k - 1, n = counts[last], ss = srcStrides[last], ds = dstStrides[last];
  const idx = new Array<number>(k).fill(0);
  let s = c.srcOffset, d = c.dstOffset;
  for (;;) {
    // The innermost counted axis as a plain loop; the outer ones as an odometer.
    for (let i = 0; i < n; i++) copyRun(src, s + i * ss, dst, d + i * ds, run);
    let a = last - 1;
    for (; a >= 0; a--) {
      s += srcStrides[a];
      d += dstStrides[a];
      if (++idx[a] < counts[a]) break;
      s -= counts[a] * srcStrides[a];
      d -= counts[a] * dstStrides[a];
      idx[a] = 0;
    }
    if (a < 0) return;
  }
}

/**
 * The copy that takes the block begin..begin+size of a tensor of `shape`
 * into a dense [size] (or, with `outShape` and `outBegin`, into that block of
 * a larger dense tensor). Axes of extent 1 are dropped and neighbouring axes
 * that both sides hold whole are merged, so the contiguous run is as long as
 * the layouts allow.
 */
export function sliceCopy(
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  outShape: readonly number[] = size,
  outBegin: readonly number[] = begin.map(() => 0),
): BlockCopy {
  const rank = shape.length;
  const srcStride = stridesOf(shape), dstStride = stridesOf(outShape);
  let srcOffset = 0, dstOffset = 0;
  for (let a = 0; a < rank; a++) {
    srcOffset += begin[a] * srcStride[a];
    dstOffset += outBegin[a] * dstStride[a];
  }
  // Axes from the innermost out: the run takes them while both sides hold them whole.
  const axes: { n: number; ss: number; ds: number }[] = [];
  let run = 1;
  let merging = true;
  for (let a = rank - 1; a >= 0; a--) {
    if (size[a] === 1) {
      // Held at one index: a run may not reach across it unless it is 1 on both sides too.
      if (shape[a] !== 1 || outShape[a] !== 1) merging = false;
      continue;
    }
    if (merging) {
      run *= size[a];
      merging = size[a] === shape[a] && size[a] === outShape[a];
      continue;
    }
    axes.push({ n: size[a], ss: srcStride[a], ds: dstStride[a] });
  }
  // Merge neighbouring counted axes whose strides chain on both sides.
  const merged: { n: number; ss: number; ds: number }[] = [];
  for (const ax of axes) {
    const inner = merged.at(-1);
    if (inner && inner.ss * inner.n === ax.ss && inner.ds * inner.n === ax.ds) inner.n *= ax.n;
    else merged.push({ ...ax });
  }
  merged.reverse();
  return {
    counts: merged.map((m) => m.n),
    srcStrides: merged.map((m) => m.ss),
    dstStrides: merged.map((m) => m.ds),
    srcOffset,
    dstOffset,
    run,
  };
}

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let a = shape.length - 1; a >= 0; a--) {
    s[a] = acc;
    acc *= shape[a];
  }
  return s;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Slice of a float32 tensor; other dtypes go to the kernel it replaces. */
function sliceKernel(fallback: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== "float32") return fallback(args) as tf.TensorInfo;
    const backend = args.backend as WasmBackend;
    const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
    const [begin_, size_] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    return sliceInfo(backend, x, begin_, size_);
  };
}

function sliceInfo(
  backend: WasmBackend,
  x: tf.TensorInfo,
  begin: number[],
  size: number[],
): tf.TensorInfo {
  const out = backend.makeOutput(size, "float32");
  if (size.every((n) => n > 0)) {
    // Views only after the last allocation: a growing heap detaches them.
    const src = backend.typedArrayFromHeap(x), dst = backend.typedArrayFromHeap(out);
    blockCopy(src, dst, sliceCopy(x.shape, begin, size));
  }
  return out;
}

/** SplitV of a float32 tensor as one slice per part. */
function splitVKernel(fallback: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo[] => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype !== "float32") return fallback(args) as tf.TensorInfo[];
    const backend = args.backend as WasmBackend;
    const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
    const begin = x.shape.map(() => 0);
    return sizes.map((s) => {
      const size = x.shape.slice();
      size[ax] = s;
      const part = sliceInfo(backend, x, begin.slice(), size);
      begin[ax] += s;
      return part;
    });
  };
}

/** Concat of float32 tensors: each input copied into its block of the output. */
function concatKernel(fallback: tf.KernelFunc) {
  return (args: KernelArgs): tf.TensorInfo => {
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    if (inputs.some((t) => t.dtype !== "float32")) return fallback(args) as tf.TensorInfo;
    const backend = args.backend as WasmBackend;
    const ax =
      tf.util.parseAxisParam((args.attrs as unknown as tf.ConcatAttrs).axis, inputs[0].shape)[0];
    const shapes = inputs.map((t) => t.shape);
    tf.backend_util.assertParamsConsistent(shapes, ax);
    const outShape = tf.backend_util.computeOutShape(shapes, ax);
    const out = backend.makeOutput(outShape, "float32");
    const dst = backend.typedArrayFromHeap(out);
    let at = 0;
    for (const t of inputs) {
      if (t.shape[ax] === 0) continue;
      const outBegin = outShape.map((_, a) => (a === ax ? at : 0));
      const copy = sliceCopy(t.shape, t.shape.map(() => 0), t.shape, outShape, outBegin);
      blockCopy(backend.typedArrayFromHeap(t), dst, copy);
      at += t.shape[ax];
    }
    return out;
  };
}

function need(current: tf.KernelConfig | undefined, name: string): tf.KernelFunc {
  if (!current) throw new Error(`tfjs-backend-wasm has no ${name} kernel to fall back to`);
  return current.kernelFunc;
}

/** This file's wasm kernels, for {@link installKernels}; each keeps the one it replaces for other dtypes. */
export const WASM_COPIES: Record<string, KernelMaker> = {
  [tf.Slice]: (current) => sliceKernel(need(current, tf.Slice)),
  [tf.SplitV]: (current) => splitVKernel(need(current, tf.SplitV)),
  [tf.Concat]: (current) => concatKernel(need(current, tf.Concat)),
};
