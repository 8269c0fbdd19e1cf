import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "/work/main/lib/runtime/backend.ts";
import { benchStep } from "/work/main/lib/bench/train_step.ts";
await initBackend("wasm", null);
const backend = tf.getBackend();
const counts = new Map<string, { n: number; ms: number; flops: number }>();
for (
  const name of [
    "Conv2D",
    "FusedConv2D",
    "Conv2DBackpropInput",
    "Conv2DBackpropFilter",
    "BatchMatMul",
    "Transpose",
  ]
) {
  const c = tf.getKernel(name, backend)!;
  tf.unregisterKernel(name, backend);
  tf.registerKernel({
    ...c,
    kernelFunc: (args) => {
      const t0 = performance.now();
      const r = c.kernelFunc(args) as tf.TensorInfo;
      const ms = performance.now() - t0;
      const ins = Object.values(args.inputs as Record<string, tf.TensorInfo>).filter(Boolean).map((
        t,
      ) => t.shape);
      let flops = 0;
      if (name.startsWith("Conv2D") || name === "FusedConv2D") {
        const f = (args.inputs as any).filter?.shape ?? (args.attrs as any).filterShape;
        const out = name === "Conv2DBackpropFilter"
          ? (args.inputs as any).dy.shape
          : name === "Conv2DBackpropInput"
          ? (args.inputs as any).dy.shape
          : r.shape;
        if (f) flops = 2 * out[0] * out[1] * out[2] * f[0] * f[1] * f[2] * f[3];
        if (name === "Conv2DBackpropInput") {
          flops = 2 * out[0] * out[1] * out[2] *
            (args.inputs as any).filter.shape.reduce((a: number, b: number) => a * b, 1);
        }
      }
      const k = `${name} ${JSON.stringify(ins)} ${
        JSON.stringify(
          args.attrs
            ? {
              s: (args.attrs as any).strides,
              p: (args.attrs as any).pad,
              perm: (args.attrs as any).perm,
              tA: (args.attrs as any).transposeA,
              tB: (args.attrs as any).transposeB,
            }
            : {},
        )
      }`;
      const e = counts.get(k) ?? { n: 0, ms: 0, flops: 0 };
      e.n++;
      e.ms += ms;
      e.flops += flops;
      counts.set(k, e);
      return r;
    },
  });
}
await benchStep("unet");
let tot = 0;
for (const [k, v] of [...counts].sort((a, b) => b[1].ms - a[1].ms).slice(0, 40)) {
  tot += v.ms;
  console.log(
    (v.ms / 6).toFixed(1),
    (v.n / 6).toFixed(1),
    v.flops ? (v.flops / v.ms / 1e6).toFixed(1) + " GF/s" : "",
    k.slice(0, 300),
  );
}
