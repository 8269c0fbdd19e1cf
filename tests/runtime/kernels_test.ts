/**
 * Project wasm kernels against the cpu backend: forward values and gradients
 * (tf.grad through conv2d, gather, matMul, …) agree to a relative error of
 * 1e-4, and repeated calls leak no tensors. Data moves between backends as
 * plain arrays, never as tensors.
 */
import * as tf from "@tensorflow/tfjs-core";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import { dense, sinusoidalEmbedding, upsample2x } from "../../lib/network/layers.ts";
import { initBackend } from "../../lib/runtime/backend.ts";
import { registerProjectKernels } from "../../lib/runtime/kernels/mod.ts";
import { installerOf } from "../../lib/runtime/kernels/install.ts";
import { UPSAMPLE2X } from "../../lib/runtime/kernels/upsample.ts";
import { SINUSOIDAL } from "../../lib/runtime/kernels/sinusoidal.ts";
import { wasmBatchMatMul } from "../../lib/runtime/kernels/batch_mat_mul.ts";
import { wasmConv2DBackpropFilter } from "../../lib/runtime/kernels/conv2d_backprop_filter.ts";
import { wasmFusedMatMul } from "../../lib/runtime/kernels/fused_mat_mul.ts";
import { wasmIdentity } from "../../lib/runtime/kernels/identity.ts";
import { wasmMean, wasmSum } from "../../lib/runtime/kernels/reduce.ts";
import { wasmUnsortedSegmentSum } from "../../lib/runtime/kernels/unsorted_segment_sum.ts";

await initBackend("wasm", null);

/** A tensor's values and shape, free of any backend. */
interface Plain {
  shape: number[];
  values: Float32Array;
}

/** Deterministic values in [-1, 1) (a small LCG), as a plain array. */
function data(shape: number[], seed: number): Plain {
  const values = new Float32Array(shape.reduce((p, q) => p * q, 1));
  let s = seed >>> 0;
  for (let i = 0; i < values.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = s / 2 ** 31 - 1;
  }
  return { shape, values };
}

/** Runs `f` on `backend` with tensors made from `inputs`; returns plain outputs. */
async function on(
  backend: "wasm" | "cpu",
  inputs: Plain[],
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<Plain[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((p) => tf.tensor(p.values, p.shape));
    const out = f(...xs);
    return (Array.isArray(out) ? out : [out]).map((t) => ({
      shape: t.shape,
      values: Float32Array.from(t.dataSync()),
    }));
  });
}

/** Asserts max|a − b| ≤ tol · max(|b|) elementwise over same-shaped outputs. */
function assertClose(actual: Plain[], expected: Plain[], label: string, tol = 1e-4): void {
  assertEquals(actual.length, expected.length, label);
  actual.forEach((a, k) => {
    const b = expected[k];
    assertEquals(a.shape, b.shape, `${label}: output ${k} shape`);
    let err = 0;
    let scale = 1e-6;
    for (let i = 0; i < b.values.length; i++) {
      err = Math.max(err, Math.abs(a.values[i] - b.values[i]));
      scale = Math.max(scale, Math.abs(b.values[i]));
    }
    assert(err / scale <= tol, `${label}: output ${k} relative error ${err / scale}`);
  });
}

/** Runs `f` on wasm and on cpu and asserts the outputs agree. */
async function agree(
  label: string,
  inputs: Plain[],
  f: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[],
): Promise<void> {
  const wasm = await on("wasm", inputs, f);
  const cpu = await on("cpu", inputs, f);
  await tf.setBackend("wasm");
  assertClose(wasm, cpu, label);
}

/** Gradients of Σ f(xs) · r (r a fixed random weighting) w.r.t. every input. */
function weightedGrads(f: (...xs: tf.Tensor[]) => tf.Tensor) {
  return (...xs: tf.Tensor[]): tf.Tensor[] => {
    const probe = f(...xs);
    const r = tf.tensor(data(probe.shape, 99).values, probe.shape);
    return tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), r)))(xs);
  };
}

const convCases: {
  x: number[];
  w: number[];
  stride: 1 | 2;
  pad: "same" | "valid" | tf.backend_util.ExplicitPadding;
}[] = [
  { x: [2, 8, 8, 3], w: [3, 3, 3, 4], stride: 1, pad: "same" },
  { x: [2, 8, 8, 3], w: [3, 3, 3, 4], stride: 2, pad: "same" },
  { x: [1, 9, 7, 5], w: [3, 3, 5, 2], stride: 2, pad: "same" },
  { x: [2, 6, 6, 4], w: [1, 1, 4, 6], stride: 1, pad: "same" },
  { x: [1, 9, 7, 2], w: [3, 3, 2, 3], stride: 1, pad: "valid" },
  { x: [3, 9, 9, 2], w: [3, 3, 2, 3], stride: 2, pad: "valid" },
  { x: [1, 5, 5, 3], w: [2, 2, 3, 2], stride: 2, pad: "same" },
  { x: [1, 4, 5, 2], w: [3, 3, 2, 2], stride: 1, pad: [[0, 0], [0, 3], [1, 0], [0, 0]] },
  { x: [2, 7, 6, 2], w: [3, 3, 2, 3], stride: 2, pad: [[0, 0], [2, 0], [0, 2], [0, 0]] },
];

Deno.test("wasm lacks no kernel that training needs", () => {
  for (const name of [tf.Conv2DBackpropFilter, tf.Conv2DBackpropInput, tf.UnsortedSegmentSum]) {
    assert(tf.getKernel(name, "wasm"), `${name} on wasm`);
  }
  assertEquals(tf.getKernel(tf.BatchMatMul, "wasm")?.kernelFunc, wasmBatchMatMul);
  assertEquals(tf.getKernel(tf._FusedMatMul, "wasm")?.kernelFunc, wasmFusedMatMul);
  assertEquals(tf.getKernel(tf.Conv2DBackpropFilter, "wasm")?.kernelFunc, wasmConv2DBackpropFilter);
  assertEquals(tf.getKernel(tf.UnsortedSegmentSum, "wasm")?.kernelFunc, wasmUnsortedSegmentSum);
  assertEquals(tf.getKernel(tf.Sum, "wasm")?.kernelFunc, wasmSum);
  assertEquals(tf.getKernel(tf.Mean, "wasm")?.kernelFunc, wasmMean);
  assertEquals(tf.getKernel(tf.Identity, "wasm")?.kernelFunc, wasmIdentity);
});

Deno.test("Identity shares data: either copy outlives the other; both gone frees it", () => {
  const before = tf.memory();
  const x = tf.tensor(data([64, 64], 3).values, [64, 64]);
  const bytes = tf.memory().numBytes - before.numBytes;
  const y = tf.clone(x);
  assertEquals(
    tf.memory().numBytes - before.numBytes,
    2 * bytes,
    "engine accounting as for a copy",
  );
  const want = Float32Array.from(x.dataSync());
  x.dispose();
  assertEquals(Float32Array.from(y.dataSync()), want, "the clone outlives its source");
  const z = tf.clone(y);
  y.dispose();
  assertEquals(Float32Array.from(z.dataSync()), want, "and a clone of a clone");
  const b = tf.backend() as unknown as { refCount(id: object): number };
  assertEquals(b.refCount(z.dataId), 1);
  z.dispose();
  assertEquals(b.refCount(z.dataId), 0, "the wasm buffer is freed with the last reference");
  assertEquals(tf.memory().numTensors, before.numTensors);
  assertEquals(tf.memory().numBytes, before.numBytes);
});

Deno.test("saved activations are not copied: gradients through shared data match cpu", async () => {
  const f = (x: tf.Tensor, w: tf.Tensor) => tf.mul(tf.sigmoid(tf.matMul(x, w)), tf.square(x));
  await agree("sigmoid(xw)·x² grads", [data([6, 6], 4), data([6, 6], 5)], weightedGrads(f));
});

Deno.test("registerProjectKernels is idempotent", async () => {
  registerProjectKernels();
  registerProjectKernels();
  await agree(
    "matMul after re-registering",
    [data([5, 7], 1), data([4, 7], 2)],
    (a, b) => tf.matMul(a, b, false, true),
  );
});

Deno.test("conv2d forward and gradients match cpu", async () => {
  for (const [i, c] of convCases.entries()) {
    const f = (x: tf.Tensor, w: tf.Tensor) =>
      tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.stride, c.pad);
    const inputs = [data(c.x, 10 + i), data(c.w, 20 + i)];
    const label = `conv ${c.x}*${c.w} s${c.stride} ${c.pad}`;
    await agree(`${label} forward`, inputs, f);
    await agree(`${label} grads`, inputs, weightedGrads(f));
  }
});

Deno.test("Conv2DBackpropFilter kernel matches cpu, NHWC and NCHW", async () => {
  for (const [i, c] of convCases.entries()) {
    const outShape = tf.backend_util.computeConv2DInfo(
      c.x as [number, number, number, number],
      c.w as [number, number, number, number],
      c.stride,
      1,
      c.pad,
    ).outShape;
    const run = (format: "NHWC" | "NCHW") => (x: tf.Tensor, dy: tf.Tensor) =>
      tf.engine().runKernel(tf.Conv2DBackpropFilter, {
        x: format === "NHWC" ? x : tf.transpose(x, [0, 3, 1, 2]),
        dy: format === "NHWC" ? dy : tf.transpose(dy, [0, 3, 1, 2]),
      }, {
        strides: c.stride,
        pad: c.pad,
        dataFormat: format,
        filterShape: c.w,
      }) as tf.Tensor;
    const inputs = [data(c.x, 30 + i), data(outShape, 40 + i)];
    await agree(`backprop filter ${c.x} ${c.w} NHWC`, inputs, run("NHWC"));
    const wasmNchw = await on("wasm", inputs, run("NCHW"));
    const cpuNhwc = await on("cpu", inputs, run("NHWC"));
    await tf.setBackend("wasm");
    assertClose(wasmNchw, cpuNhwc, `backprop filter ${c.x} ${c.w} NCHW`);
  }
});

Deno.test("Conv2DBackpropFilter kernel matches cpu when 'ceil' rounding overruns the input", async () => {
  const attrs = { strides: 2, pad: 1, dimRoundingMode: "ceil", dataFormat: "NHWC" };
  const x = [1, 6, 6, 2];
  const filterShape = [3, 3, 2, 2];
  const outShape = tf.backend_util.computeConv2DInfo(
    x as [number, number, number, number],
    filterShape as [number, number, number, number],
    2,
    1,
    1,
    "ceil",
  ).outShape; // [1, 4, 4, 2]: the last taps reach past the padded input
  await agree(
    "backprop filter, ceil rounding",
    [data(x, 50), data(outShape, 51)],
    (xs, dy) =>
      tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: xs, dy }, {
        ...attrs,
        filterShape,
      }) as tf.Tensor,
  );
});

Deno.test("Conv2DBackpropInput kernel matches cpu, NHWC and NCHW", async () => {
  for (const [i, c] of convCases.entries()) {
    const outShape = tf.backend_util.computeConv2DInfo(
      c.x as [number, number, number, number],
      c.w as [number, number, number, number],
      c.stride,
      1,
      c.pad,
    ).outShape;
    const [b, h, w, ch] = c.x;
    const run = (format: "NHWC" | "NCHW") => (dy: tf.Tensor, filter: tf.Tensor) => {
      const dx = tf.engine().runKernel(tf.Conv2DBackpropInput, {
        dy: format === "NHWC" ? dy : tf.transpose(dy, [0, 3, 1, 2]),
        filter,
      }, {
        strides: c.stride,
        pad: c.pad,
        dataFormat: format,
        inputShape: format === "NHWC" ? c.x : [b, ch, h, w],
      }) as tf.Tensor;
      return format === "NHWC" ? dx : tf.transpose(dx, [0, 2, 3, 1]);
    };
    const inputs = [data(outShape, 45 + i), data(c.w, 35 + i)];
    await agree(`backprop input ${c.x} ${c.w} NHWC`, inputs, run("NHWC"));
    const wasmNchw = await on("wasm", inputs, run("NCHW"));
    const cpuNhwc = await on("cpu", inputs, run("NHWC"));
    await tf.setBackend("wasm");
    assertClose(wasmNchw, cpuNhwc, `backprop input ${c.x} ${c.w} NCHW`);
  }
});

Deno.test("gather gradient (UnsortedSegmentSum) matches cpu", async () => {
  const ids = (shape: number[], n: number, seed: number): Plain => ({
    shape,
    values: Float32Array.from(data(shape, seed).values, (v) => Math.floor((v + 1) / 2 * n)),
  });
  for (const [table, index] of [[[10, 8], [7]], [[5, 3, 2], [4, 3]], [[1000, 16], [64]]]) {
    const inputs = [data(table, 50), ids(index, table[0], 51)];
    const f = (t: tf.Tensor, i: tf.Tensor) => tf.gather(t, tf.cast(i, "int32"));
    await agree(`gather ${table} by ${index}`, inputs, f);
    await agree(
      `gather grad ${table} by ${index}`,
      inputs,
      (t, i) => weightedGrads((u) => f(u, i))(t),
    );
  }
  const segs: Plain = { shape: [6], values: Float32Array.from([0, 3, 3, 1, 0, 5]) };
  await agree(
    "unsortedSegmentSum, dropped id",
    [data([6, 5], 52), segs],
    (x, s) => tf.unsortedSegmentSum(x, tf.cast(s, "int32") as tf.Tensor1D, 4),
  );
});

Deno.test("matMul and fused.matMul with transposes match cpu, with gradients", async () => {
  const shapes: [number[], number[]][] = [[[5, 7], [7, 4]], [[3, 5, 7], [3, 7, 4]], [[33, 65], [
    65,
    17,
  ]]];
  for (const [i, [sa, sb]] of shapes.entries()) {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
        const inputs = [data(tA ? swap(sa) : sa, 60 + i), data(tB ? swap(sb) : sb, 70 + i)];
        const label = `matMul ${sa}·${sb} tA=${tA} tB=${tB}`;
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, tA, tB);
        await agree(label, inputs, f);
        await agree(`${label} grads`, inputs, weightedGrads(f));
        const n = sb[sb.length - 1];
        const fused = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
          tf.fused.matMul({ a, b, transposeA: tA, transposeB: tB, bias, activation: "relu" });
        await agree(`fused ${label}`, [...inputs, data([n], 80)], fused);
        await agree(`fused ${label} grads`, [...inputs, data([n], 80)], weightedGrads(fused));
      }
    }
  }
});

Deno.test("transposed matMul with a broadcast batch matches cpu", async () => {
  for (const [sa, sb] of [[[1, 7, 5], [3, 4, 7]], [[2, 7, 5], [1, 4, 7]]]) {
    await agree(
      `matMul ${sa}ᵀ·${sb}ᵀ`,
      [data(sa, 1), data(sb, 2)],
      (a, b) => tf.matMul(a, b, true, true),
    );
  }
});

Deno.test("sum and mean over any axes match cpu, keepDims too", async () => {
  const cases: [number[], number[]][] = [
    [[37, 5], [0]],
    [[6, 1, 4, 5], [0, 1, 2]],
    [[3, 4, 2, 5], [1, 3]],
    [[3, 4, 2, 5], [0, 2]],
    [[3, 4, 2, 5], [1, 2]],
    [[3, 4, 2, 5], [0, 3]],
    [[3, 4, 2, 5], [3]],
    [[2, 1, 3], [1]],
    [[4, 3], [0, 1]],
  ];
  for (const [i, [shape, axes]] of cases.entries()) {
    for (const keepDims of [false, true]) {
      await agree(
        `sum/mean ${shape} over ${axes} keepDims ${keepDims}`,
        [data(shape, 60 + i)],
        (x) => [tf.sum(x, axes, keepDims), tf.mean(x, axes, keepDims)],
      );
    }
  }
  await agree("int32 sum over the leading axis", [data([5, 3], 70)], (x) => {
    const n = tf.sum(tf.cast(tf.mul(x, 100), "int32"), 0);
    assertEquals(n.dtype, "int32");
    return tf.cast(n, "float32");
  });
});

Deno.test("upsample2x (wasm kernels, and the copies elsewhere) matches tiling, value and gradient", async () => {
  assertEquals(installerOf(UPSAMPLE2X, "wasm"), "project");
  const tiled = (x: tf.Tensor) => {
    const [b, h, w, c] = x.shape; // two rank-4 tiles: tfjs tiles gradients up to rank 4
    const wide = tf.tile(tf.reshape(x, [b * h, w, 1, c]), [1, 1, 2, 1]);
    const t = tf.tile(tf.reshape(wide, [b, h, 1, 2 * w * c]), [1, 1, 2, 1]);
    return tf.reshape(t, [b, 2 * h, 2 * w, c]);
  };
  const ours = (x: tf.Tensor) => upsample2x(x as tf.Tensor4D);
  for (const shape of [[2, 3, 4, 5], [1, 7, 7, 64], [3, 1, 2, 1]]) {
    const inputs = [data(shape, 85)];
    const cpuValue = await on("cpu", inputs, tiled);
    const cpu = await on("cpu", inputs, weightedGrads(tiled));
    for (const backend of ["wasm", "cpu"] as const) {
      assertClose(await on(backend, inputs, ours), cpuValue, `${backend} [${shape}] value`);
      assertClose(
        await on(backend, inputs, weightedGrads(ours)),
        cpu,
        `${backend} [${shape}] grad`,
      );
    }
    await tf.setBackend("wasm");
  }
});

Deno.test("the sinusoidal embedding kernel matches the tf ops on cpu, cached rows included", async () => {
  assertEquals(installerOf(SINUSOIDAL, "wasm"), "project");
  const ts = [0, 1, 999, 999, 0.5, 17.25, 3, 999, -2, 1e-3, 4096.5];
  for (const dim of [2, 128, 320, 128]) {
    const wasm = await on("wasm", [], () => sinusoidalEmbedding(tf.tensor1d(ts), dim));
    const cpu = await on("cpu", [], () => sinusoidalEmbedding(tf.tensor1d(ts), dim));
    await tf.setBackend("wasm");
    assertClose(wasm, cpu, `dim ${dim}`, 1e-6);
  }
  const ints = await on("wasm", [], () => sinusoidalEmbedding(tf.tensor1d([5, 7], "int32"), 8));
  const floats = await on("cpu", [], () => sinusoidalEmbedding(tf.tensor1d([5, 7]), 8));
  await tf.setBackend("wasm");
  assertClose(ints, floats, "int32 t", 1e-6);
});

Deno.test("Slice, SplitV and Concat match cpu on every rank, axis and odd extent", async () => {
  assertEquals(installerOf(tf.Slice, "wasm"), "project");
  assertEquals(installerOf(tf.SplitV, "wasm"), "project");
  assertEquals(installerOf(tf.Concat, "wasm"), "project");
  // Short runs (a loop) and long ones (TypedArray.set), size-1 axes inside and outside the run.
  const slices: [number[], number[], number[]][] = [
    [[10], [3], [5]],
    [[6, 7], [1, 2], [4, 3]],
    [[6, 70], [2, 0], [3, 70]],
    [[2, 3, 4], [0, 1, 0], [2, 1, 4]],
    [[4, 1, 8], [1, 0, 0], [2, 1, 8]],
    [[3, 5, 6, 7], [1, 0, 2, 3], [2, 5, 3, 4]],
    [[2, 5, 5, 80], [0, 1, 1, 0], [2, 3, 4, 80]],
    [[2, 5, 5, 80], [1, 2, 0, 10], [1, 1, 5, 65]],
    [[2, 3, 4, 5, 6], [1, 0, 1, 2, 0], [1, 3, 2, 3, 6]],
    [[2, 3, 4, 5, 6], [0, 1, 0, 0, 1], [2, 2, 4, 5, 4]],
    [[4, 6], [1, 1], [0, 3]],
  ];
  for (const [shape, begin, size] of slices) {
    await agree(
      `slice ${shape} at ${begin} size ${size}`,
      [data(shape, 7)],
      (x) => tf.slice(x, begin, size),
    );
  }
  const x = data([3, 4, 5, 6], 8);
  for (let axis = 0; axis < 4; axis++) {
    const n = x.shape[axis];
    await agree(`split axis ${axis}`, [x], (t) => tf.split(t, [1, n - 3, 2], axis));
    const y = data(x.shape.map((d, a) => (a === axis ? 2 : d)), 9);
    const z = data(x.shape.map((d, a) => (a === axis ? 0 : d)), 10);
    await agree(`concat axis ${axis}`, [x, y, z, x], (a, b, c, d) => tf.concat([a, b, c, d], axis));
  }
  const wide = [data([2, 3, 3, 100], 11), data([2, 3, 3, 30], 12)];
  await agree("concat long and short runs", wide, (a, b) => tf.concat([a, b], 3));
  await agree("concat grad", wide, weightedGrads((a, b) => tf.concat([tf.square(a), b], 3)));
  const ints = tf.tensor2d([[1, 2, 3], [4, 5, 6]], undefined, "int32");
  assertEquals(Array.from(tf.slice(ints, [0, 1], [2, 2]).dataSync()), [2, 3, 5, 6], "int32 slice");
  assertEquals(Array.from(tf.concat([ints, ints], 1).dataSync()).length, 12, "int32 concat");
});

Deno.test("gradients through the ops the models use match cpu", async () => {
  const x4 = data([2, 4, 4, 6], 90);
  const cases: [string, (x: tf.Tensor) => tf.Tensor][] = [
    ["groupNorm", (x) => {
      const g = tf.reshape(x, [2, 4, 4, 2, 3]);
      const m = tf.moments(g, [1, 2, 4], true);
      return tf.reshape(tf.mul(tf.sub(g, m.mean), tf.rsqrt(tf.add(m.variance, 1e-5))), x.shape);
    }],
    ["softmax", (x) => tf.softmax(x)],
    ["logSoftmax", (x) => tf.logSoftmax(x)],
    ["silu", (x) => tf.mul(x, tf.sigmoid(x))],
    ["relu", (x) => tf.relu(x)],
    ["sin cos exp log", (x) => tf.add(tf.mul(tf.sin(x), tf.cos(x)), tf.log(tf.add(tf.exp(x), 1)))],
    ["concat slice", (x) => tf.slice(tf.concat([x, tf.square(x)], 3), [0, 1, 0, 2], [2, 2, 4, 7])],
    ["reshape transpose", (x) => tf.transpose(tf.reshape(x, [16, 12]))],
    [
      "tile broadcastTo",
      (x) => tf.add(tf.tile(x, [1, 1, 2, 1]), tf.broadcastTo(tf.sum(x, 2, true), [2, 4, 8, 6])),
    ],
    ["sum mean max", (x) => tf.add(tf.add(tf.sum(x, 1), tf.mean(x, 1)), tf.max(x, 1))],
    ["oneHot", (x) => tf.mul(x, tf.sum(tf.oneHot(tf.tensor1d([1, 5, 3, 0], "int32"), 6), 0))],
    ["where", (x) => tf.where(tf.greater(x, 0), x, tf.mul(x, 0.2))],
    ["clip", (x) => tf.clipByValue(x, -0.5, 0.5)],
    ["sqrt pow abs", (x) => tf.add(tf.sqrt(tf.add(tf.abs(x), 0.1)), tf.pow(tf.abs(x), 2.5))],
    [
      "maximum minimum sign",
      (x) => tf.mul(tf.sign(x), tf.add(tf.maximum(x, 0.1), tf.minimum(x, -0.2))),
    ],
  ];
  for (const [label, f] of cases) {
    await agree(label, [x4], f);
    await agree(`${label} grad`, [x4], weightedGrads(f));
  }
});

Deno.test("project kernels leak no tensors over repeated calls", async () => {
  await tf.setBackend("wasm");
  const x = tf.tensor(data([2, 8, 8, 3], 1).values, [2, 8, 8, 3]) as tf.Tensor4D;
  const w = tf.tensor(data([3, 3, 3, 4], 2).values, [3, 3, 3, 4]) as tf.Tensor4D;
  const table = tf.tensor(data([10, 8], 3).values, [10, 8]);
  const ids = tf.tensor1d([1, 4, 4, 9], "int32");
  const a = tf.tensor(data([7, 5], 4).values, [7, 5]);
  const bias = tf.tensor(data([7], 5).values, [7]);
  const step = () => {
    const grads = tf.grads((x: tf.Tensor, w: tf.Tensor, t: tf.Tensor, a: tf.Tensor) =>
      tf.add(
        tf.add(
          tf.sum(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, "same")),
          tf.sum(tf.gather(t, ids)),
        ),
        tf.addN([
          tf.sum(tf.matMul(a, a, true, false)), // [5, 5]
          tf.sum(tf.fused.matMul({ a, b: a, transposeB: true, bias })), // [7, 7]
          tf.sum(
            tf.fused.matMul({ a: tf.stack([a, a]), b: tf.stack([a, a]), transposeB: true, bias }),
          ), // [2, 7, 7]
          tf.sum(tf.mean(x, [0, 2], true)), // [1, 8, 1, 3]
          tf.sum(upsample2x(x as tf.Tensor4D)),
          tf.sum(dense({ "l.w": a, "l.b": tf.slice(bias, 0, 5) }, "l", tf.transpose(a), "relu")),
          tf.sum(tf.concat(tf.split(x, [1, 2], 3), 3)),
          tf.sum(sinusoidalEmbedding(tf.tensor1d([3, 3, 999]), 6)),
        ]),
      )
    )([x, w, table, a]);
    grads.forEach((g) => g.dataSync());
    tf.dispose(grads);
  };
  step();
  const tensors = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) step();
  assertEquals(tf.memory().numTensors, tensors);
  tf.dispose([x, w, table, ids, a, bias]);
});
