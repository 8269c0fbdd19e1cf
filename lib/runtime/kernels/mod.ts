/**
 * Project kernels that fill gaps in tfjs-backend-wasm 4.22.0 (gradients the
 * models need) and replace its slow ones (transposed BatchMatMul and
 * _FusedMatMul, Conv2DBackpropInput, Sum and Mean over non-innermost axes,
 * the copying Identity, and Slice, SplitV and Concat copying row by row) and add GroupNorm, ×2 upsampling, the sinusoidal time embedding and a fused Adam update, plus tfjs-core's
 * gradient functions, which Deno's CommonJS load of tfjs-core leaves out.
 * One list per backend, installed in one loop ({@link installKernels}).
 */
import { WASM_ADAM } from "./adam.ts";
import { WASM_BATCH_MAT_MUL } from "./batch_mat_mul.ts";
import { WASM_COPIES } from "./copy.ts";
import { WASM_CONV2D_BACKPROP_FILTER } from "./conv2d_backprop_filter.ts";
import { WASM_CONV2D_BACKPROP_INPUT } from "./conv2d_backprop_input.ts";
import { WASM_FUSED_MAT_MUL } from "./fused_mat_mul.ts";
import { WASM_GROUP_NORM } from "./group_norm.ts";
import { registerAllGradients } from "./gradients.ts";
import { WASM_IDENTITY } from "./identity.ts";
import { installKernels } from "./install.ts";
import { WASM_REDUCTIONS } from "./reduce.ts";
import { WASM_UNSORTED_SEGMENT_SUM } from "./unsorted_segment_sum.ts";
import { WASM_UPSAMPLE } from "./upsample.ts";
import { WASM_SINUSOIDAL } from "./sinusoidal.ts";

/** The wasm backend's project kernels. */
export const WASM_KERNELS = {
  ...WASM_CONV2D_BACKPROP_FILTER,
  ...WASM_CONV2D_BACKPROP_INPUT,
  ...WASM_UNSORTED_SEGMENT_SUM,
  ...WASM_BATCH_MAT_MUL,
  ...WASM_FUSED_MAT_MUL,
  ...WASM_REDUCTIONS,
  ...WASM_IDENTITY,
  ...WASM_COPIES,
  ...WASM_UPSAMPLE,
  ...WASM_SINUSOIDAL,
  ...WASM_GROUP_NORM,
  ...WASM_ADAM,
};

let registered = false;

/**
 * Registers every project kernel (and tfjs-core's gradients) once; later
 * calls do nothing. Call it before the first op runs on wasm.
 */
export function registerProjectKernels(): void {
  if (registered) return;
  registered = true;
  registerAllGradients();
  installKernels("wasm", "project", WASM_KERNELS);
}
