/**
 * TabDDPM's vector denoisers: MLPDiffusion and ResNetDiffusion. The
 * `mlp-toy` benchmark model is MLPDiffusion with its defaults (198,530
 * parameters for 2-D data).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../runtime/rng.ts";
import {
  dense,
  embed,
  initDense,
  initEmbedding,
  initNorm,
  layerNorm,
  type Network,
  silu,
  sinusoidalEmbedding,
  type Weights,
} from "./layers.ts";

/**
 * The time embedding both denoisers add to their input: a two-layer MLP
 * (`temb1`, `temb2`) over sinusoidal features of `dEmb`, plus the label's
 * embedding (`label`) when the network has one and a label is given.
 * t [B] → [B, width of temb2].
 */
function embedTime(w: Weights, t: tf.Tensor1D, dEmb: number, cond?: tf.Tensor1D): tf.Tensor {
  const e = dense(w, "temb2", silu(dense(w, "temb1", sinusoidalEmbedding(t, dEmb))));
  return cond && w["label.w"] ? tf.add(e, embed(w, "label", cond)) : e;
}

/** Configuration of {@link MLPDiffusion}. */
export interface MLPConfig {
  /** Data dimension (input and output). */
  dIn: number;
  /** Width of the input projection and the time embedding. @default 128 */
  dEmb?: number;
  /** Hidden widths, each Linear + ReLU. @default [256, 256, 256] */
  layers?: number[];
  /** Number of classes for conditioning (label embedding added to the time embedding); 0 = none. @default 0 */
  numClasses?: number;
  /** Extra input features after the data's (self-conditioning's x0 estimate); the output stays dIn wide. @default 0 */
  extraIn?: number;
}

/**
 * MLPDiffusion: h = proj(x) + timeMLP(sinusoidal(t)) [+ label embedding],
 * then Linear+ReLU layers, then a Linear head back to the data dimension.
 */
export class MLPDiffusion implements Network {
  readonly config: Required<MLPConfig>;

  /** Builds the network description; parameters come from {@link init}. */
  constructor(config: MLPConfig) {
    this.config = { dEmb: 128, layers: [256, 256, 256], numClasses: 0, extraIn: 0, ...config };
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { dIn, dEmb, layers, numClasses, extraIn } = this.config;
    const w: Weights = {};
    initDense(w, "proj", dIn + extraIn, dEmb, rng);
    initDense(w, "temb1", dEmb, dEmb, rng);
    initDense(w, "temb2", dEmb, dEmb, rng);
    if (numClasses > 0) initEmbedding(w, "label", numClasses, dEmb, rng);
    const dims = [dEmb, ...layers];
    for (let i = 0; i < layers.length; i++) initDense(w, `mlp${i}`, dims[i], dims[i + 1], rng);
    initDense(w, "out", layers.at(-1)!, dIn, rng);
    return w;
  }

  /** x [B, dIn + extraIn], t [B] → ε̂ [B, dIn]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor {
    const { dEmb, layers } = this.config;
    let h = tf.add(dense(w, "proj", x), embedTime(w, t, dEmb, cond)); // [B, dEmb]
    for (let i = 0; i < layers.length; i++) h = dense(w, `mlp${i}`, h, "relu");
    return dense(w, "out", h); // [B, dIn]
  }
}

/** Configuration of {@link ResNetDiffusion}. */
export interface ResNetConfig {
  /** Data dimension (input and output). */
  dIn: number;
  /** Width of the residual stream. @default 256 */
  dMain?: number;
  /** Width inside each block. @default 512 */
  dHidden?: number;
  /** Number of residual blocks. @default 3 */
  blocks?: number;
  /** Width of the time embedding. @default 128 */
  dEmb?: number;
  /** Number of classes for conditioning; 0 = none. @default 0 */
  numClasses?: number;
  /** Extra input features after the data's (self-conditioning); the output stays dIn wide. @default 0 */
  extraIn?: number;
}

/**
 * ResNetDiffusion (TabDDPM): x + time embedding into a residual stream of
 * blocks Norm → Linear → ReLU → Linear (+ skip), then Norm → ReLU → Linear.
 * LayerNorm stands where TabDDPM has BatchNorm, so that a sample never
 * depends on the other samples of its batch.
 */
export class ResNetDiffusion implements Network {
  readonly config: Required<ResNetConfig>;

  /** Builds the network description; parameters come from {@link init}. */
  constructor(config: ResNetConfig) {
    this.config = {
      dMain: 256,
      dHidden: 512,
      blocks: 3,
      dEmb: 128,
      numClasses: 0,
      extraIn: 0,
      ...config,
    };
  }

  /** Fresh parameters (PyTorch default initialisation). */
  init(rng: Rng): Weights {
    const { dIn, dMain, dHidden, blocks, dEmb, numClasses, extraIn } = this.config;
    const w: Weights = {};
    initDense(w, "temb1", dEmb, dEmb, rng);
    initDense(w, "temb2", dEmb, dMain, rng);
    if (numClasses > 0) initEmbedding(w, "label", numClasses, dMain, rng);
    initDense(w, "first", dIn + extraIn, dMain, rng);
    for (let i = 0; i < blocks; i++) {
      initNorm(w, `block${i}.norm`, dMain);
      initDense(w, `block${i}.lin1`, dMain, dHidden, rng);
      initDense(w, `block${i}.lin2`, dHidden, dMain, rng);
    }
    initNorm(w, "headNorm", dMain);
    initDense(w, "head", dMain, dIn, rng);
    return w;
  }

  /** x [B, dIn + extraIn], t [B] → [B, dIn]. */
  apply(w: Weights, x: tf.Tensor, t: tf.Tensor1D, cond?: tf.Tensor1D): tf.Tensor {
    const { dEmb, blocks } = this.config;
    let h = tf.add(dense(w, "first", x), embedTime(w, t, dEmb, cond)); // [B, dMain]
    for (let i = 0; i < blocks; i++) {
      const z = dense(w, `block${i}.lin1`, layerNorm(w, `block${i}.norm`, h), "relu"); // [B, dHidden]
      h = tf.add(h, dense(w, `block${i}.lin2`, z));
    }
    return dense(w, "head", tf.relu(layerNorm(w, "headNorm", h))); // [B, dIn]
  }
}
