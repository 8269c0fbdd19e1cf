/**
 * The short MNIST DDPM run the zoo's tests and the oneDNN path's tests both
 * hold to a quality threshold: the documented run's UNet at an eighth of its
 * width (ch 8), 400 steps of batch 16, sampled with 20-step DDIM from its
 * EMA weights; 200 samples scored by FID and the classifier Inception Score
 * against an untrained network's. Runs on the current backend.
 */
import { openRun } from "../../lib/commands/run.ts";
import { computeMetric } from "../../lib/metrics/suite.ts";
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { train } from "../../lib/trainer/trainer.ts";

/** FID and IS of the trained and the untrained network's 200 samples. */
export async function mnistShortRun(): Promise<
  { trained: { fid: number; is: number }; untrained: { fid: number; is: number } }
> {
  const config = (steps: number, lr: number) => ({
    model: "ddpm",
    data: "mnist",
    ...resolveConfig(DDPM_ENTRY.keys, {
      steps,
      lr,
      ch: 8,
      batch: 16,
      warmup: 50,
      ema: [0.999],
      checkpoint_every: steps,
    }),
  });
  const scores = async (dir: string, ema: string) => {
    const run = await openRun(dir, { ema });
    try {
      const s = await run.model.sample(
        run.weights,
        { n: 200, sampler: "ddim", steps: 20 },
        new Rng(1),
      );
      const opts = { data: "mnist", seed: 0 };
      return {
        fid: (await computeMetric("fid", s, opts)).value,
        is: (await computeMetric("is", s, opts)).value,
      };
    } finally {
      run.close();
    }
  };
  const dir = Deno.makeTempDirSync({ prefix: "dmw-ddpm-mnist-" });
  const untrainedDir = Deno.makeTempDirSync({ prefix: "dmw-ddpm-mnist-untrained-" });
  try {
    await train({ runDir: dir, entry: DDPM_ENTRY, config: config(400, 2e-3) });
    await train({ runDir: untrainedDir, entry: DDPM_ENTRY, config: config(1, 0) });
    return { trained: await scores(dir, "0.999"), untrained: await scores(untrainedDir, "raw") };
  } finally {
    Deno.removeSync(dir, { recursive: true });
    Deno.removeSync(untrainedDir, { recursive: true });
  }
}
