/**
 * oneDNN's matrix products (lib/runtime/kernels/onednn_mat_mul.ts) against the
 * cpu backend, a whole training step of the MLP and of the UNet, the binding's
 * constants against oneDNN's own headers, and the fallback to wasm. `.ci/run`
 * installs libdnnl2 and libdnnl-dev; without them these tests fail.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import { resolveConfig } from "../../lib/models/config.ts";
import { openRun } from "../../lib/commands/run.ts";
import { computeMetric } from "../../lib/metrics/suite.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { train } from "../../lib/trainer/trainer.ts";
import { mnistShortRun } from "../models/mnist_short_run.ts";
import { modelEntry } from "../../lib/models/registry.ts";
import { initBackend } from "../../lib/runtime/backend.ts";
import {
  type ConvShape,
  DNNL,
  DNNL_STATUS,
  MEMORY_DESC_BYTES,
  onednn,
  OP_DESC_BYTES,
  SUPPORTED_MAJOR,
} from "../../lib/runtime/onednn.ts";
import { SILU } from "../../lib/runtime/kernels/onednn_silu.ts";
import { dense, silu } from "../../lib/network/layers.ts";
import { RELU_BIAS_GRAD } from "../../lib/runtime/kernels/dense_relu.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import type { RunConfig } from "../../lib/models/model.ts";

await initBackend("cpu", null);
const started = await initBackend("onednn", null).catch((e: Error) =>
  new Error(`${e.message}; .ci/run installs libdnnl2 on Debian`)
);

/** Runs `f` on `backend` (onednn is tfjs's wasm backend with the oneDNN kernels). */
async function on<T>(backend: "cpu" | "onednn", f: () => Promise<T>): Promise<T> {
  if (started instanceof Error) throw started;
  await tf.setBackend(backend === "onednn" ? "wasm" : "cpu");
  return await f();
}

function random(shape: number[], rng: Rng): Float32Array {
  return Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => rng.normal());
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0, scale = 1e-6;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

Deno.test("onednn is the wasm backend with oneDNN's matrix products", () => {
  if (started instanceof Error) throw started;
  assert.equal(started.name, "onednn");
  assert.match(started.reason, /oneDNN 2\.\d+\.\d+/);
});

// [a shape, b shape, transposeA, transposeB]: odd sizes, batch 1, broadcast batches, empty inner.
const PRODUCTS: [number[], number[], boolean, boolean][] = [
  [[7, 13], [13, 5], false, false],
  [[13, 7], [13, 5], true, false],
  [[7, 13], [5, 13], false, true],
  [[13, 7], [5, 13], true, true],
  [[1, 1], [1, 1], false, false],
  [[3, 4, 9], [3, 9, 6], false, false],
  [[3, 9, 4], [1, 6, 9], true, true],
  [[1, 4, 9], [5, 9, 2], false, false],
  [[2, 3, 8, 5], [2, 3, 5, 4], false, false],
  [[64, 256], [256, 2], false, false],
];

for (const [sa, sb, ta, tb] of PRODUCTS) {
  Deno.test(`matMul [${sa}]${ta ? "ᵀ" : ""} · [${sb}]${tb ? "ᵀ" : ""} matches cpu`, async () => {
    const rng = new Rng(sa.length * 100 + sb[0]);
    const av = random(sa, rng), bv = random(sb, rng);
    const run = () => {
      const a = tf.tensor(av, sa), b = tf.tensor(bv, sb);
      const y = tf.matMul(a, b, ta, tb);
      const out = y.dataSync();
      tf.dispose([a, b, y]);
      return Promise.resolve(Float32Array.from(out));
    };
    const want = await on("cpu", run);
    const got = await on("onednn", run);
    assert.equal(got.length, want.length);
    assert.ok(maxRelErr(got, want) < 1e-5, `relative error ${maxRelErr(got, want)}`);
  });
}

// [x shape, filter shape, strides, pad]: odd sizes, stride 2, same and valid, batch 1, 1 and 3 channels.
const CONVS: [number[], number[], number, "same" | "valid" | number][] = [
  [[2, 9, 7, 3], [3, 3, 3, 5], 1, "same"],
  [[2, 9, 7, 3], [3, 3, 3, 5], 2, "same"],
  [[1, 8, 8, 1], [3, 3, 1, 4], 1, "valid"],
  [[1, 11, 6, 4], [5, 2, 4, 3], 2, "valid"],
  [[3, 6, 6, 8], [1, 1, 8, 8], 1, "same"],
  [[2, 7, 7, 6], [3, 3, 6, 2], 1, 1],
  [[4, 28, 28, 8], [3, 3, 8, 16], 2, "same"],
];

for (const [sx, sw, stride, pad] of CONVS) {
  Deno.test(`conv2d [${sx}] ⊛ [${sw}] stride ${stride} ${pad}: value and both gradients match cpu`, async () => {
    const rng = new Rng(sx.reduce((p, q) => p * 7 + q, stride));
    const xv = random(sx, rng), wv = random(sw, rng);
    const run = async () => {
      const x = tf.tensor4d(xv, sx as [number, number, number, number]);
      const w = tf.tensor4d(wv, sw as [number, number, number, number]);
      const f = (x: tf.Tensor, w: tf.Tensor) =>
        tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, pad);
      const y = f(x, w);
      const r = tf.tensor(random(y.shape, new Rng(9)), y.shape);
      const [dx, dw] = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(f(x, w), r)))([x, w]);
      const out = [await y.data(), await dx.data(), await dw.data()].map((v) =>
        Float32Array.from(v)
      );
      tf.dispose([x, w, y, r, dx, dw]);
      return out;
    };
    const want = await on("cpu", run);
    const got = await on("onednn", run);
    ["y", "dx", "dw"].forEach((name, i) => {
      const e = maxRelErr(got[i], want[i]);
      assert.ok(e < 1e-5, `${name}: relative error ${e}`);
    });
  });
}

Deno.test("convolutions run oneDNN's direct kernels on blocked weights, not im2col and gemm", async () => {
  await on("onednn", () => Promise.resolve());
  const dnnl = onednn()!;
  const shape: ConvShape = {
    x: [8, 28, 28, 32],
    w: [3, 3, 32, 32],
    y: [8, 28, 28, 32],
    strides: [1, 1],
    pad: [1, 1, 1, 1],
  };
  for (const kind of ["forward", "backward_data", "backward_weights"] as const) {
    const impl = dnnl.convImplementation(shape, kind);
    assert.ok(!impl.includes("gemm") && impl !== "?", `${kind}: ${impl}`);
  }
});

Deno.test("every layout choice (DMW_DNNL_LAYOUT) gives the same convolutions", async () => {
  for (const layout of ["plain", "all"]) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["test", "-A", "--filter", "/^conv2d /", "tests/runtime/onednn_test.ts"],
      env: { DMW_DNNL_LAYOUT: layout, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, `${layout}: ${out}${new TextDecoder().decode(r.stderr)}`);
    assert.match(out, new RegExp(`ok \\| ${CONVS.length} passed \\| 0 failed`), out);
  }
});

for (const shape of [[1], [7, 5], [64, 28, 28, 32]]) {
  Deno.test(`SiLU [${shape}] and its gradient match cpu`, async () => {
    const rng = new Rng(shape.length);
    const xv = random(shape, rng).map((v) => 4 * v), rv = random(shape, rng);
    const run = () => {
      const x = tf.tensor(xv, shape), r = tf.tensor(rv, shape);
      const y = silu(x);
      const dx = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(silu(x), r)))(x);
      const out = [Float32Array.from(y.dataSync()), Float32Array.from(dx.dataSync())];
      tf.dispose([x, r, y, dx]);
      return Promise.resolve(out);
    };
    const want = await on("cpu", run);
    const got = await on("onednn", run);
    assert.ok(tf.getKernel(SILU, "wasm"), "the SiLU kernels are installed with oneDNN");
    ["y", "dx"].forEach((name, i) => {
      const e = maxRelErr(got[i], want[i]);
      assert.ok(e < 1e-5, `${name}: relative error ${e}`);
    });
  });
}

Deno.test("dense with ReLU stays fused under a gradient and matches cpu, value and gradients", async () => {
  const f = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
    dense({ "l.w": w, "l.b": b }, "l", x, "relu");
  for (const [m, k, n] of [[7, 5, 3], [64, 33, 70], [1, 1, 1], [1024, 128, 256]]) {
    const rng = new Rng(m + k + n);
    const xv = random([m, k], rng), wv = random([k, n], rng), bv = random([n], rng);
    const rv = random([m, n], rng);
    const run = () => {
      const x = tf.tensor(xv, [m, k]), w = tf.tensor(wv, [k, n]), b = tf.tensor(bv, [n]);
      const r = tf.tensor(rv, [m, n]);
      const y = f(x, w, b);
      const grads = tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(f(x, w, b), r))
      )([x, w, b]);
      const out = [y, ...grads].map((t) => Float32Array.from(t.dataSync()));
      tf.dispose([x, w, b, r, y, ...grads]);
      return Promise.resolve(out);
    };
    const want = await on("cpu", run);
    const got = await on("onednn", run);
    ["y", "dx", "dw", "db"].forEach((name, i) => {
      const e = maxRelErr(got[i], want[i]);
      assert.ok(e < 1e-5, `[${m},${k}]·[${k},${n}] ${name}: relative error ${e}`);
    });
    if (m * n > 1) {
      assert.ok(want[0].some((v) => v === 0) && want[0].some((v) => v > 0), "ReLU cut and passed");
    }
  }
  const kernels = await on("onednn", async () => {
    const x = tf.ones([16, 8]), w = tf.ones([8, 4]), b = tf.zeros([4]);
    const p = await tf.profile(() => {
      tf.dispose(
        tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(f(x, w, b)))([x, w, b]),
      );
    });
    tf.dispose([x, w, b]);
    return p.kernels.map((k) => k.name);
  });
  assert.ok(kernels.includes(tf._FusedMatMul) && kernels.includes(RELU_BIAS_GRAD), `${kernels}`);
  assert.ok(!kernels.includes(tf.Relu) && !kernels.includes(tf.Step), `unfused: ${kernels}`);
});

Deno.test("Sum and Mean over leading axes (by sgemm) and any other axes match cpu", async () => {
  const rng = new Rng(77);
  const shape = [4, 5, 1, 6, 7];
  const xv = random(shape, rng);
  const cases: [number[], boolean][] = [
    [[0, 1, 2, 3], false],
    [[0, 1, 3], true],
    [[0], false],
    [[0, 1], true],
    [[1, 2], false],
    [[4], false],
    [[0, 4], true],
    [[0, 1, 2, 3, 4], false],
  ];
  for (const [axes, keepDims] of cases) {
    const run = () => {
      const x = tf.tensor(xv, shape);
      const s = tf.sum(x, axes, keepDims), m = tf.mean(x, axes, keepDims);
      const out = [s, m].map((t) => ({ shape: t.shape, v: Float32Array.from(t.dataSync()) }));
      tf.dispose([x, s, m]);
      return Promise.resolve(out);
    };
    const want = await on("cpu", run);
    const got = await on("onednn", run);
    ["sum", "mean"].forEach((name, i) => {
      assert.deepEqual(got[i].shape, want[i].shape, `${name} over ${axes}`);
      const e = maxRelErr(got[i].v, want[i].v);
      assert.ok(e < 1e-5, `${name} over ${axes} (keepDims ${keepDims}): relative error ${e}`);
    });
  }
  const ints = await on(
    "onednn",
    () => Promise.resolve(tf.sum(tf.tensor2d([[1, 2], [3, 4]], undefined, "int32"), 0)),
  );
  assert.deepEqual(Array.from(ints.dataSync()), [4, 6], "int32 goes to the wasm kernel");
  ints.dispose();
});

Deno.test("a 1,000-step 2-D DDPM trained on oneDNN samples within the documented MMD threshold", async () => {
  const sampleMmd = (dir: string, ema: string) =>
    on("onednn", async () => {
      const run = await openRun(dir, { ema });
      try {
        const s = await run.model.sample(
          run.weights,
          { n: 1000, sampler: "ddim", steps: 100 },
          new Rng(1),
        );
        return (await computeMetric("mmd", s, { data: "8gaussians", seed: 0 })).value;
      } finally {
        run.close();
      }
    });
  const dir = Deno.makeTempDirSync({ prefix: "dmw-onednn-ddpm-" });
  const config = {
    model: "ddpm",
    data: "8gaussians",
    ...resolveConfig(DDPM_ENTRY.keys, { steps: 1000, ema: [0.999], checkpoint_every: 1000 }),
  };
  await on("onednn", () => train({ runDir: dir, entry: DDPM_ENTRY, config }));
  const mmd = await sampleMmd(dir, "0.999");
  assert.ok(mmd < 0.04, `MMD ${mmd} ≥ 0.04 (tests/models/ddpm_test.ts's threshold on wasm)`);
});

Deno.test("the short MNIST UNet run on oneDNN beats an untrained network by FID and IS", async () => {
  const { trained, untrained } = await on("onednn", mnistShortRun);
  console.log(`onednn: trained ${JSON.stringify(trained)}, untrained ${JSON.stringify(untrained)}`);
  assert.ok(trained.fid < 0.7 * untrained.fid, `FID ${trained.fid} vs untrained ${untrained.fid}`);
  assert.ok(trained.is > untrained.is + 0.5, `IS ${trained.is} vs untrained ${untrained.is}`);
});

Deno.test("fused conv2d with bias and ReLU matches cpu", async () => {
  const rng = new Rng(5);
  const xv = random([2, 7, 7, 3], rng), wv = random([3, 3, 3, 4], rng), bv = random([4], rng);
  const run = () => {
    const x = tf.tensor4d(xv, [2, 7, 7, 3]), w = tf.tensor4d(wv, [3, 3, 3, 4]), b = tf.tensor1d(bv);
    const y = tf.fused.conv2d({
      x,
      filter: w,
      strides: 1,
      pad: "same",
      bias: b,
      activation: "relu",
    });
    const out = Float32Array.from(y.dataSync());
    tf.dispose([x, w, b, y]);
    return Promise.resolve(out);
  };
  const want = await on("cpu", run);
  const got = await on("onednn", run);
  assert.ok(maxRelErr(got, want) < 1e-5, `relative error ${maxRelErr(got, want)}`);
  assert.ok(want.some((v) => v === 0) && want.some((v) => v > 0), "ReLU both cut and passed");
});

for (const activation of ["linear", "relu", "elu"] as const) {
  for (const biasShape of [[5], [1, 5], [4, 5]]) {
    Deno.test(`fused matMul + bias [${biasShape}] + ${activation} matches cpu`, async () => {
      const rng = new Rng(biasShape.length * 7 + activation.length);
      const av = random([4, 9], rng), bv = random([9, 5], rng), cv = random(biasShape, rng);
      const run = () => {
        const a = tf.tensor2d(av, [4, 9]),
          b = tf.tensor2d(bv, [9, 5]),
          c = tf.tensor(cv, biasShape);
        const y = tf.fused.matMul({ a, b, bias: c, activation });
        const out = Float32Array.from(y.dataSync());
        tf.dispose([a, b, c, y]);
        return Promise.resolve(out);
      };
      const want = await on("cpu", run);
      const got = await on("onednn", run);
      assert.ok(maxRelErr(got, want) < 1e-5, `relative error ${maxRelErr(got, want)}`);
    });
  }
}

/** The loss and every gradient of one batch of `model`, on the current backend. */
async function lossAndGrads(model: string, data: string, set: RunConfig) {
  const entry = modelEntry(model);
  const m = await entry.create({ model, data, ...resolveConfig(entry.keys, set) });
  const init = m.init(new Rng(1));
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) {
    params[k] = tf.variable(t, true, `${tf.getBackend()}-${model}-${k}`);
  }
  tf.dispose(Object.values(init));
  const { value, grads } = tf.variableGrads(
    () => m.loss(params, new Rng(2), 0).loss,
    Object.values(params),
  );
  const out = { loss: (await value.data())[0], grads: {} as Record<string, Float32Array> };
  for (const [k, v] of Object.entries(params)) {
    out.grads[k] = Float32Array.from(await grads[v.name].data());
  }
  tf.dispose([value, ...Object.values(grads), ...Object.values(params)]);
  m.dispose();
  return out;
}

for (
  const [model, data, set] of [
    ["ddpm", "8gaussians", { batch: 256 }],
    ["ddpm", "mnist", { batch: 4, ch: 8 }],
  ] as [string, string, RunConfig][]
) {
  Deno.test(`${model} on ${data}: a training step's loss and gradients match cpu`, async () => {
    const want = await on("cpu", () => lossAndGrads(model, data, set));
    const got = await on("onednn", () => lossAndGrads(model, data, set));
    assert.ok(Math.abs(got.loss - want.loss) <= 1e-4 * Math.abs(want.loss), "loss");
    let total = 0;
    for (const g of Object.values(want.grads)) for (const v of g) total += v * v;
    for (const [k, g] of Object.entries(want.grads)) {
      let d = 0, n = 0;
      for (let i = 0; i < g.length; i++) {
        d += (got.grads[k][i] - g[i]) ** 2;
        n += g[i] ** 2;
      }
      // Relative 1e-4, plus room for gradients that are zero in exact arithmetic (webgpu_test.ts).
      assert.ok(
        Math.sqrt(d) <= 1e-4 * Math.sqrt(n) + 1e-6 * Math.sqrt(total),
        `∂loss/∂${k}: ‖Δ‖ ${Math.sqrt(d)}, ‖g‖ ${Math.sqrt(n)}`,
      );
    }
  });
}

Deno.test("the binding's constants and version struct are oneDNN's own (libdnnl-dev headers)", () => {
  const dir = "/usr/include/oneapi/dnnl";
  const types = fs.readFileSync(join(dir, "dnnl_types.h"), "utf8");
  for (const [name, value] of Object.entries(DNNL_STATUS)) {
    const m = new RegExp(`\\bdnnl_${name}\\s*=\\s*(\\d+)`).exec(types);
    assert.ok(m, `dnnl_${name} not in dnnl_types.h`);
    assert.equal(Number(m[1]), value, `dnnl_${name}`);
  }
  assert.match(types, /typedef struct \{\s*int major;[^}]*int minor;[^}]*int patch;/);
  const api = fs.readFileSync(join(dir, "dnnl.h"), "utf8");
  assert.match(
    api,
    /dnnl_status_t DNNL_API dnnl_sgemm\(char transa, char transb, dnnl_dim_t M,\s*dnnl_dim_t N, dnnl_dim_t K, float alpha, const float \*A, dnnl_dim_t lda,\s*const float \*B, dnnl_dim_t ldb, float beta, float \*C, dnnl_dim_t ldc\);/,
  );
  assert.match(types, /typedef int64_t dnnl_dim_t;/);
  const version = fs.readFileSync(join(dir, "dnnl_version.h"), "utf8");
  assert.match(version, new RegExp(`#define DNNL_VERSION_MAJOR ${SUPPORTED_MAJOR}\\b`));
});

/** The C names of the binding's DNNL constants. */
const C_NAMES: Record<keyof typeof DNNL, string> = {
  f32: "dnnl_f32",
  tag_any: "dnnl_format_tag_any",
  tag_a: "dnnl_a",
  tag_nhwc: "dnnl_nhwc",
  tag_hwio: "dnnl_hwio",
  forward_training: "dnnl_forward_training",
  forward_inference: "dnnl_forward_inference",
  convolution_direct: "dnnl_convolution_direct",
  eltwise_swish: "dnnl_eltwise_swish",
  eltwise_relu_use_dst_for_bwd: "dnnl_eltwise_relu_use_dst_for_bwd",
  engine_cpu: "dnnl_cpu",
  stream_default_flags: "dnnl_stream_default_flags",
  ARG_SRC: "DNNL_ARG_SRC",
  ARG_DST: "DNNL_ARG_DST",
  ARG_WEIGHTS: "DNNL_ARG_WEIGHTS",
  ARG_BIAS: "DNNL_ARG_BIAS",
  ARG_DIFF_SRC: "DNNL_ARG_DIFF_SRC",
  ARG_DIFF_DST: "DNNL_ARG_DIFF_DST",
  ARG_DIFF_WEIGHTS: "DNNL_ARG_DIFF_WEIGHTS",
  query_impl_info_str: "dnnl_query_impl_info_str",
  query_src_md: "dnnl_query_src_md",
  query_diff_src_md: "dnnl_query_diff_src_md",
  query_weights_md: "dnnl_query_weights_md",
  query_diff_weights_md: "dnnl_query_diff_weights_md",
  query_dst_md: "dnnl_query_dst_md",
  query_diff_dst_md: "dnnl_query_diff_dst_md",
};

Deno.test("the binding's enum values and buffer sizes are what the headers compile to", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-dnnl-enums-" });
  const prints = Object.entries(C_NAMES).map(([k, c]) => `printf("${k} %d\\n", (int)(${c}));`);
  fs.writeFileSync(
    join(dir, "enums.c"),
    "#include <stdio.h>\n#include <oneapi/dnnl/dnnl.h>\nint main(void) {\n" +
      prints.join("\n") +
      '\nprintf("md %zu\\nop %zu\\narg %zu\\n", sizeof(dnnl_memory_desc_t), ' +
      'sizeof(dnnl_convolution_desc_t), sizeof(dnnl_exec_arg_t));\nprintf("elt %zu\\n", sizeof(dnnl_eltwise_desc_t));\nreturn 0;\n}\n',
  );
  const cc = await new Deno.Command("cc", {
    args: ["-o", join(dir, "enums"), join(dir, "enums.c")],
  }).output();
  assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
  const out = new TextDecoder().decode(
    (await new Deno.Command(join(dir, "enums"), { stdout: "piped" }).output()).stdout,
  );
  const got = Object.fromEntries(out.trim().split("\n").map((l) => l.split(" ")));
  for (const k of Object.keys(C_NAMES) as (keyof typeof DNNL)[]) {
    assert.equal(Number(got[k]), DNNL[k], `${C_NAMES[k]}`);
  }
  assert.ok(Number(got.md) <= MEMORY_DESC_BYTES, `sizeof(dnnl_memory_desc_t) = ${got.md}`);
  assert.ok(Number(got.op) <= OP_DESC_BYTES, `sizeof(dnnl_convolution_desc_t) = ${got.op}`);
  assert.ok(Number(got.elt) <= OP_DESC_BYTES, `sizeof(dnnl_eltwise_desc_t) = ${got.elt}`);
  assert.equal(Number(got.arg), 16, "dnnl_exec_arg_t as the binding lays it out");
});

/** `bench --dry-run --case mlp-toy` with `env`; returns its backend line and record. */
async function benchWith(env: Record<string, string>) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "bench", "--case", "mlp-toy", "--dry-run"],
    env: { ...env, DENO_WEBGPU_BACKEND: "dx12", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 0, stderr);
  return {
    line: stderr.split("\n").find((l) => l.startsWith("backend:")) ?? "",
    record: JSON.parse(new TextDecoder().decode(r.stdout).trim()),
  };
}

Deno.test("auto takes oneDNN when it loads, and wasm with the reason when it does not", async () => {
  const native = await benchWith({});
  assert.match(native.line, /^backend: onednn, \d+ threads? — auto: .*oneDNN loads \(oneDNN 2\./);
  assert.equal(native.record.backend, "onednn");
  const missing = await benchWith({ DMW_DNNL: "/nonexistent/libdnnl.so.2" });
  assert.match(missing.line, /^backend: wasm.*no oneDNN library \(\/nonexistent\/libdnnl\.so\.2: /);
  assert.match(missing.line, /apt-get install libdnnl2/);
  assert.equal(missing.record.backend, "wasm");
  // A library that says it is oneDNN 3: built here from C, as another major version would load.
  const dir = Deno.makeTempDirSync({ prefix: "dmw-fake-dnnl-" });
  fs.writeFileSync(
    join(dir, "fake.c"),
    "typedef struct { int major, minor, patch; const char *hash; unsigned cpu, gpu; } v_t;\n" +
      "static const v_t v = {3, 4, 1, 0, 0, 0};\nconst v_t *dnnl_version(void) { return &v; }\n" +
      "int dnnl_sgemm(void) { return 3; }\n",
  );
  const cc = await new Deno.Command("cc", {
    args: ["-shared", "-fPIC", "-o", join(dir, "libdnnl.so.3"), join(dir, "fake.c")],
  }).output();
  assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
  const v3 = await benchWith({ DMW_DNNL: join(dir, "libdnnl.so.3") });
  assert.match(
    v3.line,
    /^backend: wasm.*libdnnl\.so\.3 is oneDNN 3\.4\.1; this program speaks its 2\.x API/,
  );
  assert.equal(v3.record.backend, "wasm");
});
