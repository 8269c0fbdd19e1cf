/**
 * The GroupNorm kernels of group_norm.ts (DmwGroupNorm, DmwGroupNormGrad) as
 * WGSL programs for tfjs-backend-webgpu. By tf ops the layer is about a dozen
 * dispatches forward and twenty backward, each a pass over the activation;
 * here it is two passes forward (group statistics, then y) and three backward
 * (group sums of dy·γ and dy·γ·x̂, then dx; per-channel sums for dγ and dβ),
 * plus a few dispatches over B·G or C numbers.
 *
 * Same mathematics as the wasm kernels, with one difference: the variance is
 * taken in a second pass over the group, Σ(x − μ)², instead of from
 * Σx² − nμ², since the GPU sums in float32 and the difference of two large
 * sums would lose the digits the wasm kernels keep with float64.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import { dimsOf, GROUP_NORM, GROUP_NORM_GRAD, type GroupNormAttrs } from "./group_norm.ts";
import { elementwiseProgram, type WebGpuBackendLike, type WebGpuProgram } from "./webgpu.ts";

/** Threads of a workgroup that reduces one group or channel. */
const WG = 64;

/** Uniforms every GroupNorm program takes: pixels, channels, channels per group, groups, eps. */
const SHAPE_UNIFORMS = "P : i32, C : i32, cg : i32, G : i32, rows : i32, eps : f32,";

/** WGSL that sums `acc` over the workgroup's threads into `red[0]`. */
function reduceSnippet(red: string, acc: string): string {
  return `
        ${red}[t] = ${acc};
        workgroupBarrier();
        for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
          if (t < s) { ${red}[t] = ${red}[t] + ${red}[t + s]; }
          workgroupBarrier();
        }`;
}

/**
 * One workgroup per sample and group (`rows` = B·G). `stats`: mean and
 * rstd of x, out [B, G, 2]. `grad`: the group means of dx̂ = dy·γ and of
 * dx̂·x̂, out [B, G, 2].
 */
class GroupReduceProgram implements WebGpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  uniforms = SHAPE_UNIFORMS;

  constructor(readonly mode: "stats" | "grad", B: number, G: number) {
    this.variableNames = mode === "stats" ? ["x"] : ["dy", "x", "mean", "rstd", "gamma"];
    this.outputShape = [B, G, 2];
    this.shaderKey = `dmw_gn_${mode}`;
    this.dispatch = [B * G, 1, 1];
  }

  getUserCode(): string {
    const head = `
      var<workgroup> red1 : array<f32, ${WG}>;
      var<workgroup> red2 : array<f32, ${WG}>;
      fn main(index : i32) {
        let row = index / ${WG};
        let t = u32(localId.x);
        let b = row / uniforms.G;
        let g = row % uniforms.G;
        let n = uniforms.P * uniforms.cg;
        let valid = row < uniforms.rows;`;
    const at =
      `let at = (b * uniforms.P + k / uniforms.cg) * uniforms.C + g * uniforms.cg + k % uniforms.cg;`;
    if (this.mode === "stats") {
      return `${head}
        var acc = 0.0;
        for (var k = i32(t); valid && k < n; k = k + ${WG}) {
          ${at}
          acc = acc + x[at];
        }
        ${reduceSnippet("red1", "acc")}
        let mu = red1[0] / f32(n);
        var dev = 0.0;
        for (var k = i32(t); valid && k < n; k = k + ${WG}) {
          ${at}
          let d = x[at] - mu;
          dev = dev + d * d;
        }
        workgroupBarrier();
        ${reduceSnippet("red2", "dev")}
        if (t == 0u && valid) {
          result[row * 2] = mu;
          result[row * 2 + 1] = inverseSqrt(red2[0] / f32(n) + uniforms.eps);
        }
      }`;
    }
    return `${head}
        var a1 = 0.0;
        var a2 = 0.0;
        var mu = 0.0;
        var r = 0.0;
        if (valid) {
          mu = mean[row];
          r = rstd[row];
        }
        for (var k = i32(t); valid && k < n; k = k + ${WG}) {
          ${at}
          let dxh = dy[at] * gamma[at % uniforms.C];
          a1 = a1 + dxh;
          a2 = a2 + dxh * (x[at] - mu) * r;
        }
        ${reduceSnippet("red1", "a1")}
        ${reduceSnippet("red2", "a2")}
        if (t == 0u && valid) {
          result[row * 2] = red1[0] / f32(n);
          result[row * 2 + 1] = red2[0] / f32(n);
        }
      }`;
  }
}

/**
 * One thread per element of [B, H, W, C]. `norm`: y = (x − μ)·r·γ + β from
 * the stats. `dx`: dx = r·(dy·γ − m1 − x̂·m2) from the gradient's group means.
 */
function groupElementwise(mode: "norm" | "dx", shape: number[]): WebGpuProgram {
  const value = mode === "norm"
    ? `setOutputAtIndex(index,
            (x[index] - stats[row * 2]) * stats[row * 2 + 1] * gamma[c] + beta[c]);`
    : `let r = rstd[row];
          let xh = (x[index] - mean[row]) * r;
          setOutputAtIndex(index,
            r * (dy[index] * gamma[c] - means[row * 2] - xh * means[row * 2 + 1]));`;
  return elementwiseProgram({
    shaderKey: `dmw_gn_${mode}`,
    variableNames: mode === "norm"
      ? ["x", "stats", "gamma", "beta"]
      : ["dy", "x", "mean", "rstd", "gamma", "means"],
    shape,
    uniforms: SHAPE_UNIFORMS,
    body: `let c = index % uniforms.C;
          let b = index / (uniforms.P * uniforms.C);
          let row = b * uniforms.G + c / uniforms.cg;
          ${value}`,
  });
}

/** One workgroup per channel: Σ dy·x̂ and Σ dy over batch and pixels, out [2, C]. */
class ChannelSumsProgram implements WebGpuProgram {
  variableNames = ["dy", "x", "mean", "rstd"];
  outputShape: number[];
  shaderKey = "dmw_gn_channel_sums";
  dispatchLayout = { x: [0, 1] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  uniforms = `${SHAPE_UNIFORMS} B : i32,`;

  constructor(C: number) {
    this.outputShape = [2, C];
    this.dispatch = [C, 1, 1];
  }

  getUserCode(): string {
    return `
      var<workgroup> red1 : array<f32, ${WG}>;
      var<workgroup> red2 : array<f32, ${WG}>;
      fn main(index : i32) {
        let c = index / ${WG};
        let t = u32(localId.x);
        let valid = c < uniforms.C;
        let g = c / uniforms.cg;
        var a1 = 0.0;
        var a2 = 0.0;
        for (var k = i32(t); valid && k < uniforms.B * uniforms.P; k = k + ${WG}) {
          let row = (k / uniforms.P) * uniforms.G + g;
          let at = k * uniforms.C + c;
          let d = dy[at];
          a1 = a1 + d * (x[at] - mean[row]) * rstd[row];
          a2 = a2 + d;
        }
        ${reduceSnippet("red1", "a1")}
        ${reduceSnippet("red2", "a2")}
        if (t == 0u && valid) {
          result[c] = red1[0];
          result[uniforms.C + c] = red2[0];
        }
      }`;
  }
}

type Uniform = { type: string; data: number[] };

function shapeUniforms(x: tf.TensorInfo, gamma: tf.TensorInfo, attrs: GroupNormAttrs): Uniform[] {
  const { B, P, C, cg } = dimsOf(x, gamma, attrs.groups);
  const int = (v: number) => ({ type: "int32", data: [v] });
  return [
    int(P),
    int(C),
    int(cg),
    int(attrs.groups),
    int(B * attrs.groups),
    { type: "float32", data: [attrs.eps] },
  ];
}

/** out[i] = v[i·stride + offset]: one column of [N, 2] statistics, or one row of [2, C] sums. */
function pick(
  backend: WebGpuBackendLike,
  v: tf.TensorInfo,
  shape: number[],
  stride: number,
  offset: number,
): tf.TensorInfo {
  const program = elementwiseProgram({
    shaderKey: "dmw_pick",
    variableNames: ["v"],
    shape,
    uniforms: "stride : i32, offset : i32,",
    body: "setOutputAtIndex(index, v[index * uniforms.stride + uniforms.offset]);",
  });
  return backend.runWebGPUProgram(program, [v], "float32", [
    { type: "int32", data: [stride] },
    { type: "int32", data: [offset] },
  ]);
}

/** The forward kernel function: y, mean [B, G], rstd [B, G]. */
export function webgpuGroupNorm(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as unknown as WebGpuBackendLike;
  const { x, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const attrs = args.attrs as unknown as GroupNormAttrs;
  const { B } = dimsOf(x, gamma, attrs.groups);
  const G = attrs.groups;
  const u = shapeUniforms(x, gamma, attrs);
  const stats = backend.runWebGPUProgram(new GroupReduceProgram("stats", B, G), [x], "float32", u);
  const y = backend.runWebGPUProgram(
    groupElementwise("norm", x.shape),
    [x, stats, gamma, beta],
    "float32",
    u,
  );
  const mean = pick(backend, stats, [B, G], 2, 0);
  const rstd = pick(backend, stats, [B, G], 2, 1);
  backend.disposeData(stats.dataId);
  return [y, mean, rstd];
}

/** The gradient kernel function: dx, dγ, dβ. */
export function webgpuGroupNormGrad(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as unknown as WebGpuBackendLike;
  const { dy, x, mean, rstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const attrs = args.attrs as unknown as GroupNormAttrs;
  const { B, C } = dimsOf(x, gamma, attrs.groups);
  const u = shapeUniforms(x, gamma, attrs);
  const means = backend.runWebGPUProgram(
    new GroupReduceProgram("grad", B, attrs.groups),
    [dy, x, mean, rstd, gamma],
    "float32",
    u,
  );
  const dx = backend.runWebGPUProgram(
    groupElementwise("dx", x.shape),
    [dy, x, mean, rstd, gamma, means],
    "float32",
    u,
  );
  backend.disposeData(means.dataId);
  const sums = backend.runWebGPUProgram(new ChannelSumsProgram(C), [dy, x, mean, rstd], "float32", [
    ...u,
    { type: "int32", data: [B] },
  ]);
  const dgamma = pick(backend, sums, [C], 1, 0);
  const dbeta = pick(backend, sums, [C], 1, C);
  backend.disposeData(sums.dataId);
  return [dx, dgamma, dbeta];
}

/** The GroupNorm kernels on WebGPU, for {@link installKernels}. */
export const WEBGPU_GROUP_NORM: Record<string, KernelMaker> = {
  [GROUP_NORM]: () => webgpuGroupNorm,
  [GROUP_NORM_GRAD]: () => webgpuGroupNormGrad,
};
