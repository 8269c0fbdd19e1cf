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
  const fd = fs.openSync(path, "w");
  fs.writeSync(fd, new Uint8Array(all.buffer));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return entries;
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
