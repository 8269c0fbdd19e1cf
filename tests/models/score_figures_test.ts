import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import { resolveConfig } from "../../lib/models/config.ts";
import { SCORE_KEYS, ScoreModel } from "../../lib/models/score.ts";
import { scoreFigures } from "../../lib/models/score_figures.ts";
import type { Weights } from "../../lib/network/layers.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { useBackend } from "../helpers.ts";

await useBackend("wasm");

/** A small score model (8 channels, two levels, attention at 14×14). */
const config = () => ({
  model: "score",
  data: "mnist",
  ...resolveConfig(SCORE_KEYS, { ch: 8, mults: [1, 2], attn_res: [14], heads: 2 }),
});

Deno.test("scoreFigures writes the forward, reverse and attention figures", async () => {
  const model = new ScoreModel(config());
  const weights: Weights = model.init(new Rng(6));
  const dir = Deno.makeTempDirSync();
  const paths = await scoreFigures({ model, weights }, dir, { steps: 4, frames: 3, heads: 1 });
  assert.ok(paths.includes(join(dir, "forward.png")) && paths.includes(join(dir, "reverse.png")));
  assert.ok(paths.some((p) => p.endsWith("attn_mid_cross_head0.png")));
  paths.forEach((p) => assert.ok(fs.statSync(p).size > 100, p));
  fs.rmSync(dir, { recursive: true });
  tf.dispose(Object.values(weights));
});
