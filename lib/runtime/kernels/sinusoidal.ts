/**
 * DDPM's sinusoidal time embedding [cos(t·f), sin(t·f)] as one wasm kernel
 * with a row cache. tfjs-backend-wasm's Sin and Cos cost about 25 ns a
 * value (1.6 ms each on [1024, 64], a tenth of the 2-D DDPM's training
 * step), and V8's Math.sin more; but a batch holds few distinct timesteps
 * (training draws integers below T, a sampler uses one t a step), so each
 * distinct t's row is computed once and copied after. The values are the
 * tf ops' own: frequencies and angles rounded to float32 as tfjs computes
 * them, then the sine and cosine of that float32 angle.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { KernelMaker } from "./install.ts";
import "@tensorflow/tfjs-backend-wasm";
import type { WasmBackend } from "./kernel_util.ts";

/** Kernel name: input t [B]; attribute dim (even); output [B, dim]. */
export const SINUSOIDAL = "DmwSinusoidal";

/** Rows kept per embedding width before the cache starts again. */
const CACHE_ROWS = 16384;

/** f_i = 10000^(−i/half) in float32, as the tf ops compute it. */
export function sinusoidalFrequencies(dim: number): Float32Array {
  const half = dim / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp(-Math.log(10000) * i / half);
  return freqs;
}

const caches = new Map<number, { freqs: Float32Array; rows: Map<number, Float32Array> }>();

/** The embedding row of one t: [cos(t·f), sin(t·f)] with t·f rounded to float32. */
function row(t: number, dim: number): Float32Array {
  let c = caches.get(dim);
  if (!c) caches.set(dim, c = { freqs: sinusoidalFrequencies(dim), rows: new Map() });
  let r = c.rows.get(t);
  if (r) return r;
  const half = dim / 2;
  r = new Float32Array(dim);
  for (let i = 0; i < half; i++) {
    const angle = Math.fround(t * c.freqs[i]);
    r[i] = Math.cos(angle);
    r[half + i] = Math.sin(angle);
  }
  if (c.rows.size >= CACHE_ROWS) c.rows.clear();
  c.rows.set(t, r);
  return r;
}

/** This file's wasm kernel, for {@link installKernels}. */
export const WASM_SINUSOIDAL: Record<string, KernelMaker> = {
  [SINUSOIDAL]: () => (args: Parameters<tf.KernelFunc>[0]) => {
    const { t } = args.inputs as { t: tf.TensorInfo };
    const { dim } = args.attrs as unknown as { dim: number };
    if (t.shape.length !== 1 || dim % 2 !== 0) {
      throw new Error(`${SINUSOIDAL}: wants t [B] and an even dim, got [${t.shape}] and ${dim}`);
    }
    const backend = args.backend as WasmBackend;
    const out = backend.makeOutput([t.shape[0], dim], "float32");
    // Views only after the last allocation; int32 t is read as integers.
    const ts = backend.readSync(t.dataId) as Float32Array | Int32Array;
    const o = backend.typedArrayFromHeap(out);
    for (let b = 0; b < ts.length; b++) o.set(row(Math.fround(ts[b]), dim), b * dim);
    return out;
  },
};
