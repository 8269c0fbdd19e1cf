/**
 * `deno task bench`: the benchmark cases (README, Benchmarks), one JSON line each, in
 * the form of the PyTorch reference (`case`, `ms_per_iter`, `iters`,
 * `params`) plus the backend, the tensor count drift and peak bytes. A train
 * iteration is the trainer's own step (t and noise drawn, forward diffusion,
 * loss, backward, Adam) with the loss read back, as `.item()` does there.
 */
import * as tf from "@tensorflow/tfjs-core";
import { resolveConfig } from "../models/config.ts";
import type { RunConfig } from "../models/model.ts";
import { modelEntry } from "../models/registry.ts";
import { train } from "../trainer/trainer.ts";
import { Ddpm, DDPM_KEYS } from "../models/ddpm.ts";
import { countParams } from "../network/layers.ts";
import { type BackendName, checkBackend, initBackend } from "../runtime/backend.ts";
import { didYouMean } from "../runtime/text.ts";
import type { BenchCaseName } from "../bench/cases.ts";
import { Rng } from "../runtime/rng.ts";
import { Adam } from "../trainer/optim.ts";
import { trainStep } from "../trainer/trainer.ts";
import { benchMatmul } from "../bench/matmul.ts";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { loadClassifier } from "../metrics/classifier.ts";
import { mnistReference } from "../metrics/images.ts";
import { computeMetric } from "../metrics/suite.ts";
import { runSweep } from "../sweep/commands.ts";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startPostgres } from "../store/throwaway.ts";

/** One benchmark result line. */
export interface BenchRecord {
  case: string;
  ms_per_iter: number;
  iters: number;
  params?: number;
  backend: string;
  /** Tensors alive after the timed iterations minus before (0 = no leak). */
  tensor_drift?: number;
  /**
   * Peak bytes of tensors during one profiled iteration (tf.profile's
   * peakBytes: tensors sharing data are each counted in full).
   */
  peak_bytes?: number;
  /** Size of the wasm heap at the end (it only grows: the backend's high-water mark). */
  heap_bytes?: number;
  /** Resident set size of the process at the end. */
  rss_bytes?: number;
  /** memory-1000: numTensors at the first and last logging step of each model's 1,000 steps. */
  models?: Record<string, { tensors_at_50: number; tensors_at_1000: number; ms_per_step: number }>;
  /** The FID found (fid-mnist10k: training images against the test set). */
  fid?: number;
  /** sweep-concurrency: wall-clock seconds at concurrency 1 and 2, and their ratio. */
  seconds_c1?: number;
  seconds_c2?: number;
  /** sweep-workers: wall-clock seconds with one and with two workers (ratio: two over one). */
  seconds_w1?: number;
  seconds_w2?: number;
  ratio?: number;
  /**
   * With `--profile`: the kernels of one training step by total time (ms,
   * calls), the 15 slowest; the backend's own timer (GPU timestamps on WebGPU
   * where the adapter offers them).
   */
  kernel_ms?: Record<string, { ms: number; calls: number }>;
  /** Set when the case ran at {@link DRY_RUN}'s sizes: it checks the path, its times compare with nothing. */
  dry_run?: true;
}

/**
 * What `--dry-run` shrinks each case to: the same code path end to end
 * (warm-up, timing, the tensor drift, the profile) on sizes a software
 * adapter such as llvmpipe gets through in minutes.
 */
export const DRY_RUN = {
  "mlp-toy": { batch: 64, iters: 2 },
  "mnist-unet": { batch: 2, iters: 1 },
  "sample-toy-ddpm1000": { n: 64, steps: 10 },
  "sample-mnist-ddim50": { n: 2, steps: 2 },
} as const;

/** The four cases PyTorch's reference script also runs (README, Benchmarks). */
export const REFERENCE_CASES = Object.keys(DRY_RUN);

function ddpm(data: string, batch: number): Ddpm {
  const config = {
    model: "ddpm",
    data,
    ...resolveConfig(DDPM_KEYS, {
      batch,
      lr: 1e-3,
      grad_clip: 0,
      ema: [],
      T: 1000,
      schedule: "linear",
    }),
  };
  return new Ddpm(config);
}

async function timeTrain(
  name: string,
  data: string,
  batch: number,
  iters: number,
): Promise<BenchRecord> {
  const model = ddpm(data, batch);
  const rng = new Rng(0);
  const init = model.init(rng);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `bench-${name}/${k}`);
  tf.dispose(Object.values(init));
  const adam = new Adam(params);
  const once = async (step: number) => {
    const r = trainStep(model, params, adam, rng, step, 1e-3, 0);
    await r.loss.data();
    tf.dispose([r.loss, r.perSample]);
  };
  for (let i = 0; i < 2; i++) await once(i);
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await once(2 + i);
  const ms = (performance.now() - t0) / iters;
  const drift = tf.memory().numTensors - before;
  const profile = await tf.profile(() => once(2 + iters));
  const peak = profile.peakBytes;
  const params_ = countParams(params);
  adam.dispose();
  Object.values(params).forEach((v) => v.dispose());
  model.dispose();
  return {
    case: name,
    ms_per_iter: round(ms),
    iters,
    params: params_,
    ...dryMark(),
    ...(profiling ? { kernel_ms: kernelTimes(profile.kernels) } : {}),
    backend: backendName,
    tensor_drift: drift,
    peak_bytes: peak,
    ...processMemory(),
  };
}

/** The wasm heap's size (when on wasm) and the process's resident set. */
function processMemory(): { heap_bytes?: number; rss_bytes: number } {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm;
  return { heap_bytes: wasm?.HEAPU8.buffer.byteLength, rss_bytes: Deno.memoryUsage().rss };
}

/** Small configurations of every model of the zoo, for memory-1000. */
const MEMORY_RUNS: { name: string; model: string; data: string; set: RunConfig }[] = [
  { name: "ddpm-mlp", model: "ddpm", data: "8gaussians", set: {} },
  { name: "ddpm-unet", model: "ddpm", data: "mnist", set: { ch: 8, batch: 8 } },
  {
    name: "score",
    model: "score",
    data: "mnist",
    set: { ch: 8, mults: [1, 2], attn_res: [14], heads: 2, batch: 8 },
  },
  { name: "d3pm", model: "d3pm", data: "mnist", set: { ch: 8, batch: 8 } },
  { name: "tabddpm", model: "tabddpm", data: "penguins", set: {} },
];

/**
 * 1,000 steps of each model through the real trainer (EMA, logging every 50
 * steps, checkpoints every 500), recording tf.memory().numTensors at each
 * logging step: the counts at steps 50 and 1,000 must be equal.
 */
async function memoryRuns(): Promise<BenchRecord> {
  const models: NonNullable<BenchRecord["models"]> = {};
  const t0 = performance.now();
  for (const r of MEMORY_RUNS) {
    const dir = Deno.makeTempDirSync({ prefix: `dmw-bench-${r.name}-` });
    const entry = modelEntry(r.model);
    const config = {
      model: r.model,
      data: r.data,
      ...resolveConfig(entry.keys, { ...r.set, steps: 1000 }),
    };
    const counts = new Map<number, number>();
    const started = performance.now();
    try {
      await train({
        runDir: dir,
        entry,
        config,
        onProgress: (p) => counts.set(p.step, tf.memory().numTensors),
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    models[r.name] = {
      tensors_at_50: counts.get(50)!,
      tensors_at_1000: counts.get(1000)!,
      ms_per_step: round((performance.now() - started) / 1000),
    };
  }
  const leaks = Object.entries(models).filter(([, m]) => m.tensors_at_1000 !== m.tensors_at_50);
  if (leaks.length) {
    throw new Error(`memory-1000: numTensors grew in ${leaks.map(([k]) => k).join(", ")}`);
  }
  return {
    case: "memory-1000",
    ms_per_iter: round(performance.now() - t0),
    iters: MEMORY_RUNS.length,
    backend: backendName,
    tensor_drift: 0,
    models,
    ...processMemory(),
  };
}

async function timeSample(
  name: string,
  data: string,
  n: number,
  sampler: string,
  steps: number,
): Promise<BenchRecord> {
  const model = ddpm(data, 1);
  const w = model.init(new Rng(0));
  const go = () => model.sample(w, { n, sampler, steps, clip: "none" }, new Rng(1));
  await go(); // warm-up, as the reference does
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  await go();
  const ms = performance.now() - t0;
  const drift = tf.memory().numTensors - before;
  const params = countParams(w);
  tf.dispose(Object.values(w));
  model.dispose();
  return {
    case: name,
    ms_per_iter: round(ms),
    iters: 1,
    params,
    ...dryMark(),
    backend: backendName,
    tensor_drift: drift,
  };
}

/**
 * FID of 10,000 MNIST images as `eval` computes it, sampling not counted:
 * classifier features, mean and covariance, the Fréchet distance to the test
 * set's (cached) statistics, and the 10-resample bootstrap spread. The
 * "samples" are the first 10,000 training images.
 */
async function timeFid(): Promise<BenchRecord> {
  const clf = await loadClassifier();
  mnistReference(clf); // the per-machine reference, as in a sweep after its first eval
  const { images } = loadMnist("train");
  const n = 10000;
  const x = mnistToFloat(images, Int32Array.from({ length: n }, (_, i) => i));
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  const r = await computeMetric(
    "fid",
    { kind: "image", images: x, n, height: 28, width: 28, channels: 1 },
    { data: "mnist", seed: 0 },
  );
  const ms = performance.now() - t0;
  return {
    case: "fid-mnist10k",
    ms_per_iter: round(ms),
    iters: 1,
    backend: backendName,
    tensor_drift: tf.memory().numTensors - before,
    fid: round(r.value),
  };
}

/** Four equal training jobs (and their evaluations): the sweep-concurrency case's experiment. */
const EQUAL_JOBS = `name: bench-concurrency
model: ddpm
data: 8gaussians
steps: 1500
ema: []
metrics: [mmd]
n_eval: 500
sample_steps: 50
sampler: ddim
parameters:
  seed:
    values: [0, 1, 2, 3]
`;

/**
 * The same sweep of four equal jobs in child processes at concurrency 1 and
 * 2, each in a fresh store; `ms_per_iter` is the concurrency-2 wall clock.
 * Jobs get the executor's default threads (cores / concurrency).
 */
async function timeSweepConcurrency(): Promise<BenchRecord> {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-bench-sweep-" });
  const file = join(dir, "bench.yaml");
  fs.writeFileSync(file, EQUAL_JOBS);
  const seconds: number[] = [];
  try {
    for (const concurrency of [1, 2]) {
      const runsDir = join(dir, `c${concurrency}`);
      const t0 = performance.now();
      const r = await runSweep({
        file,
        concurrency,
        noTui: true,
        runsDir,
        storePath: join(runsDir, "store.sqlite"),
        onEvent: () => {},
      });
      if (r.failed) throw new Error(`sweep-concurrency: ${r.failed} jobs failed at ${concurrency}`);
      seconds.push((performance.now() - t0) / 1000);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    case: "sweep-concurrency",
    ...timedTwice(seconds),
    seconds_c1: round(seconds[0]),
    seconds_c2: round(seconds[1]),
  };
}

/** The record of a case timed once with one and once with two at a time: ms_per_iter the second. */
function timedTwice(
  seconds: number[],
): Pick<BenchRecord, "ms_per_iter" | "iters" | "backend" | "ratio"> {
  return {
    ms_per_iter: round(seconds[1] * 1000),
    iters: 1,
    backend: backendName,
    ratio: round(seconds[1] / seconds[0]),
  };
}

/**
 * `experiments/two_machines.yaml` (README, "One sweep on several machines")
 * on a throwaway PostgreSQL cluster, a fresh database each time, coordinated
 * here (no local worker) and run by one, then two `deno task worker`
 * processes (`--concurrency 1 --threads 1`, each its own runs folder, as two
 * machines would be); the wall clock runs from the workers' start to the
 * sweep's end. `ms_per_iter` is the two-worker time. Needs PostgreSQL
 * (`.ci/run` installs it).
 */
async function timeSweepWorkers(): Promise<BenchRecord> {
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  const file = fileURLToPath(new URL("../../experiments/two_machines.yaml", import.meta.url));
  const pg = await startPostgres();
  const dir = Deno.makeTempDirSync({ prefix: "dmw-bench-workers-" });
  const seconds: number[] = [];
  try {
    for (const n of [1, 2]) {
      const url = await pg.newDatabase();
      const t0 = performance.now();
      const workers = Array.from({ length: n }, (_, i) =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", main, "worker", "--store", url, "--concurrency", "1", "--threads"]
            .concat(["1", "--runs", join(dir, `w${n}-${i}`)]),
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).spawn());
      try {
        const r = await runSweep({
          file,
          storePath: url,
          localWorker: false,
          noTui: true,
          runsDir: join(dir, `sweep${n}`),
          onEvent: () => {},
        });
        if (r.failed) throw new Error(`sweep-workers: ${r.failed} jobs failed with ${n} workers`);
        seconds.push((performance.now() - t0) / 1000);
      } finally {
        for (const w of workers) {
          try {
            w.kill("SIGINT");
          } catch {
            // already gone
          }
        }
        await Promise.all(workers.map((w) => w.status));
      }
    }
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    case: "sweep-workers",
    ...timedTwice(seconds),
    seconds_w1: round(seconds[0]),
    seconds_w2: round(seconds[1]),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

let dry = false;
/** The backend as initBackend names it (`onednn` runs on tfjs's wasm backend). */
let backendName = "";
let profiling = false;

/** Kernel times of a tf.profile, summed by kernel name: the 30 largest. */
export function kernelTimes(
  kernels: { name: string; kernelTimeMs: number | { error: string } | Promise<unknown> }[],
): Record<string, { ms: number; calls: number }> {
  const by = new Map<string, { ms: number; calls: number }>();
  for (const k of kernels) {
    const e = by.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    e.calls++;
    by.set(k.name, e);
  }
  return Object.fromEntries(
    [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30)
      .map(([k, v]) => [k, { ms: round(v.ms), calls: v.calls }]),
  );
}

function dryMark(): { dry_run?: true } {
  return dry ? { dry_run: true } : {};
}

/** The benchmark cases by name. */
export const BENCH_CASES: Record<BenchCaseName, () => Promise<BenchRecord | BenchRecord[]>> = {
  "mlp-toy": () => {
    const s = dry ? DRY_RUN["mlp-toy"] : { batch: 1024, iters: 50 };
    return timeTrain("mlp-toy", "8gaussians", s.batch, s.iters);
  },
  "mnist-unet": () => {
    const s = dry ? DRY_RUN["mnist-unet"] : { batch: 64, iters: 5 };
    return timeTrain("mnist-unet", "mnist", s.batch, s.iters);
  },
  "sample-toy-ddpm1000": () => {
    const s = dry ? DRY_RUN["sample-toy-ddpm1000"] : { n: 1024, steps: 1000 };
    return timeSample("sample-toy-ddpm1000", "8gaussians", s.n, "ddpm", s.steps);
  },
  "sample-mnist-ddim50": () => {
    const s = dry ? DRY_RUN["sample-mnist-ddim50"] : { n: 64, steps: 50 };
    return timeSample("sample-mnist-ddim50", "mnist", s.n, "ddim", s.steps);
  },
  "fid-mnist10k": timeFid,
  "sweep-concurrency": timeSweepConcurrency,
  "memory-1000": memoryRuns,
  "matmul": async () => (await benchMatmul()) as BenchRecord[],
  // Last: it needs PostgreSQL, which the other cases do not.
  "sweep-workers": timeSweepWorkers,
};

/**
 * Runs the cases named in `opts.case` (comma-separated), or by default every
 * case on the CPU backends and {@link REFERENCE_CASES} on WebGPU (the others
 * measure the CPU machine: threads, the sweep's processes), printing one JSON
 * line per result. `dryRun` runs them at {@link DRY_RUN}'s sizes.
 */
export async function benchCommand(
  opts: { case?: string; backend: BackendName; dryRun?: boolean; profile?: boolean },
): Promise<void> {
  const names = opts.case?.split(",").map((s) => s.trim()).filter((s) => s);
  for (const name of names ?? []) {
    if (!(name in BENCH_CASES)) {
      throw new Error(
        `unknown bench case "${name}"${didYouMean(name, Object.keys(BENCH_CASES))} (${
          Object.keys(BENCH_CASES).join(", ")
        })`,
      );
    }
    if (opts.dryRun && !REFERENCE_CASES.includes(name)) {
      throw new Error(`--dry-run has sizes for ${REFERENCE_CASES.join(", ")} only, not "${name}"`);
    }
  }
  const info = await initBackend(opts.backend);
  backendName = info.name;
  dry = opts.dryRun ?? false;
  profiling = opts.profile ?? false;
  const run = names ??
    (info.name === "webgpu" || dry ? REFERENCE_CASES : Object.keys(BENCH_CASES));
  for (const name of run) {
    const r = await BENCH_CASES[name as BenchCaseName]();
    await checkBackend(true);
    for (const rec of Array.isArray(r) ? r : [r]) console.log(JSON.stringify(rec));
  }
}
