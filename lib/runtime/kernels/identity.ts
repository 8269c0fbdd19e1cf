/**
 * Identity for the wasm backend without a copy. tfjs-backend-wasm 4.22.0's
 * kernel copies the whole buffer, and tfjs-core clones (Identity) every
 * tensor a gradient needs when the forward pass runs: about 1 GB of copies
 * per training step of the MNIST UNet. Tensor data is never written in
 * place (a variable's `assign` takes the new tensor's data), so the output
 * can share the input's data under a raised reference count, as the wasm
 * Reshape kernel and the cpu backend's Identity already do.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";

let original: tf.KernelConfig | undefined;

/** Identity kernel function: the input's data under one more reference; strings are copied. */
export function wasmIdentity(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === "string") return original!.kernelFunc(args) as tf.TensorInfo;
  (args.backend as tf.KernelBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** This file's wasm kernel, for {@link installKernels}; it keeps the one it replaces as its fallback. */
export const WASM_IDENTITY: Record<string, KernelMaker> = {
  [tf.Identity]: (current) => {
    original = current;
    return wasmIdentity;
  },
};
