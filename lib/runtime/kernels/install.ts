/**
 * One way to put project kernels into a tfjs backend, as tfjs's own
 * `register_all_kernels.ts` registers a list of kernel configs in one loop.
 * Each installer (the wasm gap-fillers, oneDNN, the WebGPU fixes) names its
 * kernels and how to make each from the kernel registered now, if any.
 */
import * as tf from "@tensorflow/tfjs-core";

/** Makes a kernel function from the one it replaces (undefined where the backend has none). */
export type KernelMaker = (current: tf.KernelConfig | undefined) => tf.KernelFunc;

/** Which installer put each kernel function in place. */
const installedBy = new WeakMap<tf.KernelFunc, string>();

/**
 * Registers `kernels` (kernel name → maker) for `backend` under the name
 * `installer`. A kernel the backend already has is replaced, and the
 * replacement keeps its setupFunc and disposeFunc (they bind the wasm
 * functions a replacement may fall back to). Idempotent: a kernel this
 * installer already put in place is left alone, so a later installer
 * (oneDNN over the wasm project kernels) still replaces an earlier one's.
 */
export function installKernels(
  backend: string,
  installer: string,
  kernels: Record<string, KernelMaker>,
): void {
  for (const [kernelName, make] of Object.entries(kernels)) {
    const current = tf.getKernel(kernelName, backend);
    if (current && installedBy.get(current.kernelFunc) === installer) continue;
    const kernelFunc = make(current);
    installedBy.set(kernelFunc, installer);
    if (current) tf.unregisterKernel(kernelName, backend);
    tf.registerKernel({
      kernelName,
      backendName: backend,
      kernelFunc,
      setupFunc: current?.setupFunc,
      disposeFunc: current?.disposeFunc,
    });
  }
}

/** Whether the current backend has a kernel named `kernelName` (a project kernel, say). */
export function hasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}

/** The installer that put `kernelName`'s current kernel in place on `backend`, if a project one did. */
export function installerOf(kernelName: string, backend: string): string | undefined {
  const k = tf.getKernel(kernelName, backend);
  return k ? installedBy.get(k.kernelFunc) : undefined;
}
