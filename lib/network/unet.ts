/**
 * The image UNet: ResBlocks (GroupNorm, SiLU, 3×3 conv, time projection
 * added), stride-2 conv down, nearest up, skip concatenation, and multi-head
 * self-attention at the lowest resolution. With its defaults it is the
 * `mnist-unet` benchmark model (732,129 parameters for 1×28×28 images).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import {
  attend,
  conv,
  dense,
  embed,
  groupNorm,
  groupNormSilu,
  initConv,
  initDense,
  initEmbedding,
  initNorm,
  initResBlock,
  mergeHeads,
  type Network,
  resBlock,
  silu,
  sinusoidalEmbedding,
  splitHeads,
  upsample2x,
  type Weights,
} from "./layers.ts";

/** Configuration of {@link UNet}. */
export interface UNetConfig {
  /** Image channels in and out. @default 1 */
  channels?: number;
  /** Base channel count. @default 32 */
  ch?: number;
  /** Channel multiplier per level. @default [1, 2, 2] */
  mults?: number[];
  /** Time-embedding width. @default 128 */
  temb?: number;
  /** Attention heads in the middle block. @default 4 */
  heads?: number;
  /** GroupNorm groups. @default 8 */
  groups?: number;
  /** Classes for conditioning (embedding added to the time embedding); 0 = none. @default 0 */
  numClasses?: number;
  /** Extra input channels after the image's (self-conditioning's x0 estimate). @default 0 */
  extraIn?: number;
}

/** The UNet denoiser for NHWC images. */
export class UNet implements Network {
  readonly config: Required<UNetConfig>;

  /** Builds the network description; parameters come from {@link init}. */
  constructor(config: UNetConfig = {}) {
    this.config = {
      channels: 1,
      ch: 32,
      mults: [1, 2, 2],
      temb: 128,
      heads: 4,
      groups: 8,
      numClasses: 0,
      extraIn: 0,
      ...config,
    };
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { channels, ch, mults, temb, numClasses, extraIn } = this.config;
    const w: Weights = {};
    initDense(w, "tmlp1", temb, temb, rng);
    initDense(w, "tmlp2", temb, temb, rng);
    if (numClasses > 0) initEmbedding(w, "label", numClasses, temb, rng);
    initConv(w, "inc", 3, channels + extraIn, ch, rng);
    const chs = mults.map((m) => ch * m);
    let c = ch;
    chs.forEach((co, i) => {
      initResBlock(w, `down${i}`, c, co, temb, rng);
      c = co;
      if (i < chs.length - 1) initConv(w, `ds${i}`, 3, c, c, rng);
    });
    initResBlock(w, "mid1", c, c, temb, rng);
    initNorm(w, "mida.norm", c);
    initConv(w, "mida.qkv", 1, c, 3 * c, rng);
    initConv(w, "mida.out", 1, c, c, rng);
    initResBlock(w, "mid2", c, c, temb, rng);
    for (let i = chs.length - 1; i >= 0; i--) {
      initResBlock(w, `up${i}`, c + chs[i], chs[i], temb, rng);
      c = chs[i];
    }
    initNorm(w, "outn", c);
    initConv(w, "outc", 3, c, channels, rng);
    return w;
  }

  /** x [B, H, W, C], t [B] → [B, H, W, C]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor {
    const { mults, temb, groups } = this.config;
    let e = dense(w, "tmlp2", silu(dense(w, "tmlp1", sinusoidalEmbedding(t, temb)))); // [B, temb]
    if (cond && w["label.w"]) e = tf.add(e, embed(w, "label", cond));
    let h = conv(w, "inc", x as tf.Tensor4D); // [B, 28, 28, ch]
    const skips: tf.Tensor4D[] = [];
    for (let i = 0; i < mults.length; i++) {
      h = resBlock(w, `down${i}`, h, e, groups);
      skips.push(h);
      if (i < mults.length - 1) h = conv(w, `ds${i}`, h, 2); // [B, H/2, W/2, c]
    }
    h = resBlock(w, "mid1", h, e, groups); // [B, 7, 7, c]
    h = this.#attention(w, h);
    h = resBlock(w, "mid2", h, e, groups);
    for (let i = mults.length - 1; i >= 0; i--) {
      h = resBlock(w, `up${i}`, tf.concat([h, skips.pop()!], 3), e, groups);
      if (i > 0) h = upsample2x(h); // [B, 2H, 2W, c]
    }
    return conv(w, "outc", groupNormSilu(w, "outn", h, groups));
  }

  /** Self-attention over the H·W positions, residual. */
  #attention(w: Weights, x: tf.Tensor4D): tf.Tensor4D {
    const [B, H, W, C] = x.shape;
    const heads = this.config.heads;
    const qkv = tf.reshape(
      conv(w, "mida.qkv", groupNorm(w, "mida.norm", x, this.config.groups)),
      [B, H * W, 3 * C],
    ); // [B, N, 3C]: q, k, v, each head's d channels together
    // Split, then a 4-D transpose each: wasm's 5-D Transpose is ~50× slower per element.
    const [q, k, v] = tf.split(qkv, 3, 2).map((p) => splitHeads(p, heads)); // each [B, h, N, d]
    const { out } = attend(q, k, v); // [B, h, N, d]
    const merged = tf.reshape(mergeHeads(out), [B, H, W, C]) as tf.Tensor4D; // [B, H, W, C]
    return tf.add(x, conv(w, "mida.out", merged));
  }
}
