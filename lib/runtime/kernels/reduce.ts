/**
 * Replacement Sum and Mean for the wasm backend. tfjs-backend-wasm 4.22.0
 * reduces only innermost axes: any other reduction first transposes the
 * input with its Transpose kernel, which is slow for tall operands — the
 * bias gradient of a conv layer, a sum over [B, H, W] of [64, 28, 28, 96],
 * takes ~50 ms. (A product ones[1, R] · x is no better on fresh data:
 * XNNPACK repacks x as a weight matrix on every call.) These kernels reduce
 * trailing axes with the original kernel and every other axis in one
 * sequential pass over the wasm heap from JavaScript, accumulating in
 * float64 (~5 ms for that gradient). Non-float32 inputs go to the original
 * kernels.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";

const BACKEND = "wasm";

const originals = new Map<string, tf.KernelConfig>();

/**
 * The wasm backend's own kernel for `name` (Sum or Mean), as it was before
 * the project kernels replaced it (for benchmarks and tests).
 */
export function originalWasmReduction(name: typeof tf.Sum | typeof tf.Mean): tf.KernelConfig {
  let config = originals.get(name);
  if (!config) {
    config = tf.getKernel(name, BACKEND);
    if (!config) throw new Error(`tfjs-backend-wasm has no ${name} kernel`);
    originals.set(name, config);
  }
  return config;
}

/** A run of adjacent axes, all reduced or all kept, merged into one. */
export interface Block {
  size: number;
  reduced: boolean;
}

/** Merges `shape` into alternating kept/reduced blocks, dropping axes of size 1. */
export function blocksOf(shape: number[], axes: number[]): Block[] {
  const blocks: Block[] = [];
  shape.forEach((size, i) => {
    if (size === 1) return;
    const reduced = axes.includes(i);
    const last = blocks.at(-1);
    if (last && last.reduced === reduced) last.size *= size;
    else blocks.push({ size, reduced });
  });
  return blocks;
}

/** Whether the wasm kernel can reduce `axes` of `shape` without transposing. */
function innermost(shape: number[], axes: number[]): boolean {
  const blocks = blocksOf(shape, axes);
  return blocks.filter((b) => b.reduced).length <= 1 && !blocks.slice(0, -1).some((b) => b.reduced);
}

/** acc[p, q] = Σ_r v[p, r, q] for v [P, R, Q] (row-major): a new [P, Q] array. */
function sumMiddle(v: ArrayLike<number>, p: number, r: number, q: number): Float64Array {
  const acc = new Float64Array(p * q);
  for (let i = 0; i < p; i++) {
    const o = i * q;
    for (let k = 0; k < r; k++) {
      const base = (i * r + k) * q;
      for (let j = 0; j < q; j++) acc[o + j] += v[base + j];
    }
  }
  return acc;
}

/**
 * Σ over `axes` of float32 x, scaled by `scale`, as a new tensor of
 * `outShape`: a trailing reduced block by the original Sum kernel, every
 * other reduced block as a [P, R, Q] → [P, Q] pass in JavaScript.
 */
function reduceOnHeap(
  x: tf.TensorInfo,
  axes: number[],
  outShape: number[],
  scale: number,
  backend: WasmBackend,
): tf.TensorInfo {
  const blocks = blocksOf(x.shape, axes);
  let values: ArrayLike<number>;
  let inner: tf.TensorInfo | undefined;
  if (blocks.at(-1)?.reduced) {
    const view = { dataId: x.dataId, shape: blocks.map((b) => b.size), dtype: x.dtype };
    inner = originalWasmReduction(tf.Sum).kernelFunc({
      inputs: { x: view },
      backend,
      attrs: { axis: [blocks.length - 1], keepDims: false },
    }) as tf.TensorInfo;
    blocks.pop();
    values = backend.typedArrayFromHeap(inner);
  } else {
    values = backend.typedArrayFromHeap(x);
  }
  while (blocks.some((b) => b.reduced)) {
    const i = blocks.findLastIndex((b) => b.reduced);
    const p = blocks.slice(0, i).reduce((n, b) => n * b.size, 1);
    const q = blocks.slice(i + 1).reduce((n, b) => n * b.size, 1);
    values = sumMiddle(values, p, blocks[i].size, q);
    blocks.splice(i, 1);
    if (i > 0 && i < blocks.length) {
      blocks[i - 1].size *= blocks[i].size; // the kept neighbours meet
      blocks.splice(i, 1);
    }
  }
  const result = Float32Array.from(values, (v) => v * scale); // read before any allocation
  if (inner) backend.disposeData(inner.dataId);
  const out = backend.makeOutput(outShape, "float32");
  backend.typedArrayFromHeap(out).set(result);
  return out;
}

/** The kernel function for Sum (`mean` false) or Mean (`mean` true). */
function reduction(mean: boolean) {
  const name = mean ? tf.Mean : tf.Sum;
  return (args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo => {
    const backend = args.backend as WasmBackend;
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    if (x.dtype !== "float32" || tf.util.sizeFromShape(x.shape) === 0 || innermost(x.shape, axes)) {
      return originalWasmReduction(name).kernelFunc(args) as tf.TensorInfo;
    }
    const count = axes.reduce((n, a) => n * x.shape[a], 1);
    const kept = x.shape.filter((_, i) => !axes.includes(i));
    const outShape = keepDims ? tf.backend_util.expandShapeToKeepDim(kept, axes) : kept;
    return reduceOnHeap(x, axes, outShape, mean ? 1 / count : 1, backend);
  };
}

/** Sum kernel function: x summed over attrs.axis (keepDims as asked). */
export const wasmSum: tf.KernelFunc = reduction(false);

/** Mean kernel function: x averaged over attrs.axis (keepDims as asked). */
export const wasmMean: tf.KernelFunc = reduction(true);

/** This file's wasm kernels, for {@link installKernels}; each keeps the one it replaces as its fallback. */
export const WASM_REDUCTIONS: Record<string, KernelMaker> = Object.fromEntries(
  ([[tf.Sum, wasmSum], [tf.Mean, wasmMean]] as const).map(([name, kernelFunc]) => [
    name,
    (current: tf.KernelConfig | undefined) => {
      if (current && !originals.has(name)) originals.set(name, current);
      return kernelFunc;
    },
  ]),
);
