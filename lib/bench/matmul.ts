/**
 * Matmul micro-benchmark: 784×256 · 256×512 (a 28×28 feature map through a
 * 256→512 dense layer), plain and with each operand transposed — the shapes
 * a matmul's gradient produces. On wasm it also times tfjs-backend-wasm's
 * original BatchMatMul kernel, which the project replaces, so the speed-up
 * of the replacement is visible.
 */
import * as tf from "@tensorflow/tfjs-core";
import { originalWasmBatchMatMul } from "../runtime/kernels/batch_mat_mul.ts";

/** One benchmark case's timing. */
export interface MatmulRecord {
  /** `matmul-plain`, `matmul-transposeA`, `matmul-transposeB`, or `…-original-wasm`. */
  case: string;
  /** Median milliseconds per product (result read back included). */
  ms_per_iter: number;
  /** Fastest iteration, milliseconds. */
  best_ms: number;
  /** Timed iterations (after warm-up). */
  iters: number;
  /** The tfjs backend that ran it. */
  backend: string;
}

const M = 784;
const K = 256;
const N = 512;

/** Runs `step` `warmup` times untimed, then `iters` times timed; ms stats. */
function time(step: () => void, warmup: number, iters: number): { median: number; best: number } {
  for (let i = 0; i < warmup; i++) step();
  const ms: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    step();
    ms.push(performance.now() - t0);
  }
  ms.sort((p, q) => p - q);
  return { median: ms[Math.floor(ms.length / 2)], best: ms[0] };
}

/**
 * Times 784×256·256×512 plain, transposeA and transposeB on the current
 * backend (and, on wasm, through the original tfjs-backend-wasm kernel).
 *
 * @param iters timed iterations per case, after 3 warm-up runs.
 * @returns one record per case.
 */
export function benchMatmul(iters = 10): Promise<MatmulRecord[]> {
  const backend = tf.getBackend();
  const a = tf.randomNormal([M, K]) as tf.Tensor2D; // [784, 256]
  const b = tf.randomNormal([K, N]) as tf.Tensor2D; // [256, 512]
  const aT = tf.transpose(a); // [256, 784]
  const bT = tf.transpose(b); // [512, 256]
  const cases: [string, tf.Tensor2D, tf.Tensor2D, boolean, boolean][] = [
    ["matmul-plain", a, b, false, false],
    ["matmul-transposeA", aT, b, true, false],
    ["matmul-transposeB", a, bT, false, true],
  ];
  const records: MatmulRecord[] = [];
  const record = (name: string, step: () => void) => {
    const { median, best } = time(step, 3, iters);
    records.push({ case: name, ms_per_iter: median, best_ms: best, iters, backend });
  };
  for (const [name, x, y, tA, tB] of cases) {
    record(name, () => {
      const out = tf.matMul(x, y, tA, tB); // [784, 512]
      out.dataSync();
      out.dispose();
    });
  }
  if (backend === "wasm") {
    const original = originalWasmBatchMatMul().kernelFunc;
    const kernelBackend = tf.backend();
    for (const [name, x, y, tA, tB] of cases.slice(1)) {
      record(`${name}-original-wasm`, () => {
        const out = original({
          inputs: { a: x, b: y },
          backend: kernelBackend,
          attrs: { transposeA: tA, transposeB: tB },
        }) as tf.TensorInfo; // [784, 512]
        kernelBackend.readSync(out.dataId);
        kernelBackend.disposeData(out.dataId);
      });
    }
  }
  tf.dispose([a, b, aT, bT]);
  return Promise.resolve(records);
}
