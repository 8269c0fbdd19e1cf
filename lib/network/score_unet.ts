/**
 * The UNet of the conditional score model: random Fourier time features
 * (fixed Gaussian frequencies), ResBlocks, and transformer blocks at low
 * resolution whose self-attention runs over the pixels and whose
 * cross-attention runs from the pixels to context tokens made from the class
 * label. Label index `numClasses` is the "null" label of classifier-free
 * guidance. The network returns the raw output; dividing it by σ(t) to get a
 * score is the diffusion process's business, not the network's.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../runtime/rng.ts";
import {
  attend,
  conv,
  dense,
  embed,
  fourierEmbedding,
  groupNormSilu,
  initConv,
  initDense,
  initEmbedding,
  initNorm,
  initResBlock,
  layerNorm,
  mergeHeads,
  type Network,
  resBlock,
  silu,
  splitHeads,
  upsample2x,
  type Weights,
} from "./layers.ts";

/** Configuration of {@link ScoreUNet}. */
export interface ScoreUNetConfig {
  /** Image channels in and out. @default 1 */
  channels?: number;
  /** Base channel count. @default 32 */
  ch?: number;
  /** Channel multiplier per level (each level after the first halves the resolution). @default [1, 2, 2] */
  mults?: number[];
  /** Width of the time embedding and of the context tokens. @default 128 */
  temb?: number;
  /** Standard deviation of the Fourier frequencies. @default 30 */
  fourierScale?: number;
  /** Seed of the Fourier frequencies (fixed, not trained). @default 0 */
  fourierSeed?: number;
  /** Attention heads of the transformer blocks. @default 4 */
  heads?: number;
  /** Image sizes (height) at which levels get a transformer block; the middle always has one. @default [7] */
  attnRes?: number[];
  /** Number of classes; label `numClasses` is the null label. @default 10 */
  numClasses?: number;
  /** Context tokens the label embedding is projected to. @default 4 */
  contextTokens?: number;
  /** GroupNorm groups. @default 8 */
  groups?: number;
  /** Input image size (height = width). @default 28 */
  size?: number;
  /** Also add the label embedding to the time embedding (every ResBlock sees the label). @default false */
  labelInTime?: boolean;
}

/** Attention weights of one forward pass, by block name (`down2.self`, `mid.cross`, …): [B, heads, N, M]. */
export type AttentionMaps = Record<string, tf.Tensor4D>;

/** The score UNet for NHWC images, conditioned on a class label. */
export class ScoreUNet implements Network {
  readonly config: Required<ScoreUNetConfig>;
  /** The fixed Fourier frequencies [temb/2], drawn from N(0, fourierScale²). */
  readonly freqs: Float32Array;

  /** Builds the network description and draws its Fourier frequencies. */
  constructor(config: ScoreUNetConfig = {}) {
    this.config = {
      channels: 1,
      ch: 32,
      mults: [1, 2, 2],
      temb: 128,
      fourierScale: 30,
      fourierSeed: 0,
      heads: 4,
      attnRes: [7],
      numClasses: 10,
      contextTokens: 4,
      groups: 8,
      size: 28,
      labelInTime: false,
      ...config,
    };
    const rng = new Rng(this.config.fourierSeed ^ 0xf0c1);
    this.freqs = Float32Array.from(
      rng.normalArray(this.config.temb / 2),
      (v) => v * this.config.fourierScale,
    );
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { channels, ch, mults, temb, numClasses, contextTokens } = this.config;
    const w: Weights = {};
    initDense(w, "tmlp1", temb, temb, rng);
    initDense(w, "tmlp2", temb, temb, rng);
    initEmbedding(w, "label", numClasses + 1, temb, rng);
    initDense(w, "ctx", temb, contextTokens * temb, rng);
    initConv(w, "inc", 3, channels, ch, rng);
    const chs = mults.map((m) => ch * m);
    let c = ch;
    chs.forEach((co, i) => {
      initResBlock(w, `down${i}`, c, co, temb, rng);
      c = co;
      if (this.#hasAttention(i)) initTransformer(w, `down${i}.tf`, c, temb, rng);
      if (i < chs.length - 1) initConv(w, `ds${i}`, 3, c, c, rng);
    });
    initResBlock(w, "mid1", c, c, temb, rng);
    initTransformer(w, "mid.tf", c, temb, rng);
    initResBlock(w, "mid2", c, c, temb, rng);
    for (let i = chs.length - 1; i >= 0; i--) {
      initResBlock(w, `up${i}`, c + chs[i], chs[i], temb, rng);
      c = chs[i];
      if (this.#hasAttention(i)) initTransformer(w, `up${i}.tf`, c, temb, rng);
    }
    initNorm(w, "outn", c);
    initConv(w, "outc", 3, c, channels, rng);
    return w;
  }

  /** x [B, H, W, C], t [B], cond [B] (class index, `numClasses` = null) → raw output [B, H, W, C]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor {
    return this.#forward(w, x as tf.Tensor4D, t, cond);
  }

  /** Like {@link apply}, also returning every transformer block's self- and cross-attention weights. */
  applyWithAttention(
    w: Weights,
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    cond?: tf.Tensor1D,
  ): { out: tf.Tensor4D; attention: AttentionMaps } {
    const attention: AttentionMaps = {};
    const out = this.#forward(w, x, t, cond, attention);
    return { out, attention };
  }

  #hasAttention(level: number): boolean {
    return this.config.attnRes.includes(this.config.size >> level);
  }

  #forward(
    w: Weights,
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    cond?: tf.Tensor1D,
    maps?: AttentionMaps,
  ): tf.Tensor4D {
    const { mults, temb, groups, numClasses, contextTokens } = this.config;
    const B = x.shape[0];
    const labels = cond ?? (tf.fill([B], numClasses) as tf.Tensor1D);
    const le = embed(w, "label", labels); // [B, temb]
    let e = dense(w, "tmlp2", silu(dense(w, "tmlp1", fourierEmbedding(t, this.freqs)))); // [B, temb]
    if (this.config.labelInTime) e = tf.add(e, le);
    const ctx = tf.reshape(dense(w, "ctx", le), [B, contextTokens, temb]); // [B, K, temb]
    const block = (name: string, h: tf.Tensor4D) =>
      transformer(w, name, h, ctx, this.config.heads, maps);
    let h = conv(w, "inc", x); // [B, 28, 28, ch]
    const skips: tf.Tensor4D[] = [];
    for (let i = 0; i < mults.length; i++) {
      h = resBlock(w, `down${i}`, h, e, groups);
      if (this.#hasAttention(i)) h = block(`down${i}`, h);
      skips.push(h);
      if (i < mults.length - 1) h = conv(w, `ds${i}`, h, 2); // [B, H/2, W/2, c]
    }
    h = resBlock(w, "mid1", h, e, groups); // [B, 7, 7, c] with the defaults
    h = block("mid", h);
    h = resBlock(w, "mid2", h, e, groups);
    for (let i = mults.length - 1; i >= 0; i--) {
      h = resBlock(w, `up${i}`, tf.concat([h, skips.pop()!], 3), e, groups);
      if (this.#hasAttention(i)) h = block(`up${i}`, h);
      if (i > 0) h = upsample2x(h); // [B, 2H, 2W, c]
    }
    return conv(w, "outc", groupNormSilu(w, "outn", h, groups));
  }
}

/** Parameters of a transformer block over c channels with context width `dctx`. */
function initTransformer(w: Weights, name: string, c: number, dctx: number, rng: Rng): void {
  initNorm(w, `${name}.ln1`, c);
  initDense(w, `${name}.qkv`, c, 3 * c, rng);
  initDense(w, `${name}.self`, c, c, rng);
  initNorm(w, `${name}.ln2`, c);
  initDense(w, `${name}.q`, c, c, rng);
  initDense(w, `${name}.kv`, dctx, 2 * c, rng);
  initDense(w, `${name}.cross`, c, c, rng);
  initNorm(w, `${name}.ln3`, c);
  initDense(w, `${name}.ff1`, c, 2 * c, rng);
  initDense(w, `${name}.ff2`, 2 * c, c, rng);
}

/**
 * Pre-LayerNorm transformer block on an image, its tokens the pixels:
 * self-attention, cross-attention to the context tokens, and a SiLU
 * feed-forward, each residual. x [B, H, W, C], ctx [B, K, dctx] → [B, H, W, C].
 */
function transformer(
  w: Weights,
  name: string,
  x: tf.Tensor4D,
  ctx: tf.Tensor,
  heads: number,
  maps?: AttentionMaps,
): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const p = `${name}.tf`;
  let h: tf.Tensor = tf.reshape(x, [B, H * W, C]); // [B, N, C]
  const qkv = dense(w, `${p}.qkv`, layerNorm(w, `${p}.ln1`, h)); // [B, N, 3C]
  const [q, k, v] = tf.split(qkv, 3, 2).map((a) => splitHeads(a, heads)); // each [B, h, N, d]
  const self = attend(q, k, v);
  h = tf.add(h, dense(w, `${p}.self`, mergeHeads(self.out)));
  const cq = splitHeads(dense(w, `${p}.q`, layerNorm(w, `${p}.ln2`, h)), heads); // [B, h, N, d]
  const [ck, cv] = tf.split(dense(w, `${p}.kv`, ctx), 2, 2).map((a) => splitHeads(a, heads)); // [B, h, K, d]
  const cross = attend(cq, ck, cv); // weights [B, h, N, K]
  h = tf.add(h, dense(w, `${p}.cross`, mergeHeads(cross.out)));
  h = tf.add(h, dense(w, `${p}.ff2`, silu(dense(w, `${p}.ff1`, layerNorm(w, `${p}.ln3`, h)))));
  if (maps) {
    maps[`${name}.self`] = self.weights;
    maps[`${name}.cross`] = cross.weights;
  }
  return tf.reshape(h, [B, H, W, C]);
}
