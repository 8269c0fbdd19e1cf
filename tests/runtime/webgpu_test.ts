/**
 * WebGPU against the cpu backend, on whatever adapter Deno finds (Mesa's
 * llvmpipe on our machines and in CI, where .ci/run installs it). Without an
 * adapter these tests fail: they do not skip.
 *
 * Every model: the loss of one fixed batch and every parameter's gradient,
 * the clipped global norm (the sum over parameters that AddN got wrong), and
 * two steps of each of its samplers from the same noise. Shapes are tiny so
 * llvmpipe compiles few shaders; all of it runs in this one process.
 *
 * Tolerance. Both backends compute in float32 but sum in different orders
 * (GPU reductions go by trees of workgroups, cpu loops in sequence), so a sum
 * of n terms differs by about √n·ε relative, ε = 6e-8; the largest sums here
 * (convolution filter gradients over batch and pixels) have n ≈ 10⁴, and
 * errors pass through a few layers: expect 1e-5 to 1e-4. A parameter passes
 * when ‖Δg‖ ≤ 1e-3·‖g‖ + 1e-5·‖g_all‖. The second term is for gradients that
 * are zero in exact arithmetic (the bias of a convolution followed by
 * GroupNorm), where both backends return rounding noise of ~1e-9 that no
 * relative test can compare. The faults these tests guard against were
 * errors of order one (gradients scaled by 1e-5, NaN losses).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { resolveConfig } from "../../lib/models/config.ts";
import type { RunConfig, SampleOutput } from "../../lib/models/model.ts";
import { modelEntry } from "../../lib/models/registry.ts";
import type { Weights } from "../../lib/network/layers.ts";
import { checkBackend, initBackend } from "../../lib/runtime/backend.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import {
  adapterLimits,
  clearGpuFaults,
  GpuFaultError,
  gpuFaults,
  settleGpu,
} from "../../lib/runtime/webgpu.ts";
import type { WebGpuBackendLike, WebGpuProgram } from "../../lib/runtime/kernels/webgpu.ts";
import { Adam, clipByGlobalNorm } from "../../lib/trainer/optim.ts";
import { ADAM } from "../../lib/runtime/kernels/adam.ts";
import { hasKernel } from "../../lib/runtime/kernels/install.ts";
import { groupNorm, groupNormSilu } from "../../lib/network/layers.ts";
import { GROUP_NORM } from "../../lib/runtime/kernels/group_norm.ts";
import { readEvents } from "../../lib/trainer/events.ts";
import { train } from "../../lib/trainer/trainer.ts";

await initBackend("cpu", null);
// Without an adapter every test below fails with this error (none is skipped).
const started = await initBackend("webgpu", null).catch((e: Error) =>
  new Error(`${e.message}; .ci/run installs Mesa's Vulkan driver (llvmpipe) on Debian`)
);

/** Runs `f` on `backend` and returns what it read back. */
async function on<T>(backend: "cpu" | "webgpu", f: () => Promise<T>): Promise<T> {
  if (started instanceof Error) throw started;
  await tf.setBackend(backend);
  try {
    return await f();
  } finally {
    if (backend === "webgpu") await settleGpu();
  }
}

async function values(t: tf.Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.data());
}

function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

function diffNorm(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

Deno.test("the device has the adapter's limits, as numbers", async () => {
  if (started instanceof Error) throw started;
  assert.equal(started.name, "webgpu");
  const adapter = await (navigator as unknown as { gpu: GPU }).gpu.requestAdapter();
  assert.ok(adapter, "no WebGPU adapter: .ci/run installs Mesa's Vulkan driver (llvmpipe)");
  const want = adapterLimits(adapter);
  const device = (tf.findBackend("webgpu") as unknown as WebGpuBackendLike).device;
  for (const [k, v] of Object.entries(want)) {
    assert.equal(typeof v, "number", k);
    assert.equal(Number((device.limits as unknown as Record<string, number>)[k]), v, k);
  }
  assert.ok(want.maxStorageBuffersPerShaderStage >= 8);
});

Deno.test("addN of more inputs than a shader can bind sums them all", async () => {
  const limit = (tf.findBackend("webgpu") as unknown as WebGpuBackendLike).device.limits
    .maxStorageBuffersPerShaderStage;
  for (const n of [2, 7, 8, limit - 1, limit, 3 * limit + 2]) {
    const got = await on("webgpu", async () => {
      const xs = Array.from({ length: n }, (_, i) => tf.fill([3], i + 1));
      const sum = tf.addN(xs);
      const v = await values(sum);
      tf.dispose([...xs, sum]);
      return v;
    });
    assert.deepEqual([...got], [0, 1, 2].map(() => (n * (n + 1)) / 2), `addN of ${n}`);
  }
  assert.deepEqual(gpuFaults(), []);
});

Deno.test("an int32 tensor cast to float32 feeds a 3-channel convolution", async () => {
  const run = () => {
    const ids = tf.tensor4d(
      Array.from({ length: 2 * 5 * 5 * 3 }, (_, i) => i % 3),
      [2, 5, 5, 3],
      "int32",
    );
    const x = tf.cast(ids, "float32") as tf.Tensor4D;
    const w = tf.tensor4d(Array.from({ length: 3 * 3 * 3 * 4 }, (_, i) => Math.sin(i)), [
      3,
      3,
      3,
      4,
    ]);
    const y = tf.fused.conv2d({ x, filter: w, strides: 1, pad: "same", bias: tf.ones([4]) });
    return { y, all: [ids, x, w, y] };
  };
  const want = await on("cpu", async () => {
    const { y, all } = run();
    const v = await values(y);
    tf.dispose(all);
    return v;
  });
  const got = await on("webgpu", async () => {
    const { y, all } = run();
    const v = await values(y);
    tf.dispose(all);
    return v;
  });
  assert.deepEqual(gpuFaults(), []);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-4, `y[${i}]`);
});

Deno.test("a shader that does not compile is an error the run hears about", async () => {
  const backend = (await on("webgpu", () => Promise.resolve(tf.backend()))) as unknown as
    & WebGpuBackendLike
    & tf.KernelBackend;
  const broken: WebGpuProgram = {
    variableNames: ["x"],
    outputShape: [4],
    shaderKey: "dmw_test_broken",
    dispatchLayout: { x: [0] },
    dispatch: [1, 1, 1],
    workgroupSize: [64, 1, 1],
    size: true,
    getUserCode: () => `fn main(index : i32) { setOutputAtIndex(index, vec3<f32>(1.0)); }`,
  };
  await tf.setBackend("webgpu");
  const x = tf.ones([4]);
  const out = backend.runWebGPUProgram(broken, [x], "float32");
  await settleGpu();
  try {
    assert.ok(gpuFaults().length > 0, "the invalid pipeline was not reported");
    await assert.rejects(() => checkBackend(true), GpuFaultError);
  } finally {
    backend.disposeData(out.dataId);
    x.dispose();
    clearGpuFaults();
  }
  await checkBackend(true);
});

// GroupNorm: the WGSL kernels (lib/runtime/kernels/group_norm_webgpu.ts) on
// webgpu against the tf-ops layer on cpu, which layers_test checks against
// float64 and autodiff. The largest shape is the MNIST UNet's first level.
const GROUP_NORM_CASES: [number[], number][] = [
  [[2, 5, 3, 8], 4],
  [[3, 4, 4, 6], 2],
  [[1, 7, 7, 4], 4],
  [[4, 28, 28, 32], 8],
];
for (const [shape, groups] of GROUP_NORM_CASES) {
  for (const withSilu of [false, true]) {
    const what = withSilu ? "groupNormSilu" : "groupNorm";
    Deno.test(`${what} ${shape} / ${groups}: webgpu kernels match cpu, value and gradients`, async () => {
      const rng = new Rng(shape.reduce((p, q) => p * 31 + q, groups));
      const n = shape.reduce((p, q) => p * q, 1);
      const C = shape[3];
      const draw = (len: number, scale: number, shift: number) =>
        Float32Array.from({ length: len }, () => shift + scale * rng.normal());
      const xv = draw(n, 2, 0.5), gv = draw(C, 0.5, 1), bv = draw(C, 0.3, 0), rv = draw(n, 1, 0);
      const run = async () => {
        const before = tf.memory().numTensors;
        const x = tf.tensor4d(xv, shape as [number, number, number, number]);
        const g = tf.tensor1d(gv), b = tf.tensor1d(bv), r = tf.tensor(rv, shape);
        const layer = withSilu ? groupNormSilu : groupNorm;
        const f = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(layer({ "n.g": g, "n.b": b }, "n", x as tf.Tensor4D, groups), r));
        const y = tf.tidy(() => layer({ "n.g": g, "n.b": b }, "n", x, groups));
        const grads = tf.grads(f)([x, g, b]);
        const out = [await values(y), ...(await Promise.all(grads.map(values)))];
        tf.dispose([x, g, b, r, y, ...grads]);
        assert.equal(tf.memory().numTensors, before, "value and gradient free what they make");
        return { out, kernels: hasKernel(GROUP_NORM) };
      };
      const want = await on("cpu", run);
      const got = await on("webgpu", run);
      assert.ok(got.kernels && !want.kernels, "webgpu runs the project kernels, cpu the tf ops");
      assert.deepEqual(gpuFaults(), []);
      ["y", "dx", "dγ", "dβ"].forEach((name, i) => {
        const scale = Math.max(1e-6, ...want.out[i].map(Math.abs));
        let err = 0;
        for (let j = 0; j < want.out[i].length; j++) {
          err = Math.max(err, Math.abs(got.out[i][j] - want.out[i][j]));
        }
        assert.ok(err / scale < 1e-4, `${name}: relative error ${err / scale}`);
      });
    });
  }
}

// Within 1e-5 relative, or 1e-7 absolute (1e-5 of the learning rate) for parameters near 0,
// where the order of float32 roundings in the step decides the last digits.
Deno.test("the fused Adam and AdamW kernels on webgpu match cpu's ops over three steps", async () => {
  const rng = new Rng(11);
  const p0 = Float32Array.from({ length: 300 }, () => rng.normal());
  const grads = [0, 1, 2].map(() => Float32Array.from({ length: 300 }, () => rng.normal() * 0.1));
  for (const kind of ["adam", "adamw"] as const) {
    const run = async () => {
      // Two parameters, one kernel call: the first 100 values as [10, 10], the rest as [200].
      const params = {
        a: tf.variable(tf.tensor2d(p0.slice(0, 100), [10, 10])),
        b: tf.variable(tf.tensor1d(p0.slice(100))),
      };
      const adam = new Adam(params, { kind, weightDecay: 0.1 });
      for (const g of grads) {
        const t = { a: tf.tensor2d(g.slice(0, 100), [10, 10]), b: tf.tensor1d(g.slice(100)) };
        adam.apply(params, t, 0.01);
        tf.dispose(Object.values(t));
      }
      const out = [
        params.a,
        params.b,
        ..."mv".split("").flatMap((k) => [
          adam.moments[`${k}/a`],
          adam.moments[`${k}/b`],
        ]),
      ];
      const flat = (await Promise.all(out.map((t) => t.data()))).map((v) => Float32Array.from(v));
      const values = [0, 2, 4].map((i) => Float32Array.from([...flat[i], ...flat[i + 1]]));
      adam.dispose();
      Object.values(params).forEach((p) => p.dispose());
      return { values, kernel: hasKernel(ADAM) };
    };
    const want = await on("cpu", run);
    const got = await on("webgpu", run);
    assert.ok(got.kernel && !want.kernel, "webgpu runs the fused kernel, cpu the ops");
    ["p", "m", "v"].forEach((name, i) => {
      got.values[i].forEach((x, j) => {
        const w = want.values[i][j];
        assert.ok(
          Math.abs(x - w) <= 1e-5 * Math.abs(w) + 1e-7,
          `${kind} ${name}[${j}] ${x} vs ${w}`,
        );
      });
    });
  }
  assert.deepEqual(gpuFaults(), []);
});

/** A model small enough for llvmpipe, and how to call its samplers. */
interface Case {
  model: string;
  data: string;
  set: RunConfig;
  samplers: string[];
  labels?: number[];
}

const CASES: Case[] = [
  { model: "ddpm", data: "8gaussians", set: { batch: 16 }, samplers: ["ddpm", "ddim", "dpmpp2m"] },
  { model: "ddpm", data: "mnist", set: { batch: 2, ch: 8 }, samplers: ["ddpm", "ddim", "dpmpp2m"] },
  { model: "d3pm", data: "mnist", set: { batch: 2, ch: 8 }, samplers: ["ancestral"] },
  {
    model: "score",
    data: "mnist",
    set: { batch: 2, ch: 8, mults: [1, 2], attn_res: [14], heads: 2 },
    samplers: ["em"],
    labels: [3, 7],
  },
  {
    model: "tabddpm",
    data: "penguins",
    set: { batch: 16, d_layers: [16] },
    samplers: ["ddpm", "ddim", "dpmpp2m"],
  },
];

/** The numbers of a sample, categories as their index among the values seen. */
function numbers(out: SampleOutput): number[] {
  if (out.kind === "image") return [...out.images];
  if (out.kind === "points") return [...out.points];
  const seen = new Map<string, number>();
  return out.rows.flat().map((v) => {
    if (typeof v === "number") return v;
    if (!seen.has(v)) seen.set(v, seen.size);
    return 1000 * seen.get(v)!;
  });
}

interface Outcome {
  loss: number;
  grads: Record<string, Float32Array>;
  norm: number;
  samples: Record<string, number[]>;
}

async function outcome(c: Case): Promise<Outcome> {
  const entry = modelEntry(c.model);
  const config = { model: c.model, data: c.data, ...resolveConfig(entry.keys, c.set) };
  const model = await entry.create(config);
  const init = model.init(new Rng(1));
  const params: Record<string, tf.Variable> = {};
  const tag = `${tf.getBackend()}-${c.model}-${c.data}`;
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `${tag}/${k}`);
  tf.dispose(Object.values(init));
  const warm = model.loss(params, new Rng(2), 0); // builds what a model keeps between steps
  tf.dispose([warm.loss, warm.perSample]);
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(
    () => model.loss(params, new Rng(2), 0).loss,
    Object.values(params),
  );
  const named: Weights = {};
  for (const [k, v] of Object.entries(params)) named[k] = grads[v.name];
  const clipped = clipByGlobalNorm(named, 1);
  const out: Outcome = {
    loss: (await value.data())[0],
    grads: {},
    norm: (await clipped.norm.data())[0],
    samples: {},
  };
  for (const [k, g] of Object.entries(named)) out.grads[k] = await values(g);
  tf.dispose([value, clipped.norm, ...Object.values(clipped.grads), ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before, "the loss and its gradients leave no tensors");
  for (const sampler of c.samplers) {
    const n = c.labels?.length ?? 4;
    const s = await model.sample(params, { n, sampler, steps: 2, labels: c.labels }, new Rng(3));
    out.samples[sampler] = numbers(s);
  }
  tf.dispose(Object.values(params));
  model.dispose();
  return out;
}

for (const c of CASES) {
  Deno.test(`${c.model} on ${c.data}: loss, gradients and sampling on webgpu match cpu`, async () => {
    const want = await on("cpu", () => outcome(c));
    const got = await on("webgpu", () => outcome(c));
    assert.deepEqual(gpuFaults(), [], "the device reported errors");
    assert.ok(Number.isFinite(got.loss), `webgpu loss ${got.loss}`);
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-4 * Math.abs(want.loss) + 1e-7, "loss");
    const total = norm(Object.values(want.grads).flatMap((g) => [norm(g)]));
    for (const [k, g] of Object.entries(want.grads)) {
      const d = diffNorm(got.grads[k], g);
      assert.ok(
        d <= 1e-3 * norm(g) + 1e-5 * total,
        `∂loss/∂${k}: ‖Δ‖ = ${d.toExponential(2)}, ‖g‖ = ${norm(g).toExponential(2)}`,
      );
    }
    assert.ok(Math.abs(got.norm - want.norm) <= 1e-4 * want.norm, `global norm ${got.norm}`);
    for (const [sampler, w] of Object.entries(want.samples)) {
      const g = got.samples[sampler];
      assert.equal(g.length, w.length);
      if (c.model === "d3pm") {
        // Categorical draws: a probability within rounding of a threshold may flip.
        const same = w.filter((v, i) => v === g[i]).length / w.length;
        assert.ok(same >= 0.99, `${sampler}: ${(100 * same).toFixed(1)}% of pixels agree`);
      } else {
        const bad = w.findIndex((v, i) => !(Math.abs(g[i] - v) <= 1e-3 * (1 + Math.abs(v))));
        assert.equal(bad, -1, `${sampler}: sample value ${bad}: ${g[bad]} vs ${w[bad]}`);
      }
    }
  });
}

/** The logged losses and gradient norms of a short run through the trainer. */
async function trainLog(model: string, data: string, set: RunConfig) {
  const dir = Deno.makeTempDirSync({ prefix: `dmw-webgpu-${model}-` });
  const entry = modelEntry(model);
  const config = { model, data, ...resolveConfig(entry.keys, { log_every: 1, ema: [], ...set }) };
  await train({ runDir: dir, entry, config });
  const log = readEvents(dir).flatMap((e) => e.type === "train" ? [[e.loss, e.gradNorm]] : []);
  Deno.removeSync(dir, { recursive: true });
  return log;
}

for (
  const [model, data, set] of [
    ["ddpm", "8gaussians", { steps: 40, batch: 64 }],
    ["d3pm", "mnist", { steps: 4, batch: 4, ch: 8 }],
  ] as [string, string, RunConfig][]
) {
  Deno.test(`${model} on ${data} trains on webgpu with the losses of cpu`, async () => {
    const want = await on("cpu", () => trainLog(model, data, set));
    const got = await on("webgpu", () => trainLog(model, data, set));
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) {
      const [l, g] = got[i], [wl, wg] = want[i];
      assert.ok(
        Math.abs(l - wl) <= 2e-3 * Math.abs(wl) + 1e-6,
        `step ${i + 1}: loss ${l} vs ${wl}`,
      );
      assert.ok(Math.abs(g - wg) <= 2e-3 * wg, `step ${i + 1}: gradient norm ${g} vs ${wg}`);
    }
  });
}

/** Runs main.ts with Deno's WebGPU told to use a graphics API Linux lacks: no adapter. */
async function withoutAdapter(backend: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "bench", "--case", "mlp-toy", "--dry-run", "--backend", backend],
    // No oneDNN either, so auto's last resort is the one checked (onednn_test covers the other).
    env: { DENO_WEBGPU_BACKEND: "dx12", DMW_DNNL: "/nonexistent/libdnnl.so.2", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = (b: Uint8Array) =>
    new TextDecoder().decode(b).split("\n").filter((l) => l && !l.includes("XDG_RUNTIME_DIR"));
  return { code: out.code, stdout: lines(out.stdout), stderr: lines(out.stderr) };
}

Deno.test("--backend webgpu without an adapter is a one-line error; auto takes wasm", async () => {
  const webgpu = await withoutAdapter("webgpu");
  assert.equal(webgpu.code, 1);
  assert.deepEqual(webgpu.stderr, [
    "error: --backend webgpu: Deno offers no WebGPU adapter on this machine",
  ]);
  assert.deepEqual(webgpu.stdout, []);
  const auto = await withoutAdapter("auto");
  assert.equal(auto.code, 0, auto.stderr.join("\n"));
  assert.ok(
    auto.stderr.some((l) => /^backend: wasm.*auto: Deno offers no WebGPU adapter; /.test(l)),
    auto.stderr.join("\n"),
  );
  assert.equal(JSON.parse(auto.stdout[0]).backend, "wasm");
});
