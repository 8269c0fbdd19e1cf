/**
 * Named tensors on disk: one float32 blob plus an index of names, shapes and
 * offsets. Used by checkpoints and by the cached feature network.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";

/** A tensor's place in the blob. */
export interface TensorEntry {
  name: string;
  shape: number[];
  offset: number;
}

/** Writes the tensors' values to `path` (fsync'd); returns the index to keep beside it. */
export async function writeTensors(
  path: string,
  tensors: Record<string, tf.Tensor>,
): Promise<TensorEntry[]> {
  const entries: TensorEntry[] = [];
  const chunks: Float32Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const data = (await t.data()) as Float32Array;
    entries.push({ name, shape: t.shape, offset });
    chunks.push(data);
    offset += data.length;
  }
  const all = new Float32Array(offset);
  let pos = 0;
  for (const c of chunks) {
    all.set(c, pos);
    pos += c.length;
  }
  writeFileDurably(path, new Uint8Array(all.buffer));
  return entries;
}

/**
 * Writes `data` to `path` and fsyncs it before returning, so a rename after
 * it cannot survive a power loss without the data. Errors name the path.
 */
export function writeFileDurably(path: string, data: Uint8Array | string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, "w", 0o644);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    for (let off = 0; off < bytes.length;) off += fs.writeSync(fd, bytes, off);
    fs.fsyncSync(fd);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** fsyncs a directory, so the names created or renamed in it are on disk. */
export function syncDirectory(path: string): void {
  const fd = fs.openSync(path, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads tensors written by {@link writeTensors}; the caller owns them. */
export function readTensors(path: string, entries: TensorEntry[]): Record<string, tf.Tensor> {
  const bytes = fs.readFileSync(path);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const out: Record<string, tf.Tensor> = {};
  for (const e of entries) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.offset + n > all.length) {
      throw new Error(`${path}: truncated (${e.name} runs past the end)`);
    }
    out[e.name] = tf.tensor(all.slice(e.offset, e.offset + n), e.shape);
  }
  return out;
}
