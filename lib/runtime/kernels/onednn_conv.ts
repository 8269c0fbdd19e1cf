/**
 * Conv2D, FusedConv2D (bias, linear or ReLU), Conv2DBackpropInput and
 * Conv2DBackpropFilter for the wasm backend on oneDNN's convolution
 * primitives (lib/runtime/onednn.ts), on the wasm heap in place: NHWC data
 * and HWIO filters, the layouts tfjs keeps, so nothing is reordered or
 * copied. Dilation, NCHW data, other activations and prelu go to the kernel
 * each one replaced.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { ConvShape, Onednn } from "../onednn.ts";
import type { WasmBackend } from "./kernel_util.ts";

type Args = Parameters<tf.KernelFunc>[0];

/** The attributes tfjs gives its Conv2D kernels. */
interface ConvAttrs {
  strides: number | [number, number];
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: number | [number, number];
  dimRoundingMode?: "floor" | "round" | "ceil";
  activation?: string;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

/** The convolution's shape for oneDNN, or undefined when it is not one this path runs. */
function shapeOf(
  xShape: [number, number, number, number],
  wShape: [number, number, number, number],
  a: ConvAttrs,
): ConvShape | undefined {
  if ((a.dataFormat ?? "NHWC") !== "NHWC") return undefined;
  const d = a.dilations ?? 1;
  if (Array.isArray(d) ? d[0] !== 1 || d[1] !== 1 : d !== 1) return undefined;
  const info = tf.backend_util.computeConv2DInfo(
    xShape,
    wShape,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
    false,
    "channelsLast",
  );
  const p = info.padInfo;
  if (p.top < 0 || p.left < 0 || p.bottom < 0 || p.right < 0) return undefined;
  return {
    x: xShape,
    w: wShape,
    y: info.outShape as [number, number, number, number],
    strides: [info.strideHeight, info.strideWidth],
    pad: [p.top, p.left, p.bottom, p.right],
  };
}

const size = (s: number[]) => s.reduce((p, q) => p * q, 1);

/** The four kernel functions on `dnnl`, falling back to `previous` (by kernel name). */
export function onednnConvKernels(
  dnnl: Onednn,
  previous: Record<string, tf.KernelFunc>,
): Record<string, tf.KernelFunc> {
  const forward = (args: Args, fused: boolean) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<
      string,
      tf.TensorInfo | undefined
    >;
    const a = args.attrs as unknown as ConvAttrs;
    const activation = fused ? a.activation ?? "linear" : "linear";
    const shape = x!.dtype === "float32" && filter!.dtype === "float32"
      ? shapeOf(x!.shape as ConvShape["x"], filter!.shape as ConvShape["w"], a)
      : undefined;
    const biasFits = !bias || (bias.dtype === "float32" && size(bias.shape) === shape?.w[3]);
    if (
      !shape || !biasFits || preluActivationWeights ||
      (activation !== "linear" && activation !== "relu")
    ) {
      return previous[fused ? tf.FusedConv2D : tf.Conv2D](args);
    }
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput(shape.y, "float32");
    if (size(shape.y) === 0) return out;
    const y = backend.typedArrayFromHeap(out);
    dnnl.conv(shape, {
      kind: "forward",
      x: backend.typedArrayFromHeap(x!),
      w: backend.typedArrayFromHeap(filter!),
      bias: bias ? backend.typedArrayFromHeap(bias) : undefined,
      y,
    });
    if (activation === "relu") { for (let i = 0; i < y.length; i++) if (y[i] < 0) y[i] = 0; }
    return out;
  };
  const backpropInput = (args: Args) => {
    const { dy, filter } = args.inputs as Record<string, tf.TensorInfo>;
    const a = args.attrs as unknown as ConvAttrs;
    const shape = dy.dtype === "float32" && filter.dtype === "float32"
      ? shapeOf(a.inputShape!, filter.shape as ConvShape["w"], a)
      : undefined;
    if (!shape) return previous[tf.Conv2DBackpropInput](args);
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput(shape.x, "float32");
    if (size(shape.x) === 0) return out;
    dnnl.conv(shape, {
      kind: "backward_data",
      dy: backend.typedArrayFromHeap(dy),
      w: backend.typedArrayFromHeap(filter),
      dx: backend.typedArrayFromHeap(out),
    });
    return out;
  };
  const backpropFilter = (args: Args) => {
    const { x, dy } = args.inputs as Record<string, tf.TensorInfo>;
    const a = args.attrs as unknown as ConvAttrs;
    const shape = x.dtype === "float32" && dy.dtype === "float32"
      ? shapeOf(x.shape as ConvShape["x"], a.filterShape!, a)
      : undefined;
    if (!shape) return previous[tf.Conv2DBackpropFilter](args);
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput(shape.w, "float32");
    if (size(shape.w) === 0) return out;
    dnnl.conv(shape, {
      kind: "backward_weights",
      x: backend.typedArrayFromHeap(x),
      dy: backend.typedArrayFromHeap(dy),
      dw: backend.typedArrayFromHeap(out),
    });
    return out;
  };
  return {
    [tf.Conv2D]: (args: Args) => forward(args, false),
    [tf.FusedConv2D]: (args: Args) => forward(args, true),
    [tf.Conv2DBackpropInput]: backpropInput,
    [tf.Conv2DBackpropFilter]: backpropFilter,
  };
}

/** oneDNN's convolutions in place of the wasm ones (their fallback), for {@link installKernels}. */
export function onednnConvMakers(dnnl: Onednn): Record<string, KernelMaker> {
  const previous: Record<string, tf.KernelFunc> = {};
  const kernels = onednnConvKernels(dnnl, previous);
  const names = [tf.Conv2D, tf.FusedConv2D, tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter];
  return Object.fromEntries(names.map((name): [string, KernelMaker] => [name, (current) => {
    if (!current) throw new Error(`the wasm backend has no ${name} kernel`);
    previous[name] = current.kernelFunc;
    return kernels[name];
  }]));
}
