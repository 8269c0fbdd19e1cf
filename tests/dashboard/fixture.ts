/**
 * A recorded store for the dashboard tests, written through the store API
 * and the real planner so its schema and keys are those of a sweep: sweep
 * "fixture" (ddpm on 8gaussians, mmd) with 24 configurations → 2 training
 * jobs and 24 evaluations. The linear-schedule run is done with its
 * evaluations (one failed, its output stored, one running, the rest done with mmd values and
 * sample CSVs in the store, not on disk); the cosine run is training at step 200 of 400 on
 * another machine ("box-2", WebGPU on an H200) and its evaluations are queued.
 *
 * Run as a script (`deno run -A tests/dashboard/fixture.ts DIR`) it builds
 * the store in DIR and prints its path.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { stringify } from "csv-stringify/sync";
import { sampleToy } from "../../lib/data/toy2d.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { type JobRow, openStore } from "../../lib/store/store.ts";
import { loadExperiment } from "../../lib/sweep/experiment.ts";
import { configRows, type EvalJob, planSweep } from "../../lib/sweep/planner.ts";

/** The experiment the fixture records. */
export const FIXTURE_YAML = `name: fixture
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 400
lr: 0.001
concurrency: 2
parameters:
  schedule: {values: [linear, cosine]}
  sample_steps: {values: [10, 50, 100]}
  sampler: {values: [ddpm, ddim]}
  ema_eval: {values: [raw, 0.999]}
`;

/** The output the failed evaluation left in the store (its file `log`). */
export const FAILED_LOG = [
  "backend: wasm, 2 threads — asked for with --backend wasm",
  "sampling 1000 for mmd 40%",
  "error: Uncaught (in promise) RangeError: fake out of memory at sampling step 37",
].join("\n");

/** What a test needs to know about the recorded store. */
export interface Fixture {
  /** Folder holding everything. */
  dir: string;
  /** The store file. */
  storePath: string;
  /** The experiment file. */
  file: string;
  /** Sweep id. */
  sweepId: number;
  /** The done (linear) and running (cosine) training jobs. */
  train: { done: JobRow; running: JobRow };
  /** The failed evaluation (configuration 1) and the running one (configuration 2). */
  evals: { failed: JobRow; running: JobRow };
}

/** The mmd the fixture records for an evaluation (smaller with more steps, EMA and DDIM). */
export function fixtureMmd(s: EvalJob["settings"]): number {
  const steps = Number(s.sample_steps);
  return Number(
    (0.01 + 0.2 / steps + (s.sampler === "ddim" ? 0 : 0.004) + (s.ema_eval === "raw" ? 0.003 : 0))
      .toFixed(5),
  );
}

/** Builds the recorded store in `dir` (a fresh temporary folder by default). */
export async function buildFixture(
  dir = Deno.makeTempDirSync({ prefix: "dmw-dash-" }),
  opts: {
    /** The sweep's status. @default "running" */
    status?: string;
    /** Another sweep in the same folder's store: its name, and what it adds to every mmd. */
    name?: string;
    offset?: number;
  } = {},
): Promise<Fixture> {
  const file = join(dir, `${opts.name ?? "fixture"}.yaml`);
  fs.writeFileSync(
    file,
    FIXTURE_YAML.replace(/^name: fixture$/m, `name: ${opts.name ?? "fixture"}`),
  );
  const { experiment } = loadExperiment(file);
  const plan = planSweep(experiment);
  const storePath = join(dir, "store.sqlite");
  const store = await openStore(storePath);
  try {
    const sweep = await store.upsertSweep(
      experiment.name,
      file,
      "fixturehash",
      JSON.stringify(experiment),
    );
    await store.setConfigs(sweep.id, configRows(plan));
    const runsDir = join(dir, "runs", experiment.name);
    const trainJobs: JobRow[] = [];
    for (const t of plan.train) {
      trainJobs.push(
        await store.ensureJob(sweep.id, t.key, "train", JSON.stringify(t), join(runsDir, t.key)),
      );
    }
    const evalJobs: JobRow[] = [];
    for (const e of plan.eval) {
      evalJobs.push(
        await store.ensureJob(sweep.id, e.key, "eval", JSON.stringify(e), join(runsDir, e.train)),
      );
    }
    const t0 = Date.parse("2025-01-01T10:00:00Z");
    const iso = (s: number) => new Date(t0 + s * 1000).toISOString();
    const now = Date.now();
    const linear = plan.train.findIndex((t) => t.config.schedule === "linear");
    const [done, running] = linear === 0 ? trainJobs : [trainJobs[1], trainJobs[0]];
    await store.updateJob(done.id, {
      state: "done",
      progress: 1,
      attempts: 1,
      backend: "wasm",
      started: iso(0),
      finished: iso(40),
    });
    await store.updateJob(running.id, {
      state: "running",
      progress: 0.5,
      attempts: 1,
      backend: "webgpu",
      device: "NVIDIA H200",
      host: "box-2",
      pid: 999999,
      started: new Date(now - 20_000).toISOString(),
    });
    for (const [job, last] of [[done, 400], [running, 200]] as const) {
      fs.mkdirSync(job.runDir, { recursive: true });
      fs.writeFileSync(
        join(job.runDir, "events.jsonl"),
        JSON.stringify({ type: "start", step: 0, backend: "wasm", params: 1, time: iso(0) }) + "\n",
      );
      const rows = [];
      for (let step = 10; step <= last; step += 10) {
        const bands = [0.9, 0.5, 0.3, 0.2].map((b) => Number((b * (1 + 40 / step)).toFixed(4)));
        rows.push({
          job: job.id,
          step,
          loss: Number((bands.reduce((a, b) => a + b, 0) / 4).toFixed(4)),
          bands: JSON.stringify(bands),
          lr: 0.001,
          stepsPerSec: 10,
        });
      }
      await store.putMetrics(rows);
    }
    const configIdx = new Map(plan.configs.map((c) => [c.evalKey, c.idx]));
    let failed: JobRow | undefined;
    let runningEval: JobRow | undefined;
    for (const [k, e] of plan.eval.entries()) {
      const job = evalJobs[k];
      if (e.train !== done.key) continue;
      const idx = configIdx.get(e.key);
      if (idx === 1) {
        await store.updateJob(job.id, {
          state: "failed",
          attempts: 2,
          error: "the evaluation printed no metric line",
          started: iso(41),
          finished: iso(42),
        });
        await store.putBytes(job.id, "log", new TextEncoder().encode(FAILED_LOG));
        failed = job;
        continue;
      }
      if (idx === 2) {
        await store.updateJob(job.id, {
          state: "running",
          attempts: 1,
          progress: 0.4,
          pid: 999998,
          backend: "onednn",
          device: "AMD EPYC 7B13, 2 threads",
          host: Deno.hostname(),
          started: new Date(now - 5000).toISOString(),
        });
        runningEval = job;
        continue;
      }
      const value = Number((fixtureMmd(e.settings) + (opts.offset ?? 0)).toFixed(5));
      await store.putEval({
        job: job.id,
        metric: "mmd",
        value,
        n: 1000,
        spread: 0.002,
        extra: JSON.stringify({ step: 400, nfe: Number(e.settings.sample_steps ?? 0) }),
      });
      // Only in the store, as a worker on another machine leaves them: the recorded path is gone.
      const csv = join(done.runDir, "samples", `${e.key}.csv`);
      fs.mkdirSync(join(done.runDir, "samples"), { recursive: true });
      const pts = sampleToy("8gaussians", 400, new Rng(k));
      const rows = Array.from({ length: 400 }, (_, i) => [pts[2 * i], pts[2 * i + 1]]);
      fs.writeFileSync(csv, stringify([["x", "y"], ...rows]));
      await store.putFile(job.id, `samples/${e.key}.csv`, csv);
      await store.putArtifact(job.id, "samples", csv);
      fs.rmSync(csv);
      await store.updateJob(job.id, {
        state: "done",
        progress: 1,
        attempts: 1,
        started: iso(42 + k),
        finished: iso(44 + k),
      });
    }
    await store.setSweepStatus(sweep.id, opts.status ?? "running");
    return {
      dir,
      storePath,
      file,
      sweepId: sweep.id,
      train: { done: (await store.job(done.id))!, running: (await store.job(running.id))! },
      evals: {
        failed: (await store.job(failed!.id))!,
        running: (await store.job(runningEval!.id))!,
      },
    };
  } finally {
    await store.close();
  }
}

if (import.meta.main) console.log((await buildFixture(Deno.args[0])).storePath);
