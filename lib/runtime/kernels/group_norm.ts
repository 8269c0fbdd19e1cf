/**
 * GroupNorm over NHWC as two wasm kernels that pass over the wasm heap from
 * JavaScript: the forward pass in two sweeps (per-channel sums and sums of
 * squares, then y = x·a_c + s_c) and its gradient in two (per-channel Σdy and
 * Σdy·x, then dx = dy·A_c + x·B_c + K_c). As tf ops on tfjs-backend-wasm the
 * same layer is about a dozen kernels forward and backward (moments, and
 * Sub and Multiply with broadcasting, which that backend runs element by
 * element through index arithmetic); on [32, 28, 28, 32] these take about
 * half their time, and the float32 intermediates they keep for the gradient
 * (x̂) are gone. Sums accumulate in float64.
 *
 * Forward, per sample b and group g of n = H·W·C/G values: μ = m(x),
 * σ² = m(x²) − μ², r = (σ² + eps)^−½, x̂ = (x − μ)·r, y = x̂·γ_c + β_c, with m
 * the group mean. Backward from dy: dγ_c = Σ dy·x̂, dβ_c = Σ dy over batch and
 * pixels; dx̂ = dy·γ_c and dx = r·(dx̂ − m(dx̂) − x̂·m(dx̂·x̂)), where each sum
 * over a group is a sum of the per-channel Σdy and Σdy·x̂ = r·(Σdy·x − μ·Σdy).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";

/** Kernel name of the forward pass: inputs x, gamma, beta; outputs y, mean, rstd. */
export const GROUP_NORM = "DmwGroupNorm";
/** Kernel name of the gradient: inputs dy, x, mean, rstd, gamma; outputs dx, dgamma, dbeta. */
export const GROUP_NORM_GRAD = "DmwGroupNormGrad";

/** Attributes of both kernels. */
export interface GroupNormAttrs {
  /** Channel groups; divides C. */
  groups: number;
  /** Added to the variance. */
  eps: number;
}

/** Sizes both kernels work in: batch B, pixels P, channels C, cg per group, n per group. */
export interface Dims {
  B: number;
  P: number;
  C: number;
  cg: number;
  n: number;
}

/** Checks x [B, H, W, C] float32 and γ [C] with G dividing C; returns their sizes. */
export function dimsOf(x: tf.TensorInfo, gamma: tf.TensorInfo, groups: number): Dims {
  const [B, H, W, C] = x.shape;
  if (x.shape.length !== 4 || x.dtype !== "float32" || C % groups !== 0) {
    throw new Error(`${GROUP_NORM}: wants float32 [B, H, W, C] with C divisible by ${groups}`);
  }
  if (gamma.shape.length !== 1 || gamma.shape[0] !== C) {
    throw new Error(`${GROUP_NORM}: γ has shape [${gamma.shape}], wants [${C}]`);
  }
  const cg = C / groups;
  return { B, P: H * W, C, cg, n: H * W * cg };
}

/** u[c] += v[o + c] and w[c] += v[o + c]·x[o + c] over the pixels of one sample. */
function channelSums(
  v: Float32Array,
  x: Float32Array,
  base: number,
  end: number,
  C: number,
  u: Float64Array,
  w: Float64Array,
): void {
  u.fill(0);
  w.fill(0);
  for (let o = base; o < end; o += C) {
    for (let c = 0; c < C; c++) {
      const a = v[o + c];
      u[c] += a;
      w[c] += a * x[o + c];
    }
  }
}

/** Sum of t[c] (times f[c] when given) over each group's channels. */
function groupSums(t: Float64Array, groups: number, f?: ArrayLike<number>): Float64Array {
  const cg = t.length / groups;
  const out = new Float64Array(groups);
  for (let c = 0; c < t.length; c++) out[Math.floor(c / cg)] += f ? t[c] * f[c] : t[c];
  return out;
}

/** The forward kernel function. */
export function wasmGroupNorm(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as WasmBackend;
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const { groups, eps } = args.attrs as unknown as GroupNormAttrs;
  const { B, P, C, cg, n } = dimsOf(x, gamma, groups);
  const y = backend.makeOutput(x.shape, "float32");
  const mean = backend.makeOutput([B, groups], "float32");
  const rstd = backend.makeOutput([B, groups], "float32");
  // Views only after the last allocation: a growing heap detaches them.
  const xs = backend.typedArrayFromHeap(x);
  const gs = backend.typedArrayFromHeap(gamma);
  const bs = backend.typedArrayFromHeap(beta);
  const ys = backend.typedArrayFromHeap(y);
  const ms = backend.typedArrayFromHeap(mean);
  const rs = backend.typedArrayFromHeap(rstd);
  const sum = new Float64Array(C);
  const sq = new Float64Array(C);
  const a = new Float64Array(C);
  const s = new Float64Array(C);
  for (let b = 0; b < B; b++) {
    const base = b * P * C;
    const end = base + P * C;
    channelSums(xs, xs, base, end, C, sum, sq);
    const mu = groupSums(sum, groups);
    const m2 = groupSums(sq, groups);
    for (let g = 0; g < groups; g++) {
      mu[g] /= n;
      const r = 1 / Math.sqrt(Math.max(m2[g] / n - mu[g] * mu[g], 0) + eps);
      ms[b * groups + g] = mu[g];
      rs[b * groups + g] = r;
      for (let c = g * cg; c < (g + 1) * cg; c++) {
        a[c] = r * gs[c];
        s[c] = bs[c] - mu[g] * a[c];
      }
    }
    for (let o = base; o < end; o += C) {
      for (let c = 0; c < C; c++) ys[o + c] = xs[o + c] * a[c] + s[c];
    }
  }
  return [y, mean, rstd];
}

/** The gradient kernel function. */
export function wasmGroupNormGrad(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as WasmBackend;
  const { dy, x, mean, rstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const { groups } = args.attrs as unknown as GroupNormAttrs;
  const { B, P, C, cg, n } = dimsOf(x, gamma, groups);
  const dx = backend.makeOutput(x.shape, "float32");
  const dgamma = backend.makeOutput([C], "float32");
  const dbeta = backend.makeOutput([C], "float32");
  const dys = backend.typedArrayFromHeap(dy);
  const xs = backend.typedArrayFromHeap(x);
  const ms = backend.typedArrayFromHeap(mean);
  const rs = backend.typedArrayFromHeap(rstd);
  const gs = backend.typedArrayFromHeap(gamma);
  const dxs = backend.typedArrayFromHeap(dx);
  const dg = new Float64Array(C);
  const db = new Float64Array(C);
  const sdy = new Float64Array(C); // Σ dy per channel
  const sdyx = new Float64Array(C); // Σ dy·x, then Σ dy·x̂
  const A = new Float64Array(C);
  const Bc = new Float64Array(C);
  const K = new Float64Array(C);
  for (let b = 0; b < B; b++) {
    const base = b * P * C;
    const end = base + P * C;
    channelSums(dys, xs, base, end, C, sdy, sdyx);
    for (let c = 0; c < C; c++) {
      const g = Math.floor(c / cg);
      sdyx[c] = rs[b * groups + g] * (sdyx[c] - ms[b * groups + g] * sdy[c]);
      dg[c] += sdyx[c];
      db[c] += sdy[c];
    }
    const m1 = groupSums(sdy, groups, gs);
    const m2 = groupSums(sdyx, groups, gs);
    for (let g = 0; g < groups; g++) {
      const r = rs[b * groups + g], mu = ms[b * groups + g];
      const mean1 = m1[g] / n, mean2 = m2[g] / n;
      for (let c = g * cg; c < (g + 1) * cg; c++) {
        A[c] = r * gs[c];
        Bc[c] = -r * r * mean2;
        K[c] = r * (r * mu * mean2 - mean1);
      }
    }
    for (let o = base; o < end; o += C) {
      for (let c = 0; c < C; c++) dxs[o + c] = dys[o + c] * A[c] + xs[o + c] * Bc[c] + K[c];
    }
  }
  backend.typedArrayFromHeap(dgamma).set(dg);
  backend.typedArrayFromHeap(dbeta).set(db);
  return [dx, dgamma, dbeta];
}

/** This file's wasm kernels, for {@link installKernels}. */
export const WASM_GROUP_NORM: Record<string, KernelMaker> = {
  [GROUP_NORM]: () => wasmGroupNorm,
  [GROUP_NORM_GRAD]: () => wasmGroupNormGrad,
};

/**
 * GroupNorm of x [B, H, W, C] by the project kernels,
 * with their gradient; the current backend must have them
 * ({@link hasGroupNormKernels}).
 */
export function groupNormByKernels(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  attrs: GroupNormAttrs,
): tf.Tensor4D {
  const op = tf.customGrad((...args) => {
    const [x, gamma, beta] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const attrMap = attrs as unknown as tf.NamedAttrMap;
    const [y, mean, rstd] = tf.engine().runKernel(
      GROUP_NORM,
      { x, gamma, beta },
      attrMap,
    ) as tf.Tensor[];
    save([x, mean, rstd, gamma]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [x, mean, rstd, gamma] = saved;
        return tf.engine().runKernel(
          GROUP_NORM_GRAD,
          { dy, x, mean, rstd, gamma },
          attrMap,
        ) as tf.Tensor[];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor4D;
}
