/**
 * The image UNet: ResBlocks (GroupNorm, SiLU, 3×3 conv, time projection
 * added), stride-2 conv down, nearest up, skip concatenation, and an attention
 * block in the middle (and at the levels whose size `attnRes` names). Two
 * choices make the zoo's two image networks:
 *
 * - DDPM's (the defaults): sinusoidal time features and multi-head
 *   self-attention at the lowest resolution. It is the `mnist-unet` benchmark
 *   model (732,129 parameters for 1×28×28 images).
 * - The conditional score model's (`time: "fourier"`, `attention:
 *   "transformer"`, `numClasses` > 0): random Fourier time features (fixed
 *   Gaussian frequencies) and transformer blocks whose self-attention runs
 *   over the pixels and whose cross-attention runs from the pixels to context
 *   tokens made from the class label.
 *
 * Label index `numClasses` is the "null" label of classifier-free guidance,
 * and the label of a call without one. The network returns the raw output;
 * what it means (ε, a scaled score, …) is the diffusion process's business.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../runtime/rng.ts";
import {
  attend,
  conv,
  dense,
  embed,
  fourierEmbedding,
  groupNorm,
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
  sinusoidalEmbedding,
  splitHeads,
  upsample2x,
  type Weights,
} from "./layers.ts";

/**
 * The attention block: `self` is GroupNorm, a 1×1 conv to q, k, v and
 * multi-head self-attention over the pixels (parameters `<place>a.*`, e.g.
 * `mida.qkv`); `transformer` is a pre-LayerNorm block of self-attention,
 * cross-attention to the label's context tokens and a SiLU feed-forward
 * (parameters `<place>.tf.*`, e.g. `mid.tf.qkv`).
 */
export type UNetAttention = "self" | "transformer";

/** Configuration of {@link UNet}. */
export interface UNetConfig {
  /** Image channels in and out. @default 1 */
  channels?: number;
  /** Base channel count. @default 32 */
  ch?: number;
  /** Channel multiplier per level (each level after the first halves the resolution). @default [1, 2, 2] */
  mults?: number[];
  /** Width of the time embedding and of the context tokens. @default 128 */
  temb?: number;
  /** GroupNorm groups. @default 8 */
  groups?: number;
  /** Attention heads. @default 4 */
  heads?: number;
  /** Extra input channels after the image's (self-conditioning's x0 estimate). @default 0 */
  extraIn?: number;
  /** Time features: DDPM's sinusoids or random Fourier features. @default "sinusoidal" */
  time?: "sinusoidal" | "fourier";
  /** Standard deviation of the Fourier frequencies. @default 30 */
  fourierScale?: number;
  /** Seed of the Fourier frequencies (fixed, not trained). @default 0 */
  fourierSeed?: number;
  /** The attention block. @default "self" */
  attention?: UNetAttention;
  /** Image sizes (height) at which levels get an attention block; the middle always has one. @default [] */
  attnRes?: number[];
  /** Input image size (height = width), which `attnRes` refers to. @default 28 */
  size?: number;
  /** Number of classes, 0 for none; label `numClasses` is the null label. @default 0 */
  numClasses?: number;
  /** Context tokens the label embedding is projected to (transformer attention). @default 4 */
  contextTokens?: number;
  /** Add the label embedding to the time embedding (every ResBlock sees the label). @default false */
  labelInTime?: boolean;
}

/** Attention weights of one forward pass, by block name (`down2.self`, `mid.cross`, …): [B, heads, N, M]. */
export type AttentionMaps = Record<string, tf.Tensor4D>;

/** The UNet denoiser for NHWC images. */
export class UNet implements Network {
  readonly config: Required<UNetConfig>;
  /** The time features t [B] → [B, temb]. */
  readonly #timeFeatures: (t: tf.Tensor1D) => tf.Tensor2D;

  /**
   * Builds the network description (and draws the Fourier frequencies);
   * parameters come from {@link init}. Throws where the label would have no
   * way into the network.
   */
  constructor(config: UNetConfig = {}) {
    this.config = {
      channels: 1,
      ch: 32,
      mults: [1, 2, 2],
      temb: 128,
      groups: 8,
      heads: 4,
      extraIn: 0,
      time: "sinusoidal",
      fourierScale: 30,
      fourierSeed: 0,
      attention: "self",
      attnRes: [],
      size: 28,
      numClasses: 0,
      contextTokens: 4,
      labelInTime: false,
      ...config,
    };
    const c = this.config;
    if (c.attention === "transformer" && c.numClasses === 0) {
      throw new Error(
        "UNet: transformer attention cross-attends to the label: numClasses must be > 0",
      );
    }
    if (c.attention === "self" && c.numClasses > 0 && !c.labelInTime) {
      throw new Error(
        "UNet: with self-attention the label reaches the network only with labelInTime",
      );
    }
    if (c.time === "fourier") {
      const rng = new Rng(c.fourierSeed ^ 0xf0c1);
      const freqs = Float32Array.from(rng.normalArray(c.temb / 2), (v) => v * c.fourierScale); // ~ N(0, scale²)
      this.#timeFeatures = (t) => fourierEmbedding(t, freqs);
    } else {
      this.#timeFeatures = (t) => sinusoidalEmbedding(t, c.temb);
    }
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { channels, ch, mults, temb, extraIn, numClasses, attention, contextTokens } =
      this.config;
    const w: Weights = {};
    initDense(w, "tmlp1", temb, temb, rng);
    initDense(w, "tmlp2", temb, temb, rng);
    if (numClasses > 0) initEmbedding(w, "label", numClasses + 1, temb, rng);
    if (attention === "transformer") initDense(w, "ctx", temb, contextTokens * temb, rng);
    initConv(w, "inc", 3, channels + extraIn, ch, rng);
    const chs = mults.map((m) => ch * m);
    let c = ch;
    chs.forEach((co, i) => {
      initResBlock(w, `down${i}`, c, co, temb, rng);
      c = co;
      if (this.#hasAttention(i)) this.#initAttention(w, `down${i}`, c, rng);
      if (i < chs.length - 1) initConv(w, `ds${i}`, 3, c, c, rng);
    });
    initResBlock(w, "mid1", c, c, temb, rng);
    this.#initAttention(w, "mid", c, rng);
    initResBlock(w, "mid2", c, c, temb, rng);
    for (let i = chs.length - 1; i >= 0; i--) {
      initResBlock(w, `up${i}`, c + chs[i], chs[i], temb, rng);
      c = chs[i];
      if (this.#hasAttention(i)) this.#initAttention(w, `up${i}`, c, rng);
    }
    initNorm(w, "outn", c);
    initConv(w, "outc", 3, c, channels, rng);
    return w;
  }

  /** x [B, H, W, C], t [B], cond [B] (class index, `numClasses` = null) → raw output [B, H, W, C]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor {
    return this.#forward(w, x as tf.Tensor4D, t, cond);
  }

  /** Like {@link apply}, also returning every attention block's weights (`self`, and `cross` for transformers). */
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

  #initAttention(w: Weights, place: string, c: number, rng: Rng): void {
    if (this.config.attention === "self") initSelfAttention(w, `${place}a`, c, rng);
    else initTransformer(w, `${place}.tf`, c, this.config.temb, rng);
  }

  #forward(
    w: Weights,
    x: tf.Tensor4D,
    t: tf.Tensor1D,
    cond?: tf.Tensor1D,
    maps?: AttentionMaps,
  ): tf.Tensor4D {
    const { mults, temb, groups, heads, numClasses, contextTokens, labelInTime } = this.config;
    const B = x.shape[0];
    let e = dense(w, "tmlp2", silu(dense(w, "tmlp1", this.#timeFeatures(t)))); // [B, temb]
    let ctx: tf.Tensor | undefined;
    if (numClasses > 0) {
      const le = embed(w, "label", cond ?? (tf.fill([B], numClasses) as tf.Tensor1D)); // [B, temb]
      if (labelInTime) e = tf.add(e, le);
      if (this.config.attention === "transformer") {
        ctx = tf.reshape(dense(w, "ctx", le), [B, contextTokens, temb]); // [B, K, temb]
      }
    }
    const attention = (place: string, h: tf.Tensor4D) =>
      this.config.attention === "transformer"
        ? transformer(w, place, h, ctx!, heads, maps)
        : selfAttention(w, place, h, heads, groups, maps);
    let h = conv(w, "inc", x); // [B, 28, 28, ch]
    const skips: tf.Tensor4D[] = [];
    for (let i = 0; i < mults.length; i++) {
      h = resBlock(w, `down${i}`, h, e, groups);
      if (this.#hasAttention(i)) h = attention(`down${i}`, h);
      skips.push(h);
      if (i < mults.length - 1) h = conv(w, `ds${i}`, h, 2); // [B, H/2, W/2, c]
    }
    h = resBlock(w, "mid1", h, e, groups); // [B, 7, 7, c] with the defaults
    h = attention("mid", h);
    h = resBlock(w, "mid2", h, e, groups);
    for (let i = mults.length - 1; i >= 0; i--) {
      h = resBlock(w, `up${i}`, tf.concat([h, skips.pop()!], 3), e, groups);
      if (this.#hasAttention(i)) h = attention(`up${i}`, h);
      if (i > 0) h = upsample2x(h); // [B, 2H, 2W, c]
    }
    return conv(w, "outc", groupNormSilu(w, "outn", h, groups));
  }
}

/** Parameters of a self-attention block over c channels. */
function initSelfAttention(w: Weights, name: string, c: number, rng: Rng): void {
  initNorm(w, `${name}.norm`, c);
  initConv(w, `${name}.qkv`, 1, c, 3 * c, rng);
  initConv(w, `${name}.out`, 1, c, c, rng);
}

/**
 * Self-attention over the H·W positions after a GroupNorm, residual; its
 * parameters are `<place>a.*`. x [B, H, W, C] → [B, H, W, C].
 */
function selfAttention(
  w: Weights,
  place: string,
  x: tf.Tensor4D,
  heads: number,
  groups: number,
  maps?: AttentionMaps,
): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const p = `${place}a`;
  const qkv = tf.reshape(
    conv(w, `${p}.qkv`, groupNorm(w, `${p}.norm`, x, groups)),
    [B, H * W, 3 * C],
  ); // [B, N, 3C]: q, k, v, each head's d channels together
  // Split, then a 4-D transpose each: wasm's 5-D Transpose is ~50× slower per element.
  const [q, k, v] = tf.split(qkv, 3, 2).map((a) => splitHeads(a, heads)); // each [B, h, N, d]
  const self = attend(q, k, v); // [B, h, N, d]
  const merged = tf.reshape(mergeHeads(self.out), [B, H, W, C]) as tf.Tensor4D; // [B, H, W, C]
  if (maps) maps[`${place}.self`] = self.weights;
  return tf.add(x, conv(w, `${p}.out`, merged));
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
 * feed-forward, each residual; its parameters are `<place>.tf.*`.
 * x [B, H, W, C], ctx [B, K, dctx] → [B, H, W, C].
 */
function transformer(
  w: Weights,
  place: string,
  x: tf.Tensor4D,
  ctx: tf.Tensor,
  heads: number,
  maps?: AttentionMaps,
): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const p = `${place}.tf`;
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
    maps[`${place}.self`] = self.weights;
    maps[`${place}.cross`] = cross.weights;
  }
  return tf.reshape(h, [B, H, W, C]);
}
