/**
 * Running one job, wherever it came from: the local executor
 * (lib/sweep/executor.ts) and the distributed worker (lib/sweep/worker.ts)
 * differ only in where jobs come from. {@link runJob} starts `main.ts train`
 * or `main.ts eval` as a child process (a crash or an out-of-memory ends one
 * job), follows a training run's events.jsonl into the store while it grows,
 * parses an evaluation's JSON lines, applies the timeout and the store's
 * cancel and stop requests, and ends with a {@link JobOutcome}: data, not an
 * error message to parse. {@link settle} records an outcome as the job's
 * state.
 */
import * as fs from "node:fs";
import { basename, join } from "node:path";
import {
  isConnectionError,
  type JobRow,
  type JobState,
  type MetricRow,
  retryConnection,
  type Store,
} from "../store/store.ts";
import type { EvalJob, TrainJob } from "./planner.ts";

/** What happened, for a dashboard (structured) and for plain mode (`message`). */
export interface ExecutorUpdate {
  /** The kind of event. */
  type:
    | "resume"
    | "start"
    | "train"
    | "checkpoint"
    | "eval"
    | "done"
    | "retry"
    | "failed"
    | "cancelled"
    | "stopped"
    | "lost";
  /** The job as stored when the event happened. */
  job: JobRow;
  /** Training step (train, checkpoint, failed events of training jobs). */
  step?: number;
  /** Training loss (train events). */
  loss?: number;
  /** Metric name and value (eval events). */
  metric?: string;
  /** The metric's value (eval events). */
  value?: number;
  /** One plain line describing the event (no escape codes). */
  message: string;
}

/**
 * How a job's run ended. `error` is a crash, a timeout, a NaN or an
 * evaluation without results (`retryable` false for a NaN the trainer
 * reported); `lost` means the job was taken from this worker (its queue claim
 * lapsed), so this worker records nothing more about it.
 */
export type JobOutcome =
  | { state: "done" }
  | { state: "cancelled" }
  | { state: "stopped"; step?: number; loss?: number }
  | { state: "lost" }
  | { state: "error"; error: string; retryable: boolean };

/**
 * `cancelRequested` of a training job a distributed sweep's coordinator
 * stops early (ASHA); 1 is a cancel asked from the dashboard.
 */
export const STOP_REQUESTED = 2;

/** The step of a checkpoint path (`…/ckpt/step-00000100` → 100), or undefined. */
export function checkpointStep(path: string): number | undefined {
  const m = path.match(/step-(\d+)\/?$/);
  return m ? Number(m[1]) : undefined;
}

/** What {@link runJob} needs besides the job. */
export interface RunContext {
  /** Where metrics, evaluations, artifacts and requests are. */
  store: Store;
  /** The command that runs main.ts, e.g. [deno, "run", "-A", "/abs/main.ts"]. */
  workerCommand: string[];
  /** DMW_THREADS of the child. */
  threads: string;
  /** Backend for the children ("auto" passes none). */
  backend: string;
  /** Per-job timeout in seconds; 0 = none. */
  timeout: number;
  /** How often the store and the events file are polled, ms. */
  pollMs: number;
  /** Called on every event. */
  emit: (u: ExecutorUpdate) => void;
  /**
   * Records a checkpoint the run wrote at `dir/rel`. @default an artifact
   * with the checkpoint's local path (the distributed worker stores its files
   * and enqueues that step's evaluations)
   */
  recordCheckpoint?: (job: JobRow, step: number, dir: string, rel: string) => Promise<void>;
  /** Sees each logged training step; returning a reason stops the run (ASHA). */
  onTrainPoint?: (job: JobRow, step: number, loss: number) => string | undefined;
}

/** Incremental reader of one run's events.jsonl (complete lines only). */
export class EventTail {
  #offset = 0;
  readonly #path: string;

  /** A reader of `runDir/file` (a training run's `events.jsonl`) from its start. */
  constructor(runDir: string, file = "events.jsonl") {
    this.#path = join(runDir, file);
  }

  /** The events appended since the last call; malformed lines are skipped. */
  read(): Record<string, unknown>[] {
    if (!fs.existsSync(this.#path)) return [];
    const size = fs.statSync(this.#path).size;
    if (size < this.#offset) this.#offset = 0;
    if (size === this.#offset) return [];
    const fd = fs.openSync(this.#path, "r");
    const buf = new Uint8Array(size - this.#offset);
    try {
      fs.readSync(fd, buf, 0, buf.length, this.#offset);
    } finally {
      fs.closeSync(fd);
    }
    const end = buf.lastIndexOf(10);
    if (end < 0) return [];
    this.#offset += end + 1;
    const out: Record<string, unknown>[] = [];
    for (const line of new TextDecoder().decode(buf.subarray(0, end)).split("\n")) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line);
        if (e && typeof e === "object") out.push(e);
      } catch {
        // A line torn by a crash mid-write carries nothing usable.
      }
    }
    return out;
  }
}

function setArgs(config: Record<string, unknown>): string[] {
  return Object.entries(config).flatMap(([k, v]) => ["--set", `${k}=${JSON.stringify(v)}`]);
}

/** Command-line arguments of a training job (the worker contract's `train`). */
export function trainArgs(t: TrainJob, runDir: string, backend: string): string[] {
  const { steps, seed, ...rest } = t.config;
  return [
    "train",
    "--model",
    t.model,
    "--data",
    t.data,
    "--steps",
    String(steps),
    "--out",
    runDir,
    "--seed",
    String(seed ?? 0),
    ...(backend === "auto" ? [] : ["--backend", backend]),
    ...setArgs(rest),
  ];
}

/** Command-line arguments of an evaluation job (the worker contract's `eval`). */
export function evalArgs(
  ev: EvalJob,
  runDir: string,
  samplesOut: string,
  backend: string,
): string[] {
  const s = ev.settings;
  const args = ["eval", "--run", runDir, "--checkpoint", String(ev.checkpoint)];
  for (const m of ev.metrics) args.push("--metric", m);
  if (s.sampler) args.push("--sampler", String(s.sampler));
  if (s.sample_steps) args.push("--steps", String(s.sample_steps));
  if (s.ema_eval) args.push("--ema", String(s.ema_eval));
  if (s.eta !== undefined) args.push("--eta", String(s.eta));
  if (s.clip) args.push("--clip", String(s.clip));
  if (s.guidance !== undefined) args.push("--guidance", String(s.guidance));
  if (s.guidance_rescale !== undefined) {
    args.push("--guidance-rescale", String(s.guidance_rescale));
  }
  if (s.churn !== undefined) args.push("--churn", String(s.churn));
  if (s.n_eval) args.push("--n", String(s.n_eval));
  args.push("--seed", String(s.eval_seed ?? 0), "--samples-out", samplesOut);
  args.push("--events", join(runDir, evalEventsFile(ev)));
  if (backend !== "auto") args.push("--backend", backend);
  return args;
}

/** An evaluation's `--events` file, relative to its run folder (each runJob starts it afresh). */
export function evalEventsFile(ev: EvalJob): string {
  return join("samples", `${ev.key}.events.jsonl`);
}

/** Where an evaluation job writes its samples (PNG; 2-D and tabular samples also get a CSV). */
export function samplesPath(ev: EvalJob, runDir: string): string {
  return join(runDir, "samples", `${ev.key}.png`);
}

/** One line describing an evaluation's settings. */
export function describeEval(ev: EvalJob): string {
  const s = Object.entries(ev.settings).map(([k, v]) => `${k}=${v}`).join(" ");
  return `step ${ev.checkpoint}${s ? " " + s : ""}`;
}

/**
 * The last `n` lines of a child's output as a terminal would show them:
 * escape codes removed, and of a line redrawn with carriage returns (a
 * progress bar) only its last state.
 */
export function logLines(text: string, n: number): string[] {
  return text.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g"), "")
    .split("\n").map((l) => (l.split("\r").findLast((p) => p.trim()) ?? "").trimEnd())
    .filter((l) => l.trim()).slice(-n);
}

function lastLines(text: string): string | undefined {
  const lines = logLines(text, 3).map((l) => l.trim());
  return lines.length ? lines.join(" | ") : undefined;
}

/** Lines of a job's output kept in the store (its file `log`) for the dashboard's run detail. */
export const LOG_LINES = 40;

/** How often a running job's log tail is written to the store, ms. */
const LOG_EVERY_MS = 5000;

async function drain(
  stream: ReadableStream<Uint8Array>,
  sink: (text: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
}

/**
 * Copies the events of a training run in `runDir` that `tail` has not read
 * yet into the store: metric points (upserted per step, so a resumed run's
 * repeated steps replace, never duplicate), checkpoints (through
 * `ctx.recordCheckpoint`) and the backend of its start event. Returns what
 * a running job needs to react to.
 */
export async function ingestEvents(
  ctx: Pick<RunContext, "store" | "recordCheckpoint">,
  job: JobRow,
  runDir: string,
  tail: EventTail,
): Promise<{ points: MetricRow[]; checkpoints: number[]; failed?: string; progress?: number }> {
  const points: MetricRow[] = [];
  let stored = 0;
  const checkpoints: number[] = [];
  let failed: string | undefined;
  let progress: number | undefined;
  for (const e of tail.read()) {
    const step = Number(e.step);
    if (e.type === "start" && typeof e.backend === "string") {
      const device = typeof e.device === "string" ? e.device : null;
      await ctx.store.updateJob(job.id, { backend: e.backend, device });
    } else if (e.type === "train" && Number.isFinite(step)) {
      points.push({
        job: job.id,
        step,
        loss: Number(e.loss),
        bands: JSON.stringify(e.bands ?? []),
        lr: Number(e.lr),
        stepsPerSec: Number(e.stepsPerSec),
      });
    } else if (e.type === "checkpoint" && Number.isFinite(step)) {
      // Its metric points first: whoever sees the checkpoint sees the losses up to it.
      await ctx.store.putMetrics(points.slice(stored));
      stored = points.length;
      const rel = String(e.path);
      if (ctx.recordCheckpoint) await ctx.recordCheckpoint(job, step, runDir, rel);
      else await ctx.store.putArtifact(job.id, "checkpoint", join(runDir, rel));
      checkpoints.push(step);
    } else if (e.type === "failed") {
      failed = `${e.reason} (step ${step})`;
    } else if (e.type === "progress" && Number(e.total) > 0) {
      progress = Math.min(1, Number(e.done) / Number(e.total));
    }
  }
  await ctx.store.putMetrics(points.slice(stored));
  return { points, checkpoints, failed, progress };
}

/**
 * Runs one job (already marked running by the caller) in `runDir` with
 * `args` until its child ends, and says how it ended. `signal` aborting, or
 * the store's attempt of the job moving past `job.attempts` (another claim),
 * means the job was taken from this worker: the child is killed at once and
 * nothing more of it is recorded.
 */
export async function runJob(
  ctx: RunContext,
  job: JobRow,
  spec: TrainJob | EvalJob,
  runDir: string,
  args: string[],
  signal?: AbortSignal,
): Promise<JobOutcome> {
  const { store } = ctx;
  const child = new Deno.Command(ctx.workerCommand[0], {
    args: [...ctx.workerCommand.slice(1), ...args],
    env: { DMW_THREADS: ctx.threads },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  await store.updateJob(job.id, { pid: child.pid });
  let stdout = "";
  let stderr = "";
  // Both streams as they came, for the log tail the store keeps.
  let output = "";
  // Only an evaluation's stdout carries results; a trainer's is kept as a tail.
  const keep = job.kind === "eval" ? 1 << 24 : 4000;
  const pipes = Promise.all([
    drain(child.stdout, (t) => {
      stdout = (stdout + t).slice(-keep);
      output = (output + t).slice(-16000);
    }),
    drain(child.stderr, (t) => {
      stderr = (stderr + t).slice(-4000);
      output = (output + t).slice(-16000);
    }),
  ]);
  let logged = "";
  const saveLog = async () => {
    const text = logLines(output, LOG_LINES).join("\n");
    if (text === logged) return;
    await store.putBytes(job.id, "log", new TextEncoder().encode(text));
    logged = text;
  };
  let logTime = Date.now();
  let exit: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => exit = s);
  const started = Date.now();
  // A training run's events.jsonl, or the evaluation's own events (backend, device, progress).
  const eventsFile = job.kind === "eval" ? evalEventsFile(spec as EvalJob) : undefined;
  if (eventsFile) fs.rmSync(join(runDir, eventsFile), { force: true });
  const newTail = () => new EventTail(runDir, eventsFile);
  let tail = newTail();
  const total = "config" in spec ? Number(spec.config.steps) : 0;
  let killedFor: "cancelled" | "stopped" | "timeout" | "lost" | undefined;
  let stoppedAt: { step: number; loss: number } | undefined;
  let reported: string | undefined;
  const kill = (why: NonNullable<typeof killedFor>, sig: Deno.Signal) => {
    if (killedFor) return;
    killedFor = why;
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  };
  const onAbort = () => kill("lost", "SIGKILL");
  signal?.addEventListener("abort", onAbort);
  if (signal?.aborted) onAbort();

  const follow = async () => {
    const got = await ingestEvents(ctx, job, runDir, tail);
    if (got.failed) reported = got.failed;
    if (killedFor === "lost") return;
    for (const p of got.points) {
      ctx.emit({
        type: "train",
        job,
        step: p.step,
        loss: p.loss,
        message: `train ${job.key} step ${p.step}/${total} loss ${p.loss.toFixed(4)} ${
          p.stepsPerSec.toFixed(1)
        } steps/s`,
      });
      const stop = ctx.onTrainPoint?.(job, p.step, p.loss);
      if (stop && !killedFor) {
        stoppedAt = { step: p.step, loss: p.loss };
        kill("stopped", "SIGTERM");
        ctx.emit({ type: "stopped", job, step: p.step, loss: p.loss, message: stop });
      }
    }
    for (const step of got.checkpoints) {
      ctx.emit({ type: "checkpoint", job, step, message: `checkpoint ${job.key} step ${step}` });
    }
    const progress = got.points.length
      ? Math.min(1, got.points.at(-1)!.step / total)
      : got.progress;
    if (progress !== undefined) await store.updateJob(job.id, { progress });
  };

  // The store unreachable for a while (a database restart) does not end the job: the events are
  // read again from the start once it is back (metric points and checkpoints are upserts).
  const followOrRewind = async () => {
    try {
      await follow();
    } catch (e) {
      if (!isConnectionError(e)) throw e;
      tail = newTail();
    }
  };
  try {
    while (!exit) {
      await Promise.race([status, new Promise((r) => setTimeout(r, ctx.pollMs))]);
      if (exit) break;
      const row = await store.job(job.id).catch((e) => {
        if (isConnectionError(e)) return undefined;
        throw e;
      });
      // Another claim of the job (its queue claim lapsed, another worker has it): not ours now.
      if (row && row.attempts !== job.attempts) kill("lost", "SIGKILL");
      if (killedFor === "lost") continue;
      await followOrRewind();
      if (row?.cancelRequested === STOP_REQUESTED) kill("stopped", "SIGTERM");
      else if (row?.cancelRequested) kill("cancelled", "SIGTERM");
      if (ctx.timeout && Date.now() - started > ctx.timeout * 1000) kill("timeout", "SIGKILL");
      if (Date.now() - logTime >= LOG_EVERY_MS) {
        logTime = Date.now();
        await saveLog().catch((e) => {
          if (!isConnectionError(e)) throw e;
        });
      }
    }
    await pipes;
    if (killedFor === "lost") return { state: "lost" };
    const row = await retryConnection(() => store.job(job.id));
    if (row && row.attempts !== job.attempts) return { state: "lost" };
    await retryConnection(saveLog);
    await retryConnection(async () => {
      try {
        await follow();
      } catch (e) {
        tail = newTail();
        throw e;
      }
    });
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (killedFor === "cancelled") return { state: "cancelled" };
  if (killedFor === "stopped") return { state: "stopped", ...stoppedAt };
  if (reported) return { state: "error", error: reported, retryable: false };
  if (killedFor === "timeout") {
    return { state: "error", error: `timed out after ${ctx.timeout} s`, retryable: true };
  }
  if (!exit!.success) {
    const error = lastLines(stderr) ??
      `exit code ${exit!.code}${exit!.signal ? ` (signal ${exit!.signal})` : ""}`;
    return { state: "error", error, retryable: true };
  }
  if (job.kind === "eval") {
    const error = await retryConnection(() =>
      recordEval(ctx, job, spec as EvalJob, runDir, stdout)
    );
    if (error) return { state: "error", error, retryable: true };
  }
  return { state: "done" };
}

/** Parses an evaluation's stdout into the store; an error message when it printed no result. */
async function recordEval(
  ctx: RunContext,
  job: JobRow,
  ev: EvalJob,
  runDir: string,
  stdout: string,
): Promise<string | undefined> {
  let count = 0;
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    let res: Record<string, unknown>;
    try {
      res = JSON.parse(line);
    } catch {
      continue;
    }
    const { metric, value, n, spread, backend, device, ...extra } = res;
    if (typeof metric !== "string") continue;
    if (count === 0 && typeof backend === "string") {
      await ctx.store.updateJob(job.id, {
        backend,
        device: typeof device === "string" ? device : null,
      });
    }
    const v = typeof value === "number" ? value : NaN;
    await ctx.store.putEval({
      job: job.id,
      metric,
      value: v,
      n: Number(n ?? 0),
      spread: Number(spread ?? 0),
      extra: JSON.stringify(extra),
    });
    count++;
    ctx.emit({
      type: "eval",
      job,
      metric,
      value: v,
      message: `eval ${job.key} ${metric}=${v.toPrecision(4)} ±${
        Number(spread ?? 0).toPrecision(2)
      } (${describeEval(ev)})`,
    });
  }
  // The sample files go into the store, so that any machine's dashboard and report can show them.
  const samples = samplesPath(ev, runDir);
  for (const p of [samples, samples.replace(/\.png$/, ".csv")]) {
    if (!fs.existsSync(p)) continue;
    await ctx.store.putFile(job.id, `samples/${basename(p)}`, p);
    await ctx.store.putArtifact(job.id, "samples", p);
  }
  return count ? undefined : "the evaluation printed no metric line";
}

/**
 * Records how a job's run ended as its state: done, cancelled, stopped,
 * queued again (a retryable error with attempts left: `attempts` ≤
 * `maxFailures`) or failed. Only the claim that ran it writes: the job must
 * still be `running` at `job.attempts`. A `lost` job, or one whose claim
 * another worker has taken meanwhile, is left to whoever has it now.
 * Returns the state written (undefined when nothing was).
 */
export async function settle(
  store: Store,
  job: JobRow,
  outcome: JobOutcome,
  maxFailures: number,
  emit: (u: ExecutorUpdate) => void,
): Promise<JobState | undefined> {
  const now = new Date().toISOString();
  const say = async (type: ExecutorUpdate["type"], message: string) =>
    emit({ type, job: (await store.job(job.id))!, message });
  const claim = { state: "running" as const, attempts: job.attempts };
  const lost = () =>
    say("lost", `lost ${job.kind} ${job.key}: it was taken from this worker`).then(() => undefined);
  switch (outcome.state) {
    case "lost":
      return await lost();
    case "done": {
      const fields = { state: "done" as const, finished: now, progress: 1, pid: null, error: null };
      if (!await store.updateJobIf(job.id, claim, fields)) return await lost();
      await say("done", `done ${job.kind} ${job.key}`);
      return "done";
    }
    case "cancelled":
    case "stopped": {
      const fields = { state: outcome.state, finished: now, pid: null };
      if (!await store.updateJobIf(job.id, claim, fields)) return await lost();
      await say(outcome.state, `${outcome.state} ${job.kind} ${job.key}`);
      return outcome.state;
    }
    case "error": {
      const retry = outcome.retryable && job.attempts <= maxFailures;
      const state: JobState = retry ? "queued" : "failed";
      const fields = { state, error: outcome.error, pid: null, finished: now };
      if (!await store.updateJobIf(job.id, claim, fields)) return await lost();
      await say(
        retry ? "retry" : "failed",
        `${retry ? "retry" : "failed"} ${job.kind} ${job.key}: ${outcome.error}`,
      );
      return state;
    }
  }
}
