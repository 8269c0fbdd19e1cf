/**
 * Project kernels that fill gaps in tfjs-backend-wasm 4.22.0 (gradients the
 * models need) and replace its slow ones (transposed BatchMatMul and
 * _FusedMatMul, Conv2DBackpropInput, Sum and Mean over non-innermost axes,
 * the copying Identity) and add GroupNorm and a fused Adam update, plus tfjs-core's
 * gradient functions, which Deno's CommonJS load of tfjs-core leaves out.
 */
import { registerWasmAdam } from "./adam.ts";
import { registerWasmBatchMatMul } from "./batch_mat_mul.ts";
import { registerWasmConv2DBackpropFilter } from "./conv2d_backprop_filter.ts";
import { registerWasmConv2DBackpropInput } from "./conv2d_backprop_input.ts";
import { registerWasmFusedMatMul } from "./fused_mat_mul.ts";
import { registerWasmGroupNorm } from "./group_norm.ts";
import { registerAllGradients } from "./gradients.ts";
import { registerWasmIdentity } from "./identity.ts";
import { registerWasmReductions } from "./reduce.ts";
import { registerWasmUnsortedSegmentSum } from "./unsorted_segment_sum.ts";

let registered = false;

/**
 * Registers every project kernel (and tfjs-core's gradients) once; later
 * calls do nothing. Call it before the first op runs on wasm.
 */
export function registerProjectKernels(): void {
  if (registered) return;
  registered = true;
  registerAllGradients();
  registerWasmConv2DBackpropFilter();
  registerWasmConv2DBackpropInput();
  registerWasmUnsortedSegmentSum();
  registerWasmBatchMatMul();
  registerWasmFusedMatMul();
  registerWasmReductions();
  registerWasmIdentity();
  registerWasmGroupNorm();
  registerWasmAdam();
}
