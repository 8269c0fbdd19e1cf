import assert from "node:assert/strict";
import { decode } from "fast-png";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { labelGrid } from "../../lib/commands/sample.ts";
import { useBackend } from "../helpers.ts";
import { tinyScoreRun } from "./runs.ts";

await useBackend("wasm");

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** Runs `deno task sample` (main.ts) with the given arguments; returns the PNG's size. */
async function sampleCli(args: string[], out: string): Promise<{ width: number; height: number }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "sample", ...args, "--out", out, "--backend", "wasm"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.equal(new TextDecoder().decode(r.stdout).trim(), out);
  const { width, height } = decode(fs.readFileSync(out));
  return { width, height };
}

/** Width (or height) of a grid of k 28-pixel images, scaled 2× with a 2-pixel gutter. */
const side = (k: number) => k * (2 * 28 + 2) + 2;

Deno.test("sample --label 3 --n 16 writes a 4×4 grid; without --label one row per digit", async () => {
  const run = await tinyScoreRun();
  const one = await sampleCli(["--run", run, "--label", "3", "--n", "16"], join(run, "grid.png"));
  assert.deepEqual(one, { width: side(4), height: side(4) });
  const all = await sampleCli(["--run", run, "--n", "30"], join(run, "digits.png"));
  assert.deepEqual(all, { width: side(3), height: side(10) }, "10 rows of 3");
  const uneven = await sampleCli(["--run", run], join(run, "default.png"));
  assert.deepEqual(uneven, { width: side(7), height: side(10) }, "64 samples: rows of 6 or 7");
  fs.rmSync(run, { recursive: true });
});

Deno.test("labelGrid puts each label's samples in its own row", () => {
  const images = new Float32Array(4 * 784).fill(-1);
  images.fill(1, 0, 784); // the one sample of label 5 is white
  const pic = labelGrid({
    kind: "image",
    images,
    n: 4,
    height: 28,
    width: 28,
    channels: 1,
    labels: Int32Array.of(5, 1, 1, 1),
  });
  assert.deepEqual([pic.width, pic.height], [side(3), side(2)]);
  const grey = (x: number, y: number) => pic.rgb[(y * pic.width + x) * 3];
  assert.equal(grey(3, 3), 0, "row 0 (label 1) starts with a black sample");
  assert.equal(grey(3, side(1) + 1), 255, "row 1 (label 5) starts with the white one");
  assert.equal(grey(side(1) + 1, side(1) + 1), 40, "the rest of row 1 is empty");
});
