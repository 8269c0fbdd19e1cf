/**
 * Helpers shared by the project kernels: wrapping a kernel input as a tensor
 * so tf ops can compute on it, swapping an operand's last two axes with the
 * backend's own Transpose kernel, and the wasm backend's view of its heap.
 */
import * as tf from "@tensorflow/tfjs-core";

/** What the wasm backend offers beyond KernelBackend: a view of a tensor on its heap. */
export interface WasmBackend extends tf.KernelBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

/**
 * Returns `x` with its last two axes swapped, computed by the Transpose
 * kernel registered for `backendName`. The caller owns the result and must
 * release it with `backend.disposeData(result.dataId)`.
 *
 * @param x an operand of shape [...batch, r, c].
 * @returns a new tensor info of shape [...batch, c, r].
 */
export function swapLastAxes(
  x: tf.TensorInfo,
  backend: tf.KernelBackend,
  backendName: string,
): tf.TensorInfo {
  const transpose = tf.getKernel(tf.Transpose, backendName);
  if (!transpose) throw new Error(`no Transpose kernel for backend ${backendName}`);
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
}

/**
 * Wraps a kernel input as a Tensor that tf ops accept. The wrapper holds its
 * own reference to the data (the backend's ref count is raised), so disposing
 * it, e.g. at the end of a `tf.tidy`, leaves the caller's tensor intact.
 */
export function inputTensor(info: tf.TensorInfo, backend: tf.KernelBackend): tf.Tensor {
  const t = tf.engine().makeTensorFromTensorInfo(info, backend);
  backend.incRef(info.dataId);
  return t;
}
