/**
 * Running one job (lib/sweep/jobrun.ts): the worker contract's arguments,
 * the events file read as it grows, a job's output as a terminal shows it,
 * how an outcome is recorded, and runJob on an SQLite store with the fake
 * worker (fixtures/fake_worker.ts) or a shell script as the child: a
 * training run and an evaluation followed into the store, a crash, a NaN,
 * a timeout, cancel and stop requests, an early stop, a lost claim.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { type JobRow, openStore, type Store } from "../../lib/store/store.ts";
import {
  checkpointStep,
  describeEval,
  evalArgs,
  EventTail,
  type ExecutorUpdate,
  ingestEvents,
  type JobOutcome,
  logLines,
  type RunContext,
  runJob,
  samplesPath,
  settle,
  STOP_REQUESTED,
  trainArgs,
} from "../../lib/sweep/jobrun.ts";
import type { EvalJob, TrainJob } from "../../lib/sweep/planner.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";
import { until } from "../until.ts";

const ESC = String.fromCharCode(27);

const fake = fakeWorker("FAKE_SAMPLES=1");

/** A child that runs `script` in sh with the job's arguments as $1, $2, …. */
const sh = (script: string) => ["sh", "-c", script, "sh"];

const TRAIN: TrainJob = {
  key: "ddpm-8gaussians-abc",
  model: "ddpm",
  data: "8gaussians",
  config: { steps: 100, seed: 3, lr: 0.001, schedule: "cosine", drop: ["a", "b"] },
};

const EVAL: EvalJob = {
  key: "ev1",
  train: TRAIN.key,
  checkpoint: 100,
  settings: { sampler: "ddim", sample_steps: 20 },
  metrics: ["mmd", "energy"],
};

Deno.test("checkpointStep: the step of a checkpoint folder, undefined for anything else", () => {
  assert.equal(checkpointStep("runs/s/k/ckpt/step-00000100"), 100);
  assert.equal(checkpointStep("ckpt/step-00012345/"), 12345);
  assert.equal(checkpointStep("step-7"), 7);
  assert.equal(checkpointStep("ckpt/step-00000100/state.json"), undefined);
  assert.equal(checkpointStep("ckpt/latest"), undefined);
  assert.equal(checkpointStep("ckpt/step-"), undefined);
});

Deno.test("trainArgs: model, data, steps, out and seed as options, every other key as --set JSON", () => {
  assert.deepEqual(trainArgs(TRAIN, "runs/s/k", "auto"), [
    "train",
    "--model",
    "ddpm",
    "--data",
    "8gaussians",
    "--steps",
    "100",
    "--out",
    "runs/s/k",
    "--seed",
    "3",
    "--set",
    "lr=0.001",
    "--set",
    'schedule="cosine"',
    "--set",
    'drop=["a","b"]',
  ]);
  const noSeed = { ...TRAIN, config: { steps: 50 } };
  assert.deepEqual(trainArgs(noSeed, "d", "wasm"), [
    "train",
    "--model",
    "ddpm",
    "--data",
    "8gaussians",
    "--steps",
    "50",
    "--out",
    "d",
    "--seed",
    "0",
    "--backend",
    "wasm",
  ]);
});

Deno.test("evalArgs: each setting that is set as its option; eval seed 0 unless given", () => {
  assert.deepEqual(evalArgs(EVAL, "run", "run/samples/ev1.png", "auto"), [
    "eval",
    "--run",
    "run",
    "--checkpoint",
    "100",
    "--metric",
    "mmd",
    "--metric",
    "energy",
    "--sampler",
    "ddim",
    "--steps",
    "20",
    "--seed",
    "0",
    "--samples-out",
    "run/samples/ev1.png",
    "--events",
    "run/samples/ev1.events.jsonl",
  ]);
  const every: EvalJob = {
    ...EVAL,
    metrics: ["fid"],
    settings: {
      sampler: "heun",
      sample_steps: 18,
      ema_eval: 0.999,
      eta: 0,
      clip: true,
      guidance: 0,
      guidance_rescale: 0.7,
      churn: 0,
      n_eval: 256,
      eval_seed: 9,
    },
  };
  assert.deepEqual(evalArgs(every, "r", "s.png", "webgpu"), [
    "eval",
    "--run",
    "r",
    "--checkpoint",
    "100",
    "--metric",
    "fid",
    "--sampler",
    "heun",
    "--steps",
    "18",
    "--ema",
    "0.999",
    "--eta",
    "0",
    "--clip",
    "true",
    "--guidance",
    "0",
    "--guidance-rescale",
    "0.7",
    "--churn",
    "0",
    "--n",
    "256",
    "--seed",
    "9",
    "--samples-out",
    "s.png",
    "--events",
    "r/samples/ev1.events.jsonl",
    "--backend",
    "webgpu",
  ]);
});

Deno.test("samplesPath and describeEval: the samples file under the run, one line of settings", () => {
  assert.equal(samplesPath(EVAL, "runs/s/k"), join("runs/s/k", "samples", "ev1.png"));
  assert.equal(describeEval(EVAL), "step 100 sampler=ddim sample_steps=20");
  assert.equal(describeEval({ ...EVAL, checkpoint: 5, settings: {} }), "step 5");
});

Deno.test("logLines: escape codes gone, a redrawn line's last state, blank lines dropped, the last n", () => {
  const text = `${ESC}[1mstarting${ESC}[0m\n` +
    "step 1/3\rstep 2/3\rstep 3/3\n" +
    "\n   \n" +
    `${ESC}[32mdone${ESC}[0m  \n` +
    "bar 50%\r   \r\n" +
    "last";
  assert.deepEqual(logLines(text, 10), ["starting", "step 3/3", "done", "bar 50%", "last"]);
  assert.deepEqual(logLines(text, 2), ["bar 50%", "last"]);
  assert.deepEqual(logLines("", 5), []);
});

Deno.test("EventTail: complete lines only, each once; a torn line skipped; a shorter file read anew", () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-jobrun-" });
  try {
    const file = join(dir, "events.jsonl");
    const tail = new EventTail(dir);
    assert.deepEqual(tail.read(), [], "no file yet");
    fs.writeFileSync(file, '{"type":"train","step":10}\n{"type":"tra');
    assert.deepEqual(tail.read(), [{ type: "train", step: 10 }]);
    assert.deepEqual(tail.read(), [], "the half line waits for its end");
    fs.appendFileSync(file, 'in","step":20}\nnot json\n[1]\n{"type":"done"}\n');
    assert.deepEqual(tail.read(), [{ type: "train", step: 20 }, [1], { type: "done" }]);
    fs.writeFileSync(file, '{"type":"start"}\n');
    assert.deepEqual(tail.read(), [{ type: "start" }], "a file started over is read from 0");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** An SQLite store in a fresh folder with one sweep; `job` adds one, running at attempt 1. */
async function withStore(
  fn: (
    store: Store,
    dir: string,
    job: (kind: "train" | "eval") => Promise<JobRow>,
  ) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-jobrun-" });
  const store = await openStore(join(dir, "store.sqlite"));
  try {
    const sweep = await store.upsertSweep("jr", "exp.yaml", "h", "{}");
    let n = 0;
    const job = async (kind: "train" | "eval") => {
      const spec = kind === "train" ? TRAIN : EVAL;
      const key = `${spec.key}-${++n}`;
      const runDir = join(dir, key);
      fs.mkdirSync(runDir, { recursive: true });
      const j = await store.ensureJob(sweep.id, key, kind, JSON.stringify(spec), runDir);
      await store.updateJob(j.id, { state: "running", attempts: 1 });
      return (await store.job(j.id))!;
    };
    await fn(store, dir, job);
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("ingestEvents: metric points upserted by step, checkpoints, the backend, a reported failure", async () => {
  await withStore(async (store, _dir, job) => {
    const t = await job("train");
    const events = (es: unknown[]) =>
      fs.appendFileSync(
        join(t.runDir, "events.jsonl"),
        es.map((e) => JSON.stringify(e) + "\n").join(""),
      );
    const point = (step: number, loss: number) => ({
      type: "train",
      step,
      loss,
      bands: [loss],
      lr: 0.01,
      stepsPerSec: 5,
    });
    events([
      { type: "start", step: 0, backend: "wasm", device: "8 threads" },
      point(10, 0.5),
      { type: "checkpoint", step: 10, path: "ckpt/step-00000010" },
      point(20, 0.4),
    ]);
    const tail = new EventTail(t.runDir);
    const ctx = { store };
    const first = await ingestEvents(ctx, t, t.runDir, tail);
    assert.deepEqual(first.points.map((p) => [p.step, p.loss]), [[10, 0.5], [20, 0.4]]);
    assert.deepEqual(first.checkpoints, [10]);
    assert.equal(first.failed, undefined);
    const row = (await store.job(t.id))!;
    assert.deepEqual([row.backend, row.device], ["wasm", "8 threads"]);
    assert.deepEqual(await store.artifacts(t.id), [
      { kind: "checkpoint", path: join(t.runDir, "ckpt/step-00000010") },
    ]);
    // A resumed run logs step 20 again: it replaces the first one.
    events([point(20, 0.3), { type: "failed", step: 25, reason: "loss became NaN" }]);
    const second = await ingestEvents(ctx, t, t.runDir, tail);
    assert.deepEqual(second.points.map((p) => p.step), [20]);
    assert.equal(second.failed, "loss became NaN (step 25)");
    const stored = await store.metricsSince(t.id, 0);
    assert.deepEqual(stored.map((p) => [p.step, p.loss, p.lr, p.stepsPerSec, p.bands]), [
      [10, 0.5, 0.01, 5, "[0.5]"],
      [20, 0.3, 0.01, 5, "[0.3]"],
    ]);
    const recorded: [number, string][] = [];
    events([{ type: "checkpoint", step: 20, path: "ckpt/step-00000020" }]);
    await ingestEvents(
      {
        store,
        recordCheckpoint: (_j, step, _d, rel) => {
          recorded.push([step, rel]);
          return Promise.resolve();
        },
      },
      t,
      t.runDir,
      tail,
    );
    assert.deepEqual(
      recorded,
      [[20, "ckpt/step-00000020"]],
      "recordCheckpoint replaces the artifact",
    );
    assert.equal((await store.artifacts(t.id)).length, 1);
  });
});

Deno.test("settle: done, stopped, a retry while attempts last, failed after; a lost claim writes nothing", async () => {
  await withStore(async (store, _dir, job) => {
    const updates: ExecutorUpdate[] = [];
    const emit = (u: ExecutorUpdate) => updates.push(u);
    const settled = async (outcome: JobOutcome, attempts = 1, max = 1) => {
      const j = await job("train");
      await store.updateJob(j.id, { attempts, pid: 42 });
      const state = await settle(store, { ...j, attempts }, outcome, max, emit);
      return { state, row: (await store.job(j.id))!, update: updates.at(-1)! };
    };

    const done = await settled({ state: "done" });
    assert.equal(done.state, "done");
    assert.deepEqual([done.row.state, done.row.progress, done.row.pid], ["done", 1, null]);
    assert.ok(done.row.finished);
    assert.deepEqual([done.update.type, done.update.message], [
      "done",
      `done train ${done.row.key}`,
    ]);
    assert.equal(done.update.job.state, "done", "the event carries the job as stored after");

    const stopped = await settled({ state: "stopped", step: 30, loss: 0.2 });
    assert.deepEqual([stopped.state, stopped.row.state], ["stopped", "stopped"]);
    assert.equal(stopped.update.message, `stopped train ${stopped.row.key}`);

    const cancelled = await settled({ state: "cancelled" });
    assert.deepEqual([cancelled.state, cancelled.row.state], ["cancelled", "cancelled"]);

    const retry = await settled({ state: "error", error: "boom", retryable: true }, 1, 1);
    assert.deepEqual([retry.state, retry.row.state, retry.row.error], ["queued", "queued", "boom"]);
    assert.deepEqual([retry.update.type, retry.update.message], [
      "retry",
      `retry train ${retry.row.key}: boom`,
    ]);

    const spent = await settled({ state: "error", error: "boom", retryable: true }, 2, 1);
    assert.deepEqual([spent.state, spent.row.state], ["failed", "failed"]);
    assert.equal(spent.update.message, `failed train ${spent.row.key}: boom`);

    const nan = await settled({ state: "error", error: "NaN", retryable: false }, 1, 5);
    assert.deepEqual([nan.state, nan.row.state, nan.update.type], ["failed", "failed", "failed"]);

    // Another claim (attempt 2) holds the job now: this worker's attempt 1 records nothing.
    const j = await job("train");
    await store.updateJob(j.id, { attempts: 2, pid: 7 });
    assert.equal(await settle(store, j, { state: "done" }, 1, emit), undefined);
    const row = (await store.job(j.id))!;
    assert.deepEqual([row.state, row.attempts, row.pid], ["running", 2, 7]);
    assert.deepEqual([updates.at(-1)!.type, updates.at(-1)!.message], [
      "lost",
      `lost train ${j.key}: it was taken from this worker`,
    ]);
    assert.equal(await settle(store, j, { state: "lost" }, 1, emit), undefined);
    assert.equal(updates.at(-1)!.type, "lost");
  });
});

/** A run context on `store` with `command` as the child; its events collected in `updates`. */
function context(store: Store, command: string[], more: Partial<RunContext> = {}) {
  const updates: ExecutorUpdate[] = [];
  const ctx: RunContext = {
    store,
    workerCommand: command,
    threads: "1",
    backend: "auto",
    timeout: 0,
    pollMs: 50,
    emit: (u) => updates.push(u),
    ...more,
  };
  return { ctx, updates };
}

Deno.test("runJob: a training run followed into the store to the end", async () => {
  await withStore(async (store, _dir, job) => {
    const t = await job("train");
    const { ctx, updates } = context(store, fake);
    const outcome = await runJob(ctx, t, TRAIN, t.runDir, trainArgs(TRAIN, t.runDir, "auto"));
    assert.deepEqual(outcome, { state: "done" });
    const points = await store.metricsSince(t.id, 0);
    assert.deepEqual(points.map((p) => p.step), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    // The fake trainer's loss is lr / 0.001 / step.
    for (const p of points) assert.ok(Math.abs(p.loss - 1 / p.step) < 1e-12, `${p.step}`);
    assert.deepEqual((await store.artifacts(t.id)).map((a) => a.path), [
      join(t.runDir, "ckpt/step-00000050"),
      join(t.runDir, "ckpt/step-00000100"),
    ]);
    const row = (await store.job(t.id))!;
    assert.deepEqual([row.backend, row.device, row.progress], ["fake", "fake device", 1]);
    assert.ok(row.pid && row.pid > 0, "the child's pid is recorded");
    assert.deepEqual(updates.filter((u) => u.type === "checkpoint").map((u) => u.message), [
      `checkpoint ${t.key} step 50`,
      `checkpoint ${t.key} step 100`,
    ]);
    const train = updates.filter((u) => u.type === "train");
    assert.equal(train.length, 10);
    assert.equal(train[0].message, `train ${t.key} step 10/100 loss 0.1000 100.0 steps/s`);
    assert.equal(
      fs.readFileSync(join(t.runDir, "invocations.log"), "utf8"),
      "train from 0\n",
    );
  });
});

Deno.test("runJob: an evaluation's JSON lines and sample files into the store; no line is an error", async () => {
  await withStore(async (store, _dir, job) => {
    const e = await job("eval");
    const { ctx, updates } = context(store, fake);
    const out = samplesPath(EVAL, e.runDir);
    const outcome = await runJob(ctx, e, EVAL, e.runDir, evalArgs(EVAL, e.runDir, out, "auto"));
    assert.deepEqual(outcome, { state: "done" });
    // The fake evaluation's value: 1 / checkpoint + sample_steps / 1000.
    const evals = await store.evalsForSweep(e.sweep);
    assert.deepEqual(evals.map((v) => [v.metric, v.value, v.n, v.spread]).sort(), [
      ["energy", 0.03, 10, 0.01],
      ["mmd", 0.03, 10, 0.01],
    ]);
    assert.deepEqual(JSON.parse(evals[0].extra), { step: 100, nfe: 20 });
    const row = (await store.job(e.id))!;
    assert.deepEqual([row.backend, row.device], ["fake", "fake device"]);
    assert.deepEqual(await store.files(e.id, "samples/"), ["samples/ev1.csv"]);
    assert.equal(
      new TextDecoder().decode(await store.readFile(e.id, "samples/ev1.csv")),
      "x,y\n100,0.03\n",
    );
    assert.deepEqual(updates.map((u) => u.message), [
      `eval ${e.key} mmd=0.03000 ±0.010 (step 100 sampler=ddim sample_steps=20)`,
      `eval ${e.key} energy=0.03000 ±0.010 (step 100 sampler=ddim sample_steps=20)`,
    ]);

    const silent = await job("eval");
    const quiet = context(store, sh('echo "loading"; echo "{not json"')).ctx;
    assert.deepEqual(await runJob(quiet, silent, EVAL, silent.runDir, []), {
      state: "error",
      error: "the evaluation printed no metric line",
      retryable: true,
    });
  });
});

Deno.test("runJob: a running evaluation's backend, device and progress are stored before it ends", async () => {
  await withStore(async (store, dir, job) => {
    const e = await job("eval");
    const hold = join(dir, "release");
    const { ctx } = context(store, fakeWorker(`FAKE_EVAL_HOLD=${hold}`));
    const events = join(e.runDir, "samples", "ev1.events.jsonl");
    // An earlier attempt's events: this attempt starts the file afresh.
    fs.mkdirSync(join(e.runDir, "samples"), { recursive: true });
    fs.writeFileSync(events, JSON.stringify({ type: "progress", done: 9, total: 10 }) + "\n");
    const out = samplesPath(EVAL, e.runDir);
    const running = runJob(ctx, e, EVAL, e.runDir, evalArgs(EVAL, e.runDir, out, "auto"));
    const row = await until(
      "its start line in the store",
      async () => {
        const now = (await store.job(e.id))!;
        return now.device !== null && now;
      },
      20_000,
      50,
    );
    assert.deepEqual(
      [row.state, row.backend, row.device, row.progress],
      ["running", "fake", "fake device", 0.5],
      "held at half way: recorded while it runs",
    );
    assert.equal(await store.evalsForSweep(e.sweep).then((v) => v.length), 0, "no result yet");
    fs.writeFileSync(hold, "");
    assert.deepEqual(await running, { state: "done" });
    assert.equal((await store.job(e.id))!.progress, 1);
    assert.deepEqual(
      fs.readFileSync(events, "utf8").trim().split("\n").map((l) => {
        const { type, done } = JSON.parse(l);
        return [type, done];
      }),
      [["start", undefined], ["progress", 1], ["progress", 2]],
      "only this attempt's lines",
    );
  });
});

Deno.test("runJob: a crash ends in its last stderr lines or its exit code; the log tail is kept", async () => {
  await withStore(async (store, _dir, job) => {
    const crash = sh('echo "step 1"; printf "a\\nb\\nc\\nout of memory\\n" >&2; exit 3');
    const t = await job("train");
    assert.deepEqual(await runJob(context(store, crash).ctx, t, TRAIN, t.runDir, []), {
      state: "error",
      error: "b | c | out of memory",
      retryable: true,
    });
    const log = new TextDecoder().decode(await store.readFile(t.id, "log"));
    assert.deepEqual(log.split("\n").sort(), ["a", "b", "c", "out of memory", "step 1"]);
    const quiet = await job("train");
    assert.deepEqual(
      await runJob(context(store, sh("exit 7")).ctx, quiet, TRAIN, quiet.runDir, []),
      {
        state: "error",
        error: "exit code 7",
        retryable: true,
      },
    );
  });
});

Deno.test("runJob: a NaN the trainer reports is not retried", async () => {
  await withStore(async (store, _dir, job) => {
    const t = await job("train");
    const nan = sh(
      `echo '{"type":"failed","step":30,"reason":"loss became NaN at step 30"}' ` +
        `>> "$1/events.jsonl"; exit 1`,
    );
    assert.deepEqual(await runJob(context(store, nan).ctx, t, TRAIN, t.runDir, [t.runDir]), {
      state: "error",
      error: "loss became NaN at step 30 (step 30)",
      retryable: false,
    });
  });
});

Deno.test("runJob: timeout, cancel and stop requests, and a lost claim end the child", async () => {
  await withStore(async (store, _dir, job) => {
    const sleeper = sh("exec sleep 30");
    const t0 = Date.now();
    const timed = await job("train");
    const { ctx } = context(store, sleeper, { timeout: 1 });
    assert.deepEqual(await runJob(ctx, timed, TRAIN, timed.runDir, []), {
      state: "error",
      error: "timed out after 1 s",
      retryable: true,
    });

    const ended = async (change: (j: JobRow) => Promise<void> | void, signal?: AbortSignal) => {
      const j = await job("train");
      const run = runJob(context(store, sleeper).ctx, j, TRAIN, j.runDir, [], signal);
      await new Promise((r) => setTimeout(r, 300));
      await change(j);
      return await run;
    };
    assert.deepEqual(await ended((j) => store.requestCancel(j.id)), { state: "cancelled" });
    assert.deepEqual(
      await ended((j) => store.updateJob(j.id, { cancelRequested: STOP_REQUESTED })),
      { state: "stopped" },
    );
    // Another worker's claim (attempt 2), or the queue taking the job away (the signal).
    assert.deepEqual(await ended((j) => store.updateJob(j.id, { attempts: 2 })), { state: "lost" });
    const abort = new AbortController();
    assert.deepEqual(await ended(() => abort.abort(), abort.signal), { state: "lost" });
    assert.ok(Date.now() - t0 < 20_000, "every child was killed, none slept its 30 s");
  });
});

Deno.test("runJob: onTrainPoint's reason stops the run at that step", async () => {
  await withStore(async (store, _dir, job) => {
    const t = await job("train");
    const steps = sh(
      `for s in 10 20 30 40 50 60 70 80 90 100; do ` +
        `echo "{\\"type\\":\\"train\\",\\"step\\":$s,\\"loss\\":0.$s,\\"lr\\":1,\\"stepsPerSec\\":1}" ` +
        `>> "$1/events.jsonl"; sleep 0.1; done`,
    );
    const { ctx, updates } = context(store, steps, {
      onTrainPoint: (_j, step, loss) => step >= 30 ? `stop at ${step} (${loss})` : undefined,
    });
    assert.deepEqual(await runJob(ctx, t, TRAIN, t.runDir, [t.runDir]), {
      state: "stopped",
      step: 30,
      loss: 0.3,
    });
    const stops = updates.filter((u) => u.type === "stopped");
    assert.deepEqual(stops.map((u) => [u.step, u.loss, u.message]), [[
      30,
      0.3,
      "stop at 30 (0.3)",
    ]]);
    const last = (await store.metricsSince(t.id, 0)).at(-1)!.step;
    assert.ok(last < 100, `killed before the end (last step ${last})`);
  });
});
