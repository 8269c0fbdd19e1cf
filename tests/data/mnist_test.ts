import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { loadMnist, mnistDir, mnistToFloat, parseIdx, readIdx } from "../../lib/data/mnist.ts";

Deno.test("MNIST train and test splits: sizes, shapes, pixel range, plausible label histogram", () => {
  for (const [split, n] of [["train", 60000], ["test", 10000]] as const) {
    const m = loadMnist(split);
    assert.equal(m.n, n);
    assert.equal(m.height, 28);
    assert.equal(m.width, 28);
    assert.equal(m.images.length, n * 784);
    assert.equal(m.labels.length, n);
    let max = 0;
    let sum = 0;
    for (const p of m.images) {
      if (p > max) max = p;
      sum += p;
    }
    assert.equal(max, 255);
    const mean = sum / m.images.length;
    assert.ok(mean > 30 && mean < 36, `mean pixel ${mean} (MNIST's is ≈ 33)`);
    const hist = new Array(10).fill(0);
    for (const l of m.labels) {
      assert.ok(l < 10, `label ${l}`);
      hist[l]++;
    }
    for (let d = 0; d < 10; d++) {
      assert.ok(hist[d] > 0.08 * n && hist[d] < 0.12 * n, `${split}: ${hist[d]} of digit ${d}`);
    }
  }
  // The well-known first labels of each split.
  assert.deepEqual([...loadMnist("train").labels.subarray(0, 5)], [5, 0, 4, 1, 9]);
  assert.deepEqual([...loadMnist("test").labels.subarray(0, 5)], [7, 2, 1, 0, 4]);
});

Deno.test("loadMnist is cached in-process", () => {
  assert.equal(loadMnist("test"), loadMnist("test"));
  assert.equal(loadMnist("test").images, loadMnist("test").images);
});

Deno.test("mnistToFloat scales to [-1, 1] for the chosen images in order", () => {
  const m = loadMnist("test");
  const x = mnistToFloat(m.images, [3, 0]);
  assert.equal(x.length, 2 * 784);
  for (let p = 0; p < 784; p++) {
    assert.equal(x[p], Math.fround(m.images[3 * 784 + p] / 127.5 - 1));
    assert.equal(x[784 + p], Math.fround(m.images[p] / 127.5 - 1));
  }
  const all = mnistToFloat(m.images, Array.from({ length: 100 }, (_, i) => i));
  assert.equal(Math.min(...all), -1);
  assert.equal(Math.max(...all), 1);
  assert.throws(() => mnistToFloat(m.images, [10000]), /index 10000 outside 0..9999/);
});

/** IDX bytes: a magic number, big-endian dims, then `payload` bytes 0, 1, 2, …. */
function idx(magic: number, dims: number[], payload: number): Uint8Array {
  const b = new Uint8Array(4 + 4 * dims.length + payload);
  const v = new DataView(b.buffer);
  v.setUint32(0, magic, false);
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < payload; i++) b[4 + 4 * dims.length + i] = i;
  return b;
}

Deno.test("parseIdx reads big-endian dims and the payload", () => {
  const f = parseIdx(idx(0x00000802, [2, 3], 6), "x.idx");
  assert.deepEqual(f.dims, [2, 3]);
  assert.deepEqual([...f.data], [0, 1, 2, 3, 4, 5]);
  const real = readIdx(join(mnistDir(), "t10k-labels-idx1-ubyte"));
  assert.deepEqual(real.dims, [10000]);
});

Deno.test("corrupted IDX headers are rejected, naming the file", () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-idx-" });
  const bad = (name: string, bytes: Uint8Array, re: RegExp) => {
    const path = join(dir, name);
    fs.writeFileSync(path, bytes);
    assert.throws(() => readIdx(path), (e: Error) => {
      assert.ok(e.message.startsWith(path), e.message);
      assert.match(e.message, re);
      return true;
    });
  };
  bad("magic", idx(0x12340803, [1, 28, 28], 784), /magic 0x12340803/);
  bad("type", idx(0x00000d03, [1, 28, 28], 784), /not an unsigned-byte IDX file/);
  bad("rank", idx(0x00000809, [1], 0), /bad IDX rank 9/);
  bad("truncated", idx(0x00000803, [1], 0), /header of rank 3 truncated/);
  bad("short", idx(0x00000803, [2, 28, 28], 784), /2×28×28 = 1568 bytes, the file holds 784/);
  bad("tiny", new Uint8Array([0, 0, 8]), /only 3 bytes/);
  // A real file with one header byte flipped.
  const real = new Uint8Array(fs.readFileSync(join(mnistDir(), "t10k-labels-idx1-ubyte")));
  real[7] ^= 1;
  bad("flipped", real, /IDX header says/);
  assert.throws(() => readIdx(join(dir, "absent")), new RegExp(`${dir}/absent: missing`));
});
