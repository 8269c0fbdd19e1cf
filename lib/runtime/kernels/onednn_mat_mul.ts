/**
 * BatchMatMul and _FusedMatMul for the wasm backend on oneDNN's sgemm
 * (lib/runtime/onednn.ts), computing on the wasm heap in place. One sgemm per
 * batch; transposed operands are sgemm's own flags, so the explicit
 * transposes of the wasm kernels (batch_mat_mul.ts) are gone. _FusedMatMul
 * fills the output's rows with the bias and lets sgemm add the product
 * (β = 1), then runs ReLU as oneDNN's eltwise pass in place; any other bias
 * shape or activation goes to the kernel this one replaced, as does a batch
 * broadcast other than 1 against n.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { Onednn } from "../onednn.ts";
import type { WasmBackend } from "./kernel_util.ts";

type Args = Parameters<tf.KernelFunc>[0];

interface Plan {
  m: number;
  n: number;
  k: number;
  /** Batch count of the output, and whether a and b step through it (else they repeat). */
  batch: number;
  stepA: boolean;
  stepB: boolean;
  outShape: number[];
}

/** The product's sizes, or undefined when this kernel does not take the case. */
function planOf(a: tf.TensorInfo, b: tf.TensorInfo, ta: boolean, tb: boolean): Plan | undefined {
  if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const ra = a.shape.length, rb = b.shape.length;
  if (ra < 2 || rb < 2) return undefined;
  const m = ta ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = tb ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) {
    throw new Error(`BatchMatMul: inner sizes ${k} and ${kb} differ ([${a.shape}] · [${b.shape}])`);
  }
  const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
  const outBatch = tf.backend_util.assertAndGetBroadcastShape(batchA, batchB);
  const size = (s: number[]) => s.reduce((p, q) => p * q, 1);
  const batch = size(outBatch), bA = size(batchA), bB = size(batchB);
  if ((bA !== batch && bA !== 1) || (bB !== batch && bB !== 1)) return undefined;
  return {
    m,
    n,
    k,
    batch,
    stepA: bA === batch,
    stepB: bB === batch,
    outShape: [...outBatch, m, n],
  };
}

/**
 * out = a·b (+ bias, each row) per batch on oneDNN: the rows are filled with
 * the bias first and the product added to them. Returns the output.
 */
function multiply(
  dnnl: Onednn,
  backend: WasmBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  ta: boolean,
  tb: boolean,
  p: Plan,
  bias?: tf.TensorInfo,
): tf.TensorInfo {
  const out = backend.makeOutput(p.outShape, "float32");
  // Views only after the last allocation: a growing heap detaches them.
  const A = backend.typedArrayFromHeap(a);
  const B = backend.typedArrayFromHeap(b);
  const C = backend.typedArrayFromHeap(out);
  const { m, n, k } = p;
  if (m === 0 || n === 0) return out;
  if (bias) {
    C.set(backend.typedArrayFromHeap(bias));
    for (let filled = n; filled < C.length; filled *= 2) {
      C.copyWithin(filled, 0, Math.min(filled, C.length - filled));
    }
  }
  if (k === 0) {
    if (!bias) C.fill(0);
    return out;
  }
  for (let i = 0; i < p.batch; i++) {
    const ia = p.stepA ? i : 0, ib = p.stepB ? i : 0;
    dnnl.sgemm(
      ta,
      tb,
      m,
      n,
      k,
      1,
      A.subarray(ia * m * k, (ia + 1) * m * k),
      ta ? m : k,
      B.subarray(ib * k * n, (ib + 1) * k * n),
      tb ? k : n,
      bias ? 1 : 0,
      C.subarray(i * m * n, (i + 1) * m * n),
      n,
    );
  }
  return out;
}

/** Kernel functions on `dnnl`, falling back to `previous` where they do not apply. */
export function onednnMatMulKernels(
  dnnl: Onednn,
  previous: { batchMatMul: tf.KernelFunc; fusedMatMul: tf.KernelFunc },
): { batchMatMul: tf.KernelFunc; fusedMatMul: tf.KernelFunc } {
  const batchMatMul = (args: Args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA = false, transposeB = false } = (args.attrs ?? {}) as {
      transposeA?: boolean;
      transposeB?: boolean;
    };
    const p = planOf(a, b, transposeA, transposeB);
    if (!p) return previous.batchMatMul(args);
    return multiply(dnnl, args.backend as WasmBackend, a, b, transposeA, transposeB, p);
  };
  const fusedMatMul = (args: Args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<
      string,
      tf.TensorInfo | undefined
    >;
    const attrs = (args.attrs ?? {}) as {
      transposeA?: boolean;
      transposeB?: boolean;
      activation?: string;
    };
    const activation = attrs.activation ?? "linear";
    const p = planOf(a!, b!, attrs.transposeA ?? false, attrs.transposeB ?? false);
    const biasFits = !bias || (bias.dtype === "float32" &&
      bias.shape.reduce((x, y) => x * y, 1) === p?.n && bias.shape.at(-1) === p?.n);
    if (
      !p || !biasFits || preluActivationWeights ||
      (activation !== "linear" && activation !== "relu")
    ) {
      return previous.fusedMatMul(args);
    }
    const backend = args.backend as WasmBackend;
    const out = multiply(
      dnnl,
      backend,
      a!,
      b!,
      attrs.transposeA ?? false,
      attrs.transposeB ?? false,
      p,
      bias,
    );
    if (activation === "relu" && p.batch * p.m * p.n > 0) {
      const C = backend.typedArrayFromHeap(out);
      dnnl.relu({ kind: "forward", x: C, y: C });
    }
    return out;
  };
  return { batchMatMul, fusedMatMul };
}

/** oneDNN's matrix products in place of the wasm ones (their fallback), for {@link installKernels}. */
export function onednnMatMulMakers(dnnl: Onednn): Record<string, KernelMaker> {
  const previous = {} as { batchMatMul: tf.KernelFunc; fusedMatMul: tf.KernelFunc };
  const kernels = onednnMatMulKernels(dnnl, previous);
  const take = (name: string, slot: keyof typeof previous): KernelMaker => (current) => {
    if (!current) throw new Error(`the wasm backend has no ${name} kernel`);
    previous[slot] = current.kernelFunc;
    return kernels[slot];
  };
  return {
    [tf.BatchMatMul]: take(tf.BatchMatMul, "batchMatMul"),
    [tf._FusedMatMul]: take(tf._FusedMatMul, "fusedMatMul"),
  };
}
