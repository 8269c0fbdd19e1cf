import assert from "node:assert/strict";
import { decode } from "fast-png";
import * as fs from "node:fs";
import { join } from "node:path";
import { visualizeCommand } from "../../lib/commands/visualize.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { train } from "../../lib/trainer/trainer.ts";
import { useBackend } from "../helpers.ts";
import { tinyScoreRun } from "./runs.ts";

await useBackend("wasm");

Deno.test("visualize --run draws a score run's forward, reverse and attention figures", async () => {
  const run = await tinyScoreRun();
  const out = join(run, "figures");
  const paths = await visualizeCommand({ out, backend: "wasm", run, steps: 10, ema: "raw" });
  for (const name of ["forward", "reverse", "attn_mid_self_head0", "attn_mid_cross_head1"]) {
    assert.ok(paths.includes(join(out, `${name}.png`)), `${name}.png in ${paths.join(", ")}`);
  }
  const reverse = decode(fs.readFileSync(join(out, "reverse.png")));
  const side = 10 * (2 * 28 + 2) + 2; // 10 digits × 10 snapshots
  assert.deepEqual([reverse.width, reverse.height], [side, side]);
  const cross = decode(fs.readFileSync(join(out, "attn_mid_cross_head0.png")));
  assert.ok(cross.height > cross.width, "196 pixel queries × 4 context tokens");
  fs.rmSync(run, { recursive: true });
});

Deno.test("visualize --run refuses a model that draws no figures", async () => {
  const run = Deno.makeTempDirSync({ prefix: "dmw-ddpm-run-" });
  const config = resolveConfig(DDPM_ENTRY.keys, { steps: 2, T: 100, train_size: 2000 });
  await train({
    runDir: run,
    entry: DDPM_ENTRY,
    config: { model: "ddpm", data: "moons", ...config },
  });
  await assert.rejects(
    () => visualizeCommand({ out: join(run, "figures"), backend: "wasm", run }),
    /model ddpm draws no figures/,
  );
  fs.rmSync(run, { recursive: true });
});
