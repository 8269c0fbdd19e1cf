/**
 * The executor: runs a plan's jobs in child processes (a crash or an
 * out-of-memory kills one job, not the sweep), at most `concurrency` at a
 * time, each evaluation as soon as its checkpoint exists. It follows every
 * training run's events.jsonl into the store as it grows, parses the
 * evaluations' JSON lines, applies timeouts, retries, cancellation requests
 * and ASHA early termination, and reports every event to a callback.
 */
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import type { JobRow, JobState, MetricRow, Store } from "../store/store.ts";
import type { EvalJob, Plan, TrainJob } from "./planner.ts";

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
    | "stopped";
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

/** Options of {@link execute}. */
export interface ExecuteOptions {
  /** Where jobs, metrics and evaluations are recorded. */
  store: Store;
  /** The sweep whose jobs run. */
  sweepId: number;
  /** The plan the jobs come from (jobs of the sweep not in it are left alone). */
  plan: Plan;
  /** The command that runs main.ts, e.g. [deno, "run", "-A", "/abs/main.ts"]. */
  workerCommand: string[];
  /** Jobs at a time. @default navigator.hardwareConcurrency */
  concurrency?: number;
  /** Retries of a crashed or timed-out job before it is marked failed (a NaN is never retried). @default 1 */
  maxFailures?: number;
  /** Per-job timeout in seconds; 0 = none. @default 0 */
  timeout?: number;
  /** Backend for the children ("auto" passes none). @default "auto" */
  backend?: string;
  /** ASHA early termination of training jobs on their training loss; absent = none. */
  earlyTerminate?: { minIter: number; eta: number };
  /** Called on every event. */
  onUpdate?: (update: ExecutorUpdate) => void;
  /** How often the store and the event files are polled, ms. @default 250 */
  pollMs?: number;
}

interface Running {
  job: JobRow;
  child: Deno.ChildProcess;
  started: number;
  stdout: string;
  stderr: string;
  exit?: Deno.CommandStatus;
  killedFor?: "cancelled" | "timeout" | "stopped";
}

/** Incremental reader of one run's events.jsonl (complete lines only). */
class EventTail {
  #offset = 0;
  readonly #path: string;

  constructor(runDir: string) {
    this.#path = join(runDir, "events.jsonl");
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
  if (s.n_eval) args.push("--n", String(s.n_eval));
  args.push("--seed", String(s.eval_seed ?? 0), "--samples-out", samplesOut);
  if (backend !== "auto") args.push("--backend", backend);
  return args;
}

/** Where an evaluation job writes its samples (PNG; 2-D and tabular samples also get a CSV). */
export function samplesPath(ev: EvalJob, runDir: string): string {
  return join(runDir, "samples", `${ev.key}.png`);
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  sink: (text: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
}

/**
 * Whether `pid` is still a worker of the run in `runDir`: on Linux its
 * command line must name the run directory, so a recycled process id is never
 * taken for an orphaned worker.
 */
function isWorker(pid: number, runDir: string): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.some((a) => a === runDir || resolve(a) === resolve(runDir));
  } catch {
    return false;
  }
}

async function stopOrphan(pid: number, runDir: string): Promise<boolean> {
  if (!isWorker(pid, runDir)) return false;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    return false;
  }
  for (let i = 0; i < 50 && isWorker(pid, runDir); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

function lastLines(text: string): string | undefined {
  const lines = text.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g"), "")
    .split(/[\r\n]+/).map((l) => l.trim())
    .filter(Boolean);
  return lines.length ? lines.slice(-3).join(" | ") : undefined;
}

function describeEval(ev: EvalJob): string {
  const s = Object.entries(ev.settings).map(([k, v]) => `${k}=${v}`).join(" ");
  return `step ${ev.checkpoint}${s ? " " + s : ""}`;
}

/**
 * Runs every queued job of the plan until none is left; returns the counts
 * of the plan's jobs done and failed. Jobs left `running` by a killed sweep
 * are taken back (their orphaned workers stopped) and run again; a training
 * job resumes from its checkpoint by itself.
 */
export async function execute(opts: ExecuteOptions): Promise<{ done: number; failed: number }> {
  const { store, sweepId, plan } = opts;
  const concurrency = opts.concurrency || navigator.hardwareConcurrency || 2;
  const maxFailures = opts.maxFailures ?? 1;
  const backend = opts.backend ?? "auto";
  // Each job's wasm threads: the user's DMW_THREADS, else an equal share of the cores.
  const threads = Deno.env.get("DMW_THREADS") ||
    String(Math.max(1, Math.floor((navigator.hardwareConcurrency || 1) / concurrency)));
  const emit = (u: Omit<ExecutorUpdate, "job"> & { job: JobRow | number }) =>
    opts.onUpdate?.({
      ...u,
      job: typeof u.job === "number" ? store.job(u.job)! : u.job,
    });
  const trainByKey = new Map(plan.train.map((t) => [t.key, t]));
  const evalByKey = new Map(plan.eval.map((e) => [e.key, e]));
  const planned = (j: JobRow) => trainByKey.has(j.key) || evalByKey.has(j.key);
  const running = new Map<number, Running>();
  const tails = new Map<number, EventTail>();
  const checkpoints = new Map<number, Set<number>>();
  /** Training failures reported by the trainer itself (NaN): never retried. */
  const reported = new Map<number, string>();
  /** ASHA: rung step → job id → loss at the first logged step at or past the rung. */
  const rungs = new Map<number, Map<number, number>>();

  for (const j of store.jobs(sweepId)) {
    if (j.state !== "running") continue;
    if (j.pid && await stopOrphan(j.pid, j.runDir)) {
      emit({ type: "resume", job: j, message: `stopped orphaned worker ${j.pid} of ${j.key}` });
    }
    store.updateJob(j.id, { state: "queued", pid: null });
    emit({
      type: "resume",
      job: j.id,
      message: `resume ${j.kind} ${j.key}: was running when the sweep stopped; queued again`,
    });
  }

  const follow = (job: JobRow) => {
    const t = trainByKey.get(job.key);
    if (!t) return;
    const tail = tails.get(job.id) ?? new EventTail(job.runDir);
    tails.set(job.id, tail);
    const total = Number(t.config.steps);
    const rows: MetricRow[] = [];
    const live = running.get(job.id);
    for (const e of tail.read()) {
      const step = Number(e.step);
      if (e.type === "train" && Number.isFinite(step)) {
        const loss = Number(e.loss);
        rows.push({
          job: job.id,
          step,
          loss,
          bands: JSON.stringify(e.bands ?? []),
          lr: Number(e.lr),
          stepsPerSec: Number(e.stepsPerSec),
        });
        if (live) {
          emit({
            type: "train",
            job,
            step,
            loss,
            message: `train ${job.key} step ${step}/${total} loss ${loss.toFixed(4)} ${
              Number(e.stepsPerSec).toFixed(1)
            } steps/s`,
          });
          if (opts.earlyTerminate) asha(live, step, loss);
        }
      } else if (e.type === "checkpoint" && Number.isFinite(step)) {
        const set = checkpoints.get(job.id) ?? new Set();
        set.add(step);
        checkpoints.set(job.id, set);
        store.putArtifact(job.id, "checkpoint", join(job.runDir, String(e.path)));
        if (live) {
          emit({ type: "checkpoint", job, step, message: `checkpoint ${job.key} step ${step}` });
        }
      } else if (e.type === "failed" && live) {
        const reason = `${e.reason} (step ${step})`;
        reported.set(job.id, reason);
        store.updateJob(job.id, { error: reason });
      }
    }
    if (rows.length) {
      store.putMetrics(rows);
      if (live) store.updateJob(job.id, { progress: Math.min(1, rows.at(-1)!.step / total) });
    }
  };

  const asha = (r: Running, step: number, loss: number) => {
    const { minIter, eta } = opts.earlyTerminate!;
    for (let rung = minIter; rung <= step && !r.killedFor; rung *= eta) {
      const at = rungs.get(rung) ?? new Map<number, number>();
      rungs.set(rung, at);
      if (at.has(r.job.id)) continue;
      at.set(r.job.id, loss);
      const losses = [...at.values()].sort((a, b) => a - b);
      if (losses.length < eta) continue;
      const keep = Math.max(1, Math.floor(losses.length / eta));
      if (loss > losses[keep - 1]) {
        r.killedFor = "stopped";
        r.child.kill("SIGTERM");
        emit({
          type: "stopped",
          job: r.job,
          step,
          loss,
          message: `asha: stop ${r.job.key} at step ${step} (loss ${
            loss.toFixed(4)
          } not in the best 1/${eta} at rung ${rung})`,
        });
      }
    }
  };

  const start = (job: JobRow, args: string[]) => {
    const child = new Deno.Command(opts.workerCommand[0], {
      args: [...opts.workerCommand.slice(1), ...args],
      env: { DMW_THREADS: threads },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const r: Running = { job, child, started: Date.now(), stdout: "", stderr: "" };
    // Only an evaluation's stdout carries results; a trainer's is kept as a tail.
    const keep = job.kind === "eval" ? 1 << 24 : 4000;
    drain(child.stdout, (t) => r.stdout = (r.stdout + t).slice(-keep));
    drain(child.stderr, (t) => r.stderr = (r.stderr + t).slice(-4000));
    child.status.then((s) => r.exit = s);
    running.set(job.id, r);
    reported.delete(job.id);
    store.updateJob(job.id, {
      state: "running",
      pid: child.pid,
      started: new Date().toISOString(),
      finished: null,
      attempts: job.attempts + 1,
    });
    const ev = evalByKey.get(job.key);
    emit({
      type: "start",
      job: job.id,
      message: `start ${job.kind} ${job.key}${ev ? ` (${describeEval(ev)})` : ""}`,
    });
  };

  /** Parses an evaluation's stdout into the store; an error message when it printed no result. */
  const recordEval = (job: JobRow, r: Running): string | undefined => {
    const ev = evalByKey.get(job.key)!;
    let count = 0;
    for (const line of r.stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      let res: Record<string, unknown>;
      try {
        res = JSON.parse(line);
      } catch {
        continue;
      }
      const { metric, value, n, spread, ...extra } = res;
      if (typeof metric !== "string") continue;
      const v = typeof value === "number" ? value : NaN;
      store.putEval({
        job: job.id,
        metric,
        value: v,
        n: Number(n ?? 0),
        spread: Number(spread ?? 0),
        extra: JSON.stringify(extra),
      });
      count++;
      emit({
        type: "eval",
        job,
        metric,
        value: v,
        message: `eval ${job.key} ${metric}=${v.toPrecision(4)} ±${
          Number(spread ?? 0).toPrecision(2)
        } (${describeEval(ev)})`,
      });
    }
    const samples = samplesPath(ev, r.job.runDir);
    for (const p of [samples, samples.replace(/\.png$/, ".csv")]) {
      if (fs.existsSync(p)) store.putArtifact(job.id, "samples", p);
    }
    return count ? undefined : "the evaluation printed no metric line";
  };

  const finish = (r: Running) => {
    running.delete(r.job.id);
    if (r.job.kind === "train") follow(r.job);
    const job = store.job(r.job.id)!;
    const now = new Date().toISOString();
    let error = r.exit!.success && !r.killedFor && job.kind === "eval"
      ? recordEval(job, r)
      : undefined;
    if (r.exit!.success && !r.killedFor && !error) {
      store.updateJob(job.id, {
        state: "done",
        finished: now,
        progress: 1,
        pid: null,
        error: null,
      });
      emit({ type: "done", job: job.id, message: `done ${job.kind} ${job.key}` });
      return;
    }
    if (r.killedFor === "cancelled" || r.killedFor === "stopped") {
      const state: JobState = r.killedFor;
      store.updateJob(job.id, { state, finished: now, pid: null });
      emit({ type: state, job: job.id, message: `${state} ${job.kind} ${job.key}` });
      return;
    }
    const nan = reported.get(job.id);
    error = nan ?? error ??
      (r.killedFor === "timeout" ? `timed out after ${opts.timeout} s` : undefined) ??
      lastLines(r.stderr) ??
      `exit code ${r.exit!.code}${r.exit!.signal ? ` (signal ${r.exit!.signal})` : ""}`;
    const retry = !nan && job.attempts <= maxFailures;
    store.updateJob(job.id, {
      state: retry ? "queued" : "failed",
      error,
      pid: null,
      finished: now,
    });
    emit({
      type: retry ? "retry" : "failed",
      job: job.id,
      message: `${retry ? "retry" : "failed"} ${job.kind} ${job.key}: ${error}`,
    });
  };

  for (const j of store.jobs(sweepId)) if (j.kind === "train" && planned(j)) follow(j);

  while (true) {
    for (const r of [...running.values()]) {
      if (r.job.kind === "train") follow(r.job);
      if (store.job(r.job.id)!.cancelRequested && !r.killedFor) {
        r.killedFor = "cancelled";
        r.child.kill("SIGTERM");
      }
      if (opts.timeout && !r.killedFor && Date.now() - r.started > opts.timeout * 1000) {
        r.killedFor = "timeout";
        r.child.kill("SIGKILL");
      }
      if (r.exit) finish(r);
    }
    const jobs = store.jobs(sweepId).filter(planned);
    const byKey = new Map(jobs.map((j) => [j.key, j]));
    let waiting = 0;
    for (const job of jobs) {
      const trainOf = job.kind === "eval" ? byKey.get(evalByKey.get(job.key)!.train) : undefined;
      if (
        trainOf && (trainOf.state === "queued" || trainOf.state === "running") &&
        (job.state === "failed" || job.state === "cancelled") &&
        job.error?.startsWith(`its training job ${trainOf.key} `)
      ) {
        // Its training job was put back in the queue (restart from the dashboard): wait for it again.
        store.requeue(job.id);
        job.state = "queued";
      }
      if (job.state !== "queued" || running.has(job.id)) continue;
      if (job.cancelRequested) {
        store.updateJob(job.id, { state: "cancelled" });
        emit({ type: "cancelled", job: job.id, message: `cancelled ${job.kind} ${job.key}` });
        continue;
      }
      if (job.kind === "train") {
        if (running.size < concurrency) {
          start(job, trainArgs(trainByKey.get(job.key)!, job.runDir, backend));
        } else waiting++;
        continue;
      }
      const ev = evalByKey.get(job.key)!;
      const t = byKey.get(ev.train)!;
      // A run with no events file at all (not written by this trainer) is trusted when done.
      const known = checkpoints.get(t.id);
      const ready = known ? known.has(ev.checkpoint) : t.state === "done";
      if (!ready && t.state !== "queued" && t.state !== "running") {
        const state: JobState = t.state === "cancelled" || t.state === "stopped"
          ? "cancelled"
          : "failed";
        const error =
          `its training job ${t.key} is ${t.state} (no checkpoint at step ${ev.checkpoint})`;
        store.updateJob(job.id, { state, error });
        emit({ type: state, job: job.id, message: `${state} eval ${job.key}: ${error}` });
        continue;
      }
      if (ready && running.size < concurrency) {
        start(job, evalArgs(ev, t.runDir, samplesPath(ev, t.runDir), backend));
      } else waiting++;
    }
    if (running.size === 0 && waiting === 0) break;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 250));
  }
  const final = store.jobs(sweepId).filter(planned);
  return {
    done: final.filter((j) => j.state === "done").length,
    failed: final.filter((j) => j.state === "failed").length,
  };
}
