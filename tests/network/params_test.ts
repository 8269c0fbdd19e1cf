import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { resolveConfig } from "../../lib/models/config.ts";
import { Ddpm, DDPM_KEYS } from "../../lib/models/ddpm.ts";
import { countParams } from "../../lib/network/layers.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { useBackend } from "../helpers.ts";

// The PyTorch reference's parameter counts (README, Benchmarks), so that
// `deno task bench` times the same models as the reference.
for (const [data, expected] of [["8gaussians", 198_530], ["mnist", 732_129]] as const) {
  Deno.test(`network: the ${data} DDPM network has the reference's ${expected} parameters`, async () => {
    await useBackend("cpu");
    const model = new Ddpm({ model: "ddpm", data, ...resolveConfig(DDPM_KEYS, {}) });
    const w = model.init(new Rng(0));
    assert.equal(countParams(w), expected);
    tf.dispose(Object.values(w));
    model.dispose();
  });
}
