/**
 * The local executor: runs a plan's jobs on this machine, at most
 * `concurrency` at a time, each evaluation as soon as its checkpoint is
 * recorded, with retries, cancellation requests and ASHA early termination.
 * Running one job is lib/sweep/jobrun.ts, shared with the distributed worker
 * (lib/sweep/worker.ts); this file only decides which job runs when.
 */
import { dirname, join, resolve } from "node:path";
import * as fs from "node:fs";
import type { JobRow, JobState, Store } from "../store/store.ts";
import {
  checkpointStep,
  describeEval,
  evalArgs,
  EventTail,
  type ExecutorUpdate,
  ingestEvents,
  type RunContext,
  runJob,
  samplesPath,
  settle,
  trainArgs,
} from "./jobrun.ts";
import { lockHolder } from "./lock.ts";
import type { EvalJob, Plan, TrainJob } from "./planner.ts";

export { evalArgs, type ExecutorUpdate, samplesPath, trainArgs } from "./jobrun.ts";

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
  /** Aborting (Ctrl-C) kills the running jobs and puts them back in the queue; nothing new starts. */
  signal?: AbortSignal;
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

/** The equal share of this machine's cores each of `concurrency` jobs gets, unless DMW_THREADS says. */
export function threadsPerJob(concurrency: number): string {
  return Deno.env.get("DMW_THREADS") ||
    String(Math.max(1, Math.floor((navigator.hardwareConcurrency || 1) / concurrency)));
}

/**
 * ASHA over training losses: rung step → job id → loss at the first logged
 * step at or past the rung. `check` says why a job should stop, if it should.
 */
export class Asha {
  readonly #rungs = new Map<number, Map<number, number>>();

  /** Successive halving with rungs at minIter·eta^k. */
  constructor(readonly minIter: number, readonly eta: number) {}

  /** Records `loss` at `step` of job `id`; a reason when it is not in the best 1/eta at a rung. */
  check(id: number, key: string, step: number, loss: number): string | undefined {
    for (let rung = this.minIter; rung <= step; rung *= this.eta) {
      const at = this.#rungs.get(rung) ?? new Map<number, number>();
      this.#rungs.set(rung, at);
      if (at.has(id)) continue;
      at.set(id, loss);
      const losses = [...at.values()].sort((a, b) => a - b);
      if (losses.length < this.eta) continue;
      const keep = Math.max(1, Math.floor(losses.length / this.eta));
      if (loss > losses[keep - 1]) {
        return `asha: stop ${key} at step ${step} (loss ${
          loss.toFixed(4)
        } not in the best 1/${this.eta} at rung ${rung})`;
      }
    }
    return undefined;
  }
}

/**
 * What an evaluation waits for: whether its checkpoint is recorded, and
 * when it can never be (its training job ended without it), the state and
 * reason it ends with. A run with no checkpoint recorded at all (not written
 * by this trainer) is trusted when done.
 */
export function evalReadiness(
  ev: EvalJob,
  train: JobRow,
  checkpoints: Set<number>,
): { ready: boolean; end?: { state: JobState; error: string } } {
  const ready = checkpoints.size ? checkpoints.has(ev.checkpoint) : train.state === "done";
  if (ready || train.state === "queued" || train.state === "running") return { ready };
  const state: JobState = train.state === "cancelled" || train.state === "stopped"
    ? "cancelled"
    : "failed";
  return {
    ready,
    end: {
      state,
      error:
        `its training job ${train.key} is ${train.state} (no checkpoint at step ${ev.checkpoint})`,
    },
  };
}

/**
 * Whether an evaluation goes back to the queue because its training job is
 * queued or running again (a restart, `--restart-failed`, a changed
 * training job): it never ran (no attempt) and ended only because that
 * training job had ended without its checkpoint. One cancelled by hand
 * (its cancel request stays recorded) stays cancelled.
 */
export function backWithTraining(job: JobRow, train: JobRow | undefined): boolean {
  return !!train && (train.state === "queued" || train.state === "running") &&
    (job.state === "failed" || job.state === "cancelled") && job.attempts === 0 &&
    !job.cancelRequested;
}

/** The steps of a training job's recorded checkpoints. */
export async function recordedCheckpoints(store: Store, jobId: number): Promise<Set<number>> {
  const steps = (await store.artifacts(jobId)).filter((a) => a.kind === "checkpoint")
    .map((a) => checkpointStep(a.path)).filter((s): s is number => s !== undefined);
  return new Set(steps);
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
  const emit = async (u: Omit<ExecutorUpdate, "job"> & { job: JobRow | number }) =>
    opts.onUpdate?.({
      ...u,
      job: typeof u.job === "number" ? (await store.job(u.job))! : u.job,
    });
  const asha = opts.earlyTerminate &&
    new Asha(opts.earlyTerminate.minIter, opts.earlyTerminate.eta);
  const ctx: RunContext = {
    store,
    workerCommand: opts.workerCommand,
    threads: threadsPerJob(concurrency),
    backend: opts.backend ?? "auto",
    timeout: opts.timeout ?? 0,
    pollMs: opts.pollMs ?? 250,
    emit: (u) => opts.onUpdate?.(u),
    onTrainPoint: asha && ((job, step, loss) => asha.check(job.id, job.key, step, loss)),
  };
  const trainByKey = new Map(plan.train.map((t) => [t.key, t]));
  const evalByKey = new Map(plan.eval.map((e) => [e.key, e]));
  const planned = (j: JobRow) => trainByKey.has(j.key) || evalByKey.has(j.key);
  const running = new Map<number, Promise<void>>();

  for (const j of await store.jobs(sweepId)) {
    if (j.state !== "running") continue;
    // Another sweep process (its runs in another folder) has this job: leave it alone.
    const lock = join(dirname(j.runDir), "sweep.lock");
    const owner = lockHolder(lock);
    if (owner) {
      throw new Error(
        `job ${j.key} is running under sweep process ${owner} (${lock}); ` +
          "`deno task watch` shows that sweep; run this one again when it has ended",
      );
    }
    if (j.pid && await stopOrphan(j.pid, j.runDir)) {
      await emit({
        type: "resume",
        job: j,
        message: `stopped orphaned worker ${j.pid} of ${j.key}`,
      });
    }
    await store.updateJob(j.id, { state: "queued", pid: null });
    await emit({
      type: "resume",
      job: j.id,
      message: `resume ${j.kind} ${j.key}: was running when the sweep stopped; queued again`,
    });
  }
  // What a killed sweep's runs logged after its last poll.
  for (const j of await store.jobs(sweepId)) {
    if (j.kind === "train" && planned(j)) {
      await ingestEvents(ctx, j, j.runDir, new EventTail(j.runDir));
    }
  }

  const start = async (job: JobRow, spec: TrainJob | EvalJob, runDir: string, args: string[]) => {
    const claimed = { ...job, attempts: job.attempts + 1 };
    await store.updateJob(job.id, {
      state: "running",
      started: new Date().toISOString(),
      finished: null,
      attempts: claimed.attempts,
      host: Deno.hostname(),
    });
    const ev = evalByKey.get(job.key);
    await emit({
      type: "start",
      job: job.id,
      message: `start ${job.kind} ${job.key}${ev ? ` (${describeEval(ev)})` : ""}`,
    });
    running.set(
      job.id,
      runJob(ctx, claimed, spec, runDir, args, opts.signal)
        .then(async (outcome) => {
          if (outcome.state !== "lost") {
            return await settle(store, claimed, outcome, maxFailures, ctx.emit);
          }
          const back = { state: "queued" as const, pid: null };
          await store.updateJobIf(job.id, { state: "running", attempts: claimed.attempts }, back);
          await emit({
            type: "retry",
            job: job.id,
            message: `stopped ${job.kind} ${job.key} with the sweep; queued again`,
          });
        })
        .then(() => {}, async (e: Error) => {
          await store.updateJob(job.id, { state: "failed", error: e.message, pid: null });
        })
        .finally(() => running.delete(job.id)),
    );
  };

  const stopped = new Promise((r) => opts.signal?.addEventListener("abort", r, { once: true }));
  while (!opts.signal?.aborted) {
    const jobs = (await store.jobs(sweepId)).filter(planned);
    const byKey = new Map(jobs.map((j) => [j.key, j]));
    const checkpoints = new Map<number, Set<number>>();
    let waiting = 0;
    for (const job of jobs) {
      if (running.has(job.id)) continue;
      const ev = evalByKey.get(job.key);
      const trainOf = ev && byKey.get(ev.train);
      if (backWithTraining(job, trainOf)) {
        await store.requeue(job.id);
        job.state = "queued";
      }
      if (job.state !== "queued") continue;
      if (job.cancelRequested) {
        await store.updateJob(job.id, { state: "cancelled" });
        await emit({ type: "cancelled", job: job.id, message: `cancelled ${job.kind} ${job.key}` });
        continue;
      }
      if (!ev) {
        const t = trainByKey.get(job.key)!;
        if (running.size < concurrency) {
          await start(job, t, job.runDir, trainArgs(t, job.runDir, ctx.backend));
        } else waiting++;
        continue;
      }
      const t = trainOf!;
      if (!checkpoints.has(t.id)) checkpoints.set(t.id, await recordedCheckpoints(store, t.id));
      const { ready, end } = evalReadiness(ev, t, checkpoints.get(t.id)!);
      if (end) {
        await store.updateJob(job.id, end);
        await emit({
          type: end.state as ExecutorUpdate["type"],
          job: job.id,
          message: `${end.state} eval ${job.key}: ${end.error}`,
        });
        continue;
      }
      if (ready && running.size < concurrency) {
        await start(
          job,
          ev,
          t.runDir,
          evalArgs(ev, t.runDir, samplesPath(ev, t.runDir), ctx.backend),
        );
      } else waiting++;
    }
    if (running.size === 0 && waiting === 0) break;
    await Promise.race([
      new Promise((r) => setTimeout(r, ctx.pollMs)),
      stopped,
      ...running.values(),
    ]);
  }
  await Promise.allSettled(running.values());
  const final = (await store.jobs(sweepId)).filter(planned);
  return {
    done: final.filter((j) => j.state === "done").length,
    failed: final.filter((j) => j.state === "failed").length,
  };
}
