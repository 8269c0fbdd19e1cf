/**
 * UnsortedSegmentSum for the wasm backend, which tfjs-backend-wasm 4.22.0
 * lacks. It is the gradient of `tf.gather` (embedding lookups), so without it
 * no model with an embedding table can train on wasm. A direct scatter-add
 * loop over the backend's data: O(size of x), exact to float32 summation.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";

/**
 * UnsortedSegmentSum kernel function: x [...ids.shape, ...rest] and
 * segmentIds (int32, any shape) give out [numSegments, ...rest] with
 * out[s] = Σ_{i: ids[i] = s} x[i]; ids outside [0, numSegments) are dropped.
 */
export function wasmUnsortedSegmentSum(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const backend = args.backend as tf.KernelBackend;
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  const rest = x.shape.slice(segmentIds.shape.length); // x = [...ids.shape, ...rest]
  const inner = tf.util.sizeFromShape(rest);
  const ids = backend.readSync(segmentIds.dataId) as Int32Array; // [S]
  const values = backend.readSync(x.dataId) as Float32Array | Int32Array; // [S * inner]
  const out = x.dtype === "int32"
    ? new Int32Array(numSegments * inner)
    : new Float32Array(numSegments * inner); // [numSegments * inner]
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j] += values[src + j];
  }
  const shape = [numSegments, ...rest];
  return { dataId: backend.write(out, shape, x.dtype), shape, dtype: x.dtype };
}

/** This file's wasm kernel, for {@link installKernels}. */
export const WASM_UNSORTED_SEGMENT_SUM: Record<string, KernelMaker> = {
  [tf.UnsortedSegmentSum]: () => wasmUnsortedSegmentSum,
};
