/** Tiny trained runs for the command tests. */
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { SCORE_ENTRY } from "../../lib/models/score.ts";
import { train } from "../../lib/trainer/trainer.ts";

/**
 * A score-model run of a few training steps of a narrow network (batch 4),
 * sampling with 2 Euler–Maruyama steps by default; returns its directory.
 */
export async function tinyScoreRun(steps = 2): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-score-run-" });
  const config = resolveConfig(SCORE_ENTRY.keys, {
    steps,
    batch: 4,
    ch: 8,
    mults: [1, 2],
    attn_res: [],
    heads: 2,
    sample_steps: 2,
  });
  await train({
    runDir: dir,
    entry: SCORE_ENTRY,
    config: { model: "score", data: "mnist", ...config },
  });
  return dir;
}

/** A DDPM run on 8gaussians of a few steps (T = 50); returns its directory. */
export async function tinyToyRun(steps = 2): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-toy-run-" });
  const config = resolveConfig(DDPM_ENTRY.keys, { steps, batch: 16, T: 50, ema: [] });
  await train({
    runDir: dir,
    entry: DDPM_ENTRY,
    config: { model: "ddpm", data: "8gaussians", ...config },
  });
  return dir;
}
