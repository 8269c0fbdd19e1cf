/**
 * Functional building blocks for the networks: parameters live in a flat
 * record of named tensors ({@link Weights}), and every layer is a function of
 * (weights, name, input). Raw weights, EMA weights and checkpoints are all the
 * same kind of record, so sampling with an EMA is just a different record.
 *
 * Images are NHWC throughout (tfjs's native layout).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import { GROUP_NORM, groupNormByKernels } from "../runtime/kernels/group_norm.ts";
import { hasKernel } from "../runtime/kernels/install.ts";
import { SILU, siluByKernels } from "../runtime/kernels/onednn_silu.ts";
import { UPSAMPLE2X, upsample2xByKernels } from "../runtime/kernels/upsample.ts";
import { denseReluByKernels, RELU_BIAS_GRAD } from "../runtime/kernels/dense_relu.ts";
import { SINUSOIDAL, sinusoidalFrequencies } from "../runtime/kernels/sinusoidal.ts";

/** Named parameter tensors of a network. */
export type Weights = Record<string, tf.Tensor>;

/** A denoiser: any function of (x_t, t, cond) to a tensor shaped like x_t. */
export interface Network {
  /** Creates fresh parameters, drawn from `rng` (PyTorch's default initialisation). */
  init(rng: Rng): Weights;
  /** Applies the network: x [B, ...], t [B] (float), cond [B] (class index) or undefined. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor;
}

/** Uniform(-bound, bound) values as a tensor. */
function uniformTensor(shape: number[], bound: number, rng: Rng): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (2 * rng.uniform() - 1) * bound;
  return tf.tensor(v, shape);
}

/** Adds a Linear(fin → fout) layer's `.w` [fin, fout] and `.b` [fout] (PyTorch init). */
export function initDense(w: Weights, name: string, fin: number, fout: number, rng: Rng): void {
  const bound = 1 / Math.sqrt(fin);
  w[`${name}.w`] = uniformTensor([fin, fout], bound, rng);
  w[`${name}.b`] = uniformTensor([fout], bound, rng);
}

/** Adds a k×k convolution's `.w` [k, k, cin, cout] and `.b` [cout] (PyTorch init). */
export function initConv(
  w: Weights,
  name: string,
  k: number,
  cin: number,
  cout: number,
  rng: Rng,
): void {
  const bound = 1 / Math.sqrt(cin * k * k);
  w[`${name}.w`] = uniformTensor([k, k, cin, cout], bound, rng);
  w[`${name}.b`] = uniformTensor([cout], bound, rng);
}

/** Adds a normalisation layer's scale `.g` (ones) and shift `.b` (zeros). */
export function initNorm(w: Weights, name: string, c: number): void {
  w[`${name}.g`] = tf.ones([c]);
  w[`${name}.b`] = tf.zeros([c]);
}

/** Adds an embedding table `.w` [n, d] drawn from N(0, 1) (PyTorch init). */
export function initEmbedding(w: Weights, name: string, n: number, d: number, rng: Rng): void {
  w[`${name}.w`] = tf.tensor(rng.normalArray(n * d), [n, d]);
}

/** Linear layer on the last axis: x [..., fin] → [..., fout], with an optional fused activation. */
export function dense(
  w: Weights,
  name: string,
  x: tf.Tensor,
  activation?: "relu",
): tf.Tensor {
  const W = w[`${name}.w`] as tf.Tensor2D;
  const shape = x.shape;
  const x2 = shape.length === 2
    ? (x as tf.Tensor2D)
    : tf.reshape(x, [-1, shape.at(-1)!]) as tf.Tensor2D;
  const bias = w[`${name}.b`];
  const y = activation === "relu" && hasKernel(RELU_BIAS_GRAD)
    ? denseReluByKernels(x2, W, bias) // stays fused under a gradient tape, unlike fused.matMul
    : tf.fused.matMul({ a: x2, b: W, bias, activation }); // [N, fout]
  return shape.length === 2 ? y : tf.reshape(y, [...shape.slice(0, -1), W.shape[1]]);
}

/** Convolution with 'same' padding: x [B, H, W, cin] → [B, H/stride, W/stride, cout]. */
export function conv(w: Weights, name: string, x: tf.Tensor4D, stride: 1 | 2 = 1): tf.Tensor4D {
  const filter = w[`${name}.w`] as tf.Tensor4D;
  if (filter.shape[0] === 1 && stride === 1) {
    const [B, H, W] = x.shape;
    const y = dense(
      { [`${name}.w`]: tf.reshape(filter, filter.shape.slice(2)), [`${name}.b`]: w[`${name}.b`] },
      name,
      x,
    );
    return tf.reshape(y, [B, H, W, filter.shape[3]]);
  }
  return tf.fused.conv2d({ x, filter, strides: stride, pad: "same", bias: w[`${name}.b`] });
}

/**
 * SiLU (swish): x · sigmoid(x). On the oneDNN path one kernel each way
 * (lib/runtime/kernels/onednn_silu.ts); elsewhere tf ops.
 */
export function silu<T extends tf.Tensor>(x: T): T {
  return (hasKernel(SILU) ? siluByKernels(x) : tf.mul(x, tf.sigmoid(x))) as T;
}

/**
 * GroupNorm over NHWC: statistics per sample and group of channels, eps 1e-5,
 * then the per-channel scale `<name>.g` and shift `<name>.b`. On wasm and
 * webgpu it is the project's kernels (lib/runtime/kernels/group_norm.ts and
 * group_norm_webgpu.ts); on cpu tf ops with the gradient written out (the
 * closed form below), about half the kernel passes of differentiating the
 * forward ops.
 */
export function groupNorm(w: Weights, name: string, x: tf.Tensor4D, groups = 8): tf.Tensor4D {
  return groupNormOp(x, w[`${name}.g`], w[`${name}.b`], groups, false);
}

/** SiLU of {@link groupNorm}: the norm-then-activation step of every ResBlock and output head. */
export function groupNormSilu(w: Weights, name: string, x: tf.Tensor4D, groups = 8): tf.Tensor4D {
  return groupNormOp(x, w[`${name}.g`], w[`${name}.b`], groups, true);
}

function groupNormOp(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  withSilu: boolean,
): tf.Tensor4D {
  const y = hasKernel(GROUP_NORM)
    ? groupNormByKernels(x, gamma, beta, { groups, eps: 1e-5 })
    : groupNormByOps(x, gamma, beta, groups);
  return withSilu ? silu(y) : y;
}

/**
 * y = x̂·γ + β with x̂ = (x − μ)·r, r = (σ² + eps)^−½ over each sample's group.
 * Backward, with means m(·) over a group: dx = r·(dx̂ − m(dx̂) − x̂·m(dx̂·x̂))
 * for dx̂ = dy·γ; dγ = Σ dy·x̂ and dβ = Σ dy over batch and pixels.
 */
function groupNormByOps(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number) {
  const [B, H, W, C] = x.shape;
  const grouped = [B, H * W, groups, C / groups]; // [B, HW, G, C/G]
  const op = tf.customGrad((...args) => {
    const [x, gamma, beta] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const g = tf.reshape(x, grouped);
    const { mean, variance } = tf.moments(g, [1, 3], true); // [B, 1, G, 1]
    const r = tf.rsqrt(tf.add(variance, 1e-5)); // [B, 1, G, 1]
    const xhat = tf.reshape(tf.mul(tf.sub(g, mean), r), x.shape); // [B, H, W, C]
    save([xhat, r, gamma]);
    return {
      value: tf.add(tf.mul(xhat, gamma), beta),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xhat, r, gamma] = saved;
        const dxhat = tf.reshape(tf.mul(dy, gamma), grouped); // [B, HW, G, C/G]
        const xh = tf.reshape(xhat, grouped);
        const m1 = tf.mean(dxhat, [1, 3], true); // [B, 1, G, 1]
        const m2 = tf.mean(tf.mul(dxhat, xh), [1, 3], true); // [B, 1, G, 1]
        const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xh, m2)), r);
        return [
          tf.reshape(dx, x.shape),
          tf.reshape(tf.sum(tf.mul(dy, xhat), [0, 1, 2]), gamma.shape),
          tf.reshape(tf.sum(dy, [0, 1, 2]), gamma.shape),
        ];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor4D;
}

/** LayerNorm over the last axis, eps 1e-5. */
export function layerNorm(w: Weights, name: string, x: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5)));
  return tf.add(tf.mul(y, w[`${name}.g`]), w[`${name}.b`]);
}

/**
 * Embedding lookup as one-hot × table, so its gradient is a matmul on every
 * backend: idx [B] (integer-valued floats or ints) → [B, d].
 */
export function embed(w: Weights, name: string, idx: tf.Tensor1D): tf.Tensor2D {
  const table = w[`${name}.w`] as tf.Tensor2D;
  const oh = tf.oneHot(tf.cast(idx, "int32"), table.shape[0]); // [B, n]
  return tf.matMul(tf.cast(oh, "float32"), table);
}

/** Sums the two halves of each row of t viewed as [rows, 2n]: [rows, n]. */
function addHalves(t: tf.Tensor, rows: number, n: number): tf.Tensor2D {
  const r = tf.reshape(t, [rows, 2 * n]);
  return tf.add(tf.slice(r, [0, 0], [rows, n]), tf.slice(r, [0, n], [rows, n]));
}

/**
 * Nearest ×2 upsampling with its gradient: each row and then each pixel
 * doubled by concatenation (a copy), and the gradient summed back over each
 * 2×2 block from contiguous slices. tfjs-backend-wasm's Tile kernel, the
 * obvious formulation, is 15–25× slower forward and backward.
 */
const upsample2xWithGrad = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor4D;
  const [B, H, W, C] = x.shape;
  const pixels = tf.reshape(x, [B * H, W, 1, C]);
  const wide = tf.reshape(tf.concat([pixels, pixels], 2), [B, H, 1, 2 * W * C]); // rows doubled in width
  const value = tf.reshape(tf.concat([wide, wide], 2), [B, 2 * H, 2 * W, C]);
  const gradFunc = (dy: tf.Tensor) => {
    const rows = addHalves(dy, B * H, 2 * W * C); // [B·H, 2W·C]: the two output rows summed
    return tf.reshape(addHalves(rows, B * H * W, C), x.shape); // the two output columns summed
  };
  return { value, gradFunc };
});

/**
 * Nearest-neighbour ×2 upsampling: [B, H, W, C] → [B, 2H, 2W, C]. On wasm
 * one pass each way (lib/runtime/kernels/upsample.ts); elsewhere the copies
 * above.
 */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  return hasKernel(UPSAMPLE2X) ? upsample2xByKernels(x) : upsample2xWithGrad(x) as tf.Tensor4D;
}

/**
 * Multi-head attention core: q [B, h, N, d], k and v [B, h, M, d] →
 * [B, h, N, d], with the attention weights [B, h, N, M] when asked for.
 */
export function attend(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
): { out: tf.Tensor4D; weights: tf.Tensor4D } {
  const d = q.shape[3];
  const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d)); // [B, h, N, M]
  const weights = tf.softmax(scores) as tf.Tensor4D;
  return { out: tf.matMul(weights, v) as tf.Tensor4D, weights };
}

/** [B, N, h·d] → [B, h, N, d]. */
export function splitHeads(x: tf.Tensor, heads: number): tf.Tensor4D {
  const [B, N, C] = x.shape;
  return tf.transpose(tf.reshape(x, [B, N, heads, C / heads]), [0, 2, 1, 3]) as tf.Tensor4D;
}

/** [B, h, N, d] → [B, N, h·d]. */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor3D {
  const [B, h, N, d] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, N, h * d]) as tf.Tensor3D;
}

/**
 * Sinusoidal time embedding as in DDPM: t [B] → [B, dim] = [cos(t·f), sin(t·f)]
 * with f_i = 10000^(-i / (dim/2)). On wasm one kernel with a row per distinct
 * t cached (lib/runtime/kernels/sinusoidal.ts); elsewhere tf ops.
 */
export function sinusoidalEmbedding(t: tf.Tensor1D, dim: number): tf.Tensor2D {
  if (hasKernel(SINUSOIDAL)) {
    return tf.engine().runKernel(SINUSOIDAL, { t }, { dim }) as tf.Tensor2D;
  }
  const half = dim / 2;
  const freqs = sinusoidalFrequencies(dim);
  const args = tf.mul(tf.reshape(tf.cast(t, "float32"), [-1, 1]), tf.tensor2d(freqs, [1, half])); // [B, half]
  return tf.concat([tf.cos(args), tf.sin(args)], 1) as tf.Tensor2D;
}

/**
 * Random Fourier time embedding: fixed Gaussian frequencies w ~ N(0, scale²),
 * t [B] → [B, dim] = [sin(2π w t), cos(2π w t)].
 */
export function fourierEmbedding(t: tf.Tensor1D, freqs: Float32Array): tf.Tensor2D {
  const proj = tf.mul(
    tf.reshape(tf.cast(t, "float32"), [-1, 1]),
    tf.mul(tf.tensor2d(freqs, [1, freqs.length]), 2 * Math.PI),
  ); // [B, dim/2]
  return tf.concat([tf.sin(proj), tf.cos(proj)], 1) as tf.Tensor2D;
}

/**
 * `f()`'s value with no gradient to anything it read (TensorFlow's
 * stop_gradient): it runs inside a custom gradient whose gradient is zero,
 * and ops inside a kernel are not taped, so the backward pass skips it.
 * `like` is an input of the right shape for the (zero) gradient.
 */
export function noGradient(f: () => tf.Tensor, like: tf.Tensor): tf.Tensor {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: f(),
    gradFunc: () => tf.zerosLike(args[0] as tf.Tensor),
  }))(like);
}

/** Number of scalars in a weight record. */
export function countParams(w: Weights): number {
  return Object.values(w).reduce((n, t) => n + t.size, 0);
}

/** Parameters of a ResBlock: two norms and convs, a time projection, a 1×1 skip if widths differ. */
export function initResBlock(
  w: Weights,
  name: string,
  cin: number,
  cout: number,
  temb: number,
  rng: Rng,
): void {
  initNorm(w, `${name}.n1`, cin);
  initConv(w, `${name}.c1`, 3, cin, cout, rng);
  initDense(w, `${name}.t`, temb, cout, rng);
  initNorm(w, `${name}.n2`, cout);
  initConv(w, `${name}.c2`, 3, cout, cout, rng);
  if (cin !== cout) initConv(w, `${name}.skip`, 1, cin, cout, rng);
}

/**
 * ResBlock: c2(silu(n2(c1(silu(n1(x))) + t(e)))) + skip(x), with GroupNorm of
 * `groups` groups. x [B, H, W, cin], e [B, temb] → [B, H, W, cout].
 * @default groups 8
 */
export function resBlock(
  w: Weights,
  name: string,
  x: tf.Tensor4D,
  e: tf.Tensor,
  groups = 8,
): tf.Tensor4D {
  const cout = w[`${name}.c1.b`].shape[0];
  let h = conv(w, `${name}.c1`, groupNormSilu(w, `${name}.n1`, x, groups)); // [B, H, W, cout]
  h = tf.add(h, tf.reshape(dense(w, `${name}.t`, e), [-1, 1, 1, cout]));
  h = conv(w, `${name}.c2`, groupNormSilu(w, `${name}.n2`, h, groups));
  const skip = w[`${name}.skip.w`] ? conv(w, `${name}.skip`, x) : x;
  return tf.add(h, skip);
}
