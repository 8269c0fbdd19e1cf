/**
 * The executor: runs a plan's jobs in child processes (a crash or an
 * out-of-memory kills one job, not the sweep), at most `concurrency` at a
 * time, evaluations as soon as their checkpoint exists. It follows each
 * training run's events.jsonl into the store as it grows, parses the
 * evaluation's JSON lines, applies timeouts, retries, cancellation requests
 * and ASHA early termination, and reports every event to a callback.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import type { JobRow, Store } from "../store/store.ts";
import type { EvalJob, Plan, TrainJob } from "./planner.ts";

/** Options of {@link execute}. */
export interface ExecuteOptions {
  store: Store;
  sweepId: number;
  plan: Plan;
  /** The command that runs main.ts, e.g. [deno, "run", "-A", "main.ts"]. */
  workerCommand: string[];
  /** Jobs at a time. @default navigator.hardwareConcurrency */
  concurrency?: number;
  /** Attempts before a job is marked failed. @default 1 */
  maxFailures?: number;
  /** Per-job timeout in seconds; 0 = none. @default 0 */
  timeout?: number;
  /** Backend for the children. @default "auto" */
  backend?: string;
  /** ASHA early termination of training jobs on their training loss. */
  earlyTerminate?: { minIter: number; eta: number };
  /** Called with one plain line per event. */
  onEvent?: (line: string) => void;
  /** How often the store is refreshed, ms. @default 250 */
  pollMs?: number;
}

interface Running {
  job: JobRow;
  child: Deno.ChildProcess;
  started: number;
  /** Bytes of events.jsonl already read. */
  offset: number;
  stdout: string;
  stderr: string;
  exit?: Deno.CommandStatus;
  killedFor?: "cancelled" | "timeout" | "stopped";
}

/** Whether a process id is alive. */
function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

function setArgs(config: Record<string, unknown>): string[] {
  return Object.entries(config).flatMap(([k, v]) => ["--set", `${k}=${JSON.stringify(v)}`]);
}

/** Command-line arguments of a training job. */
export function trainArgs(t: TrainJob, runDir: string, backend: string): string[] {
  return [
    "train",
    "--model",
    t.model,
    "--data",
    t.data,
    "--out",
    runDir,
    "--backend",
    backend,
    ...setArgs(t.config),
  ];
}

/** Command-line arguments of an evaluation job. */
export function evalArgs(
  ev: EvalJob,
  runDir: string,
  samplesOut: string,
  backend: string,
): string[] {
  const s = ev.settings;
  const args = [
    "eval",
    "--run",
    runDir,
    "--checkpoint",
    String(ev.checkpoint),
    "--backend",
    backend,
  ];
  args.push("--samples-out", samplesOut);
  if (s.sampler) args.push("--sampler", String(s.sampler));
  if (s.sample_steps) args.push("--steps", String(s.sample_steps));
  if (s.ema_eval) args.push("--ema", String(s.ema_eval));
  if (s.eta) args.push("--eta", String(s.eta));
  if (s.clip) args.push("--clip", String(s.clip));
  if (s.guidance) args.push("--guidance", String(s.guidance));
  if (s.n_eval) args.push("--n", String(s.n_eval));
  if (s.eval_seed) args.push("--seed", String(s.eval_seed));
  for (const m of ev.metrics) args.push("--metric", m);
  return args;
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  sink: (text: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
}

/**
 * Runs every queued job of the plan until none is left; returns the counts.
 * Jobs left `running` by a killed sweep are taken back (their orphaned
 * processes stopped) and run again; a training job resumes from its
 * checkpoint by itself.
 */
export async function execute(opts: ExecuteOptions): Promise<{ done: number; failed: number }> {
  const { store, sweepId, plan } = opts;
  const concurrency = opts.concurrency || navigator.hardwareConcurrency || 2;
  const maxFailures = opts.maxFailures ?? 1;
  const backend = opts.backend ?? "auto";
  const say = opts.onEvent ?? (() => {});
  const trainByKey = new Map(plan.train.map((t) => [t.key, t]));
  const evalByKey = new Map(plan.eval.map((e) => [e.key, e]));
  const planned = new Set([...trainByKey.keys(), ...evalByKey.keys()]);
  const running = new Map<number, Running>();
  const rungs = new Map<number, Map<number, number>>(); // rung step → job → loss

  for (const j of store.jobs(sweepId)) {
    if (j.state === "running") {
      if (j.pid && alive(j.pid)) {
        try {
          Deno.kill(j.pid, "SIGKILL");
        } catch { /* already gone */ }
      }
      store.updateJob(j.id, { state: "queued", pid: null });
      say(`resume ${j.kind} ${j.key}: was running when the sweep stopped; queued again`);
    }
  }

  const jobByKey = () => new Map(store.jobs(sweepId).map((j) => [j.key, j]));

  const start = (job: JobRow, args: string[]) => {
    const child = new Deno.Command(opts.workerCommand[0], {
      args: [...opts.workerCommand.slice(1), ...args],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const r: Running = { job, child, started: Date.now(), offset: 0, stdout: "", stderr: "" };
    drain(child.stdout, (t) => r.stdout += t);
    drain(child.stderr, (t) => r.stderr = (r.stderr + t).slice(-4000));
    child.status.then((s) => r.exit = s);
    running.set(job.id, r);
    store.updateJob(job.id, {
      state: "running",
      pid: child.pid,
      started: new Date().toISOString(),
      attempts: job.attempts + 1,
    });
    say(
      `start ${job.kind} ${job.key}${
        job.kind === "eval" ? ` (${describeEval(evalByKey.get(job.key)!)})` : ""
      }`,
    );
  };

  const follow = (r: Running) => {
    const path = join(r.job.runDir, "events.jsonl");
    if (!fs.existsSync(path)) return;
    const size = fs.statSync(path).size;
    if (size <= r.offset) return;
    const fd = fs.openSync(path, "r");
    const buf = new Uint8Array(size - r.offset);
    fs.readSync(fd, buf, 0, buf.length, r.offset);
    fs.closeSync(fd);
    const text = new TextDecoder().decode(buf);
    const end = text.lastIndexOf("\n");
    if (end < 0) return;
    r.offset += new TextEncoder().encode(text.slice(0, end + 1)).length;
    const rows = [];
    const total = trainByKey.get(r.job.key)!.config.steps as number;
    for (const line of text.slice(0, end).split("\n")) {
      if (!line.trim()) continue;
      const e = JSON.parse(line);
      if (e.type === "train") {
        rows.push({
          job: r.job.id,
          step: e.step,
          loss: e.loss,
          bands: JSON.stringify(e.bands),
          lr: e.lr,
          stepsPerSec: e.stepsPerSec,
        });
        store.updateJob(r.job.id, { progress: e.step / total });
        say(
          `train ${r.job.key} step ${e.step}/${total} loss ${e.loss.toFixed(4)} ${
            e.stepsPerSec.toFixed(1)
          } steps/s`,
        );
        if (opts.earlyTerminate) asha(r, e.step, e.loss);
      } else if (e.type === "checkpoint") {
        store.putArtifact(r.job.id, "checkpoint", join(r.job.runDir, e.path));
      } else if (e.type === "failed") {
        store.updateJob(r.job.id, { error: `${e.reason} (step ${e.step})` });
      }
    }
    store.putMetrics(rows);
  };

  const asha = (r: Running, step: number, loss: number) => {
    const { minIter, eta } = opts.earlyTerminate!;
    for (let rung = minIter; rung <= step; rung *= eta) {
      if (rung !== step) continue;
      const at = rungs.get(rung) ?? new Map<number, number>();
      at.set(r.job.id, loss);
      rungs.set(rung, at);
      const losses = [...at.values()].sort((a, b) => a - b);
      if (losses.length < eta) return;
      const keep = Math.max(1, Math.floor(losses.length / eta));
      if (loss > losses[keep - 1]) {
        r.killedFor = "stopped";
        r.child.kill("SIGTERM");
        say(
          `asha: stop ${r.job.key} at step ${step} (loss ${
            loss.toFixed(4)
          } not in the top 1/${eta})`,
        );
      }
    }
  };

  const finish = (r: Running) => {
    running.delete(r.job.id);
    const job = store.job(r.job.id)!;
    const ok = r.exit!.success && !r.killedFor;
    if (job.kind === "train") follow(r);
    if (ok && job.kind === "eval") {
      const ev = evalByKey.get(job.key)!;
      for (const line of r.stdout.split("\n")) {
        if (!line.startsWith("{")) continue;
        const res = JSON.parse(line);
        const { metric, value, n, spread, ...extra } = res;
        store.putEval({ job: job.id, metric, value, n, spread, extra: JSON.stringify(extra) });
        say(
          `eval ${job.key} ${metric}=${Number(value).toPrecision(4)} ±${
            Number(spread).toPrecision(2)
          } (${describeEval(ev)})`,
        );
      }
      const samples = samplesPath(ev, r.job.runDir);
      for (const p of [samples, samples.replace(/\.png$/, ".csv")]) {
        if (fs.existsSync(p)) store.putArtifact(job.id, "samples", p);
      }
    }
    const now = new Date().toISOString();
    if (ok) {
      store.updateJob(job.id, { state: "done", finished: now, progress: 1, pid: null });
      say(`done ${job.kind} ${job.key}`);
    } else if (r.killedFor) {
      const state = r.killedFor === "timeout" ? "failed" : r.killedFor;
      store.updateJob(job.id, {
        state,
        finished: now,
        pid: null,
        error: r.killedFor === "timeout" ? `timed out after ${opts.timeout}s` : job.error,
      });
      say(`${state} ${job.kind} ${job.key}`);
    } else {
      const reason = job.error ?? lastLines(r.stderr) ?? `exit code ${r.exit!.code}`;
      const retry = job.attempts < maxFailures;
      store.updateJob(job.id, {
        state: retry ? "queued" : "failed",
        error: reason,
        pid: null,
        finished: now,
      });
      say(`${retry ? "retry" : "failed"} ${job.kind} ${job.key}: ${reason}`);
    }
  };

  while (true) {
    const jobs = jobByKey();
    for (const r of [...running.values()]) {
      if (r.job.kind === "train") follow(r);
      const fresh = store.job(r.job.id)!;
      if (fresh.cancel && !r.killedFor) {
        r.killedFor = "cancelled";
        r.child.kill("SIGTERM");
      }
      if (opts.timeout && !r.killedFor && Date.now() - r.started > opts.timeout * 1000) {
        r.killedFor = "timeout";
        r.child.kill("SIGKILL");
      }
      if (r.exit) finish(r);
    }
    let waiting = 0;
    for (const job of jobs.values()) {
      if (!planned.has(job.key) || job.state !== "queued" || running.has(job.id)) continue;
      if (job.cancel) {
        store.updateJob(job.id, { state: "cancelled" });
        continue;
      }
      if (job.kind === "train") {
        if (running.size < concurrency) {
          start(job, trainArgs(trainByKey.get(job.key)!, job.runDir, backend));
        } else waiting++;
        continue;
      }
      const ev = evalByKey.get(job.key)!;
      const t = jobs.get(ev.train)!;
      if (t.state === "failed" || t.state === "cancelled" || t.state === "stopped") {
        store.updateJob(job.id, {
          state: "failed",
          error: `its training job ${t.key} is ${t.state}`,
        });
        say(`failed eval ${job.key}: its training job is ${t.state}`);
        continue;
      }
      const ready = t.state === "done" ||
        fs.existsSync(
          join(t.runDir, "ckpt", `step-${String(ev.checkpoint).padStart(8, "0")}`, "state.json"),
        );
      if (ready && running.size < concurrency) {
        start(job, evalArgs(ev, t.runDir, samplesPath(ev, t.runDir), backend));
      } else waiting++;
    }
    if (running.size === 0 && waiting === 0) break;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 250));
  }
  const final = store.jobs(sweepId).filter((j) => planned.has(j.key));
  return {
    done: final.filter((j) => j.state === "done").length,
    failed: final.filter((j) => j.state === "failed").length,
  };
}

/** Where an evaluation job writes its samples (PNG; 2-D and tabular samples also get a CSV). */
export function samplesPath(ev: EvalJob, runDir: string): string {
  return join(runDir, "samples", `${ev.key}.png`);
}

function describeEval(ev: EvalJob): string {
  const s = Object.entries(ev.settings).map(([k, v]) => `${k}=${v}`).join(" ");
  return `step ${ev.checkpoint}${s ? " " + s : ""}`;
}

function lastLines(text: string): string | undefined {
  const lines = text.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g"), "")
    .split(/[\r\n]+/).map((l) => l.trim())
    .filter(Boolean);
  return lines.length ? lines.slice(-3).join(" | ") : undefined;
}
