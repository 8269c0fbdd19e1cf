/**
 * Sum and Mean over leading axes on the oneDNN path as one matrix product:
 * x viewed as [R, C] with the R rows reduced is 1ᵀ·x, a [1, R]·[R, C] sgemm.
 * Every bias gradient is such a sum (a convolution's over [B, H, W], a
 * Linear layer's over its rows); the wasm kernels it replaces pass over the
 * heap from JavaScript in float64 at about 2 ns a value, and stay the
 * fallback for every other reduction.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { Onednn } from "../onednn.ts";
import type { WasmBackend } from "./kernel_util.ts";
import { blocksOf } from "./reduce.ts";

type Args = Parameters<tf.KernelFunc>[0];

/** Sum (`mean` false) or Mean over leading axes on `dnnl`, else `fallback`. */
function leadingReduction(dnnl: Onednn, mean: boolean, fallback: tf.KernelFunc) {
  return (args: Args): tf.TensorInfo => {
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    const blocks = blocksOf(x.shape, axes);
    if (
      x.dtype !== "float32" || tf.util.sizeFromShape(x.shape) === 0 || blocks.length !== 2 ||
      !blocks[0].reduced || blocks[1].reduced
    ) {
      return fallback(args) as tf.TensorInfo;
    }
    const [R, C] = [blocks[0].size, blocks[1].size];
    const kept = x.shape.filter((_, i) => !axes.includes(i));
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput(
      keepDims ? tf.backend_util.expandShapeToKeepDim(kept, axes) : kept,
      "float32",
    );
    // Views only after the last allocation: a growing heap detaches them.
    const X = backend.typedArrayFromHeap(x), Y = backend.typedArrayFromHeap(out);
    dnnl.columnSums(X, R, C, Y, mean ? 1 / R : 1);
    return out;
  };
}

/** oneDNN's Sum and Mean over leading axes, over the wasm ones (their fallback), for {@link installKernels}. */
export function onednnReductionMakers(dnnl: Onednn): Record<string, KernelMaker> {
  const maker = (name: string, mean: boolean): KernelMaker => (current) => {
    if (!current) throw new Error(`the wasm backend has no ${name} kernel`);
    return leadingReduction(dnnl, mean, current.kernelFunc);
  };
  return { [tf.Sum]: maker(tf.Sum, false), [tf.Mean]: maker(tf.Mean, true) };
}
