/**
 * Replacement Sum and Mean for the wasm backend. tfjs-backend-wasm 4.22.0
 * reduces only innermost axes: any other reduction first transposes the
 * input with its Transpose kernel, which is slow for tall operands — the
 * bias gradient of a dense layer, a sum over the batch axis of [1024, 256],
 * takes ~2.4 ms where the equivalent product ones[1, 1024] · x takes
 * ~0.03 ms. These kernels reduce trailing axes with the original kernel and
 * every other axis as a matmul with a ones vector (plain BatchMatMul, which
 * runs on XNNPACK), never transposing. Non-float32 inputs go to the
 * original kernels.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import { inputTensor } from "./kernel_util.ts";

const BACKEND = "wasm";

const originals = new Map<string, tf.KernelConfig>();

/**
 * The wasm backend's own kernel for `name` (Sum or Mean), as it was before
 * {@link registerWasmReductions} replaced it (for benchmarks and tests).
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
interface Block {
  size: number;
  reduced: boolean;
}

/** Merges `shape` into alternating kept/reduced blocks, dropping axes of size 1. */
function blocksOf(shape: number[], axes: number[]): Block[] {
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

/**
 * Σ of x over `axes`, with the reduced axes removed: trailing reduced axes
 * by the original Sum kernel (through `tf.sum`, which lands back here on the
 * innermost path), every other reduced block [P, R, Q] as ones[1, R] · x.
 */
function sumOver(x: tf.Tensor, axes: number[]): tf.Tensor {
  const outShape = x.shape.filter((_, i) => !axes.includes(i));
  const blocks = blocksOf(x.shape, axes);
  let t = tf.reshape(x, blocks.length ? blocks.map((b) => b.size) : [1]);
  while (blocks.some((b) => b.reduced)) {
    if (blocks.at(-1)!.reduced) {
      t = tf.sum(t, -1); // innermost: the original kernel
      blocks.pop();
      continue;
    }
    const i = blocks.findLastIndex((b) => b.reduced);
    const p = blocks.slice(0, i).reduce((n, b) => n * b.size, 1);
    const r = blocks[i].size;
    const q = blocks.slice(i + 1).reduce((n, b) => n * b.size, 1);
    const ones = tf.ones([1, r]) as tf.Tensor2D;
    t = p === 1
      ? tf.matMul(ones, tf.reshape(t, [r, q]) as tf.Tensor2D) // [1, q]
      : tf.matMul(ones, tf.reshape(t, [p, r, q]) as tf.Tensor3D); // [p, 1, q]
    blocks.splice(i, 1);
    if (i > 0 && i < blocks.length) {
      blocks[i - 1].size *= blocks[i].size; // the kept neighbours meet
      blocks.splice(i, 1);
    }
  }
  return tf.reshape(t, outShape);
}

/** The kernel function for Sum (`mean` false) or Mean (`mean` true). */
function reduction(mean: boolean) {
  const name = mean ? tf.Mean : tf.Sum;
  return (args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo => {
    const backend = args.backend as tf.KernelBackend;
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    if (x.dtype !== "float32" || tf.util.sizeFromShape(x.shape) === 0 || innermost(x.shape, axes)) {
      return originalWasmReduction(name).kernelFunc(args) as tf.TensorInfo;
    }
    return tf.tidy(() => {
      let out = sumOver(inputTensor(x, backend), axes);
      if (mean) {
        out = tf.mul(out, 1 / axes.reduce((n, a) => n * x.shape[a], 1));
      }
      return keepDims
        ? tf.reshape(out, tf.backend_util.expandShapeToKeepDim(out.shape, axes))
        : out;
    });
  };
}

/** Sum kernel function: x summed over attrs.axis (keepDims as asked). */
export const wasmSum: tf.KernelFunc = reduction(false);

/** Mean kernel function: x averaged over attrs.axis (keepDims as asked). */
export const wasmMean: tf.KernelFunc = reduction(true);

/** Replaces the wasm Sum and Mean with {@link wasmSum} and {@link wasmMean}; idempotent. */
export function registerWasmReductions(): void {
  for (const [name, kernelFunc] of [[tf.Sum, wasmSum], [tf.Mean, wasmMean]] as const) {
    const current = tf.getKernel(name, BACKEND);
    if (current?.kernelFunc === kernelFunc) continue;
    const { setupFunc, disposeFunc } = originalWasmReduction(name);
    if (current) tf.unregisterKernel(name, BACKEND);
    // The original setupFunc binds the wasm function that its kernelFunc calls.
    tf.registerKernel({
      kernelName: name,
      backendName: BACKEND,
      kernelFunc,
      setupFunc,
      disposeFunc,
    });
  }
}
