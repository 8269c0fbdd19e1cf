/**
 * Project kernels for tfjs-backend-webgpu 4.22.0: fixes for two of its
 * kernels that compute wrong numbers without an error tfjs would see, and the
 * small program interface the project's WGSL kernels use.
 *
 * - AddN binds every input as a storage buffer of one shader. With more
 *   inputs than the device allows (maxStorageBuffersPerShaderStage − 1; 7 at
 *   WebGPU's default limits) the pipeline is invalid and the output keeps a
 *   recycled buffer's old contents. clipByGlobalNorm sums one norm per
 *   parameter with addN, so training on WebGPU lost its gradients. Here the
 *   inputs are summed in groups the device can bind.
 * - Cast from int32 or bool to float32 returns the same GPU buffer relabelled
 *   float32, still holding int32 bits. Most shaders convert what they read,
 *   but Conv2D's 3-channel path (`vec3<f32>(x[i], …)`) does not compile on an
 *   int32 buffer, so D3PM's first convolution of its one-hot input failed and
 *   its loss became NaN. Here the cast writes a float32 buffer.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";

/** What a project WGSL kernel hands to `runWebGPUProgram` (tfjs-backend-webgpu's program interface). */
export interface WebGpuProgram {
  /** Names of the input buffers, in the order of the inputs. */
  variableNames: string[];
  /** Shape of the output tensor. */
  outputShape: number[];
  /** Caches the compiled pipeline: the same key, the same WGSL. */
  shaderKey: string;
  /** Which output axes map to the dispatch's x, y, z. */
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  /** Workgroups to launch in x, y, z. */
  dispatch: [number, number, number];
  /** Threads of one workgroup. */
  workgroupSize: [number, number, number];
  /** Whether `uniforms.size` holds the output's element count. */
  size?: boolean;
  /** Extra uniform fields, `name : type,` each. */
  uniforms?: string;
  /** The WGSL body: helper functions and `fn main(index : i32)`. */
  getUserCode(): string;
}

/** The part of tfjs-backend-webgpu's backend the project kernels use. */
export interface WebGpuBackendLike {
  device: GPUDevice;
  tensorMap: { get(id: tf.DataId): { dtype: tf.DataType; values?: tf.backend_util.BackendValues } };
  runWebGPUProgram(
    program: WebGpuProgram,
    inputs: tf.TensorInfo[],
    dtype: tf.DataType,
    uniforms?: { type: string; data: number[] }[],
  ): tf.TensorInfo;
  makeTensorInfo(
    shape: number[],
    dtype: tf.DataType,
    values?: tf.backend_util.BackendValues,
  ): tf.TensorInfo;
  disposeData(id: tf.DataId): boolean;
}

/** What {@link elementwiseProgram} builds a program from. */
export interface ElementwiseSpec {
  /** Caches the compiled pipeline: one key per distinct `body`. */
  shaderKey: string;
  /**
   * The input buffers, in the order of the inputs: only those `body` reads
   * (WebGPU derives the binding layout from the shader, so an unread buffer
   * breaks the bind group).
   */
  variableNames: string[];
  /** Shape of the output. */
  shape: number[];
  /** Extra uniform fields, `name : type,` each. */
  uniforms?: string;
  /** WGSL run for each `index` below `uniforms.size`, ending in `setOutputAtIndex(index, …)`. */
  body: string;
}

/** A program with one thread per output element, in workgroups of 64 along x. */
export function elementwiseProgram(spec: ElementwiseSpec): WebGpuProgram {
  const outputShape = spec.shape.length ? spec.shape : [1];
  return {
    variableNames: spec.variableNames,
    outputShape,
    shaderKey: spec.shaderKey,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(tf.util.sizeFromShape(outputShape) / 64), 1, 1],
    workgroupSize: [64, 1, 1],
    size: true,
    uniforms: spec.uniforms,
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${spec.body}
        }
      }`,
  };
}

type KernelArgs = Parameters<tf.KernelFunc>[0];

/** A fix of a tfjs-webgpu kernel, made from the kernel it replaces. */
function fix(name: string, make: (original: tf.KernelFunc) => tf.KernelFunc): KernelMaker {
  return (current) => {
    if (!current) throw new Error(`tfjs-backend-webgpu has no ${name} kernel to replace`);
    return make(current.kernelFunc);
  };
}

/** AddN in sums of at most maxStorageBuffersPerShaderStage − 1 inputs each. */
function splitAddN(original: tf.KernelFunc): tf.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as unknown as WebGpuBackendLike;
    const most = Math.max(2, backend.device.limits.maxStorageBuffersPerShaderStage - 1);
    let list = args.inputs as unknown as tf.TensorInfo[];
    const partial: tf.TensorInfo[] = [];
    while (list.length > most) {
      const next: tf.TensorInfo[] = [];
      for (let i = 0; i < list.length; i += most) {
        const group = list.slice(i, i + most);
        if (group.length === 1) {
          next.push(group[0]);
          continue;
        }
        const sum = original({ ...args, inputs: group as unknown as tf.NamedTensorInfoMap });
        partial.push(sum as tf.TensorInfo);
        next.push(sum as tf.TensorInfo);
      }
      list = next;
    }
    const out = original({ ...args, inputs: list as unknown as tf.NamedTensorInfoMap });
    for (const t of partial) backend.disposeData(t.dataId);
    return out;
  };
}

/** Cast that writes a float32 buffer when an int32 or bool tensor becomes float32. */
function convertingCast(original: tf.KernelFunc): tf.KernelFunc {
  return (args: KernelArgs) => {
    const x = args.inputs.x as tf.TensorInfo;
    const backend = args.backend as unknown as WebGpuBackendLike;
    const stored = backend.tensorMap.get(x.dataId);
    if ((args.attrs as { dtype: string }).dtype !== "float32" || stored.dtype === "float32") {
      return original(args);
    }
    if (stored.values) {
      return backend.makeTensorInfo(
        x.shape,
        "float32",
        Float32Array.from(stored.values as Int32Array | Uint8Array),
      );
    }
    const toFloat = elementwiseProgram({
      shaderKey: "dmw_to_float",
      variableNames: ["x"],
      shape: x.shape,
      body: "setOutputAtIndex(index, f32(x[index]));",
    });
    return backend.runWebGPUProgram(toFloat, [x], "float32");
  };
}

/** The WebGPU fixes (AddN split by the storage-buffer limit, a converting Cast), for {@link installKernels}. */
export const WEBGPU_FIXES: Record<string, KernelMaker> = {
  [tf.AddN]: fix(tf.AddN, splitAddN),
  [tf.Cast]: fix(tf.Cast, convertingCast),
};
