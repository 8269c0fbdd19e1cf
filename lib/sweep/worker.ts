/**
 * The distributed worker (`deno task worker --store postgres://…`): on any
 * machine, takes jobs of every running sweep in the database from their
 * pg-boss queues (lib/sweep/queue.ts), at most `concurrency` at a time across
 * sweeps, and runs each with lib/sweep/jobrun.ts, as the local executor does.
 *
 * No filesystem is shared between machines. Each attempt of a job runs in its
 * own folder under this machine's runs folder (`<runs>/<sweep>/<key>/a<N>/`,
 * an evaluation's `<runs>/<sweep>/<train key>/eval-<key>-a<N>/`), filled from
 * the store before the child starts: a training job's latest stored
 * checkpoint (it resumes from there), an evaluation's checkpoint. Every
 * checkpoint a training run writes goes into the store (chunked, streamed),
 * and the evaluations of that step are sent to the queue in the transaction
 * that records it. An evaluation's sample files go into the store too (as on
 * a local sweep: lib/sweep/jobrun.ts).
 *
 * While a job runs the worker heartbeats its queue job; when the queue says
 * the job was taken from it (its heartbeat lapsed, another worker has it now)
 * or the store's attempt is no longer its own, it kills the child and
 * records nothing more of it.
 */
import * as fs from "node:fs";
import { join, relative } from "node:path";
import type { PgBoss } from "pg-boss";
import { fileURLToPath } from "node:url";
import {
  isPostgresUrl,
  type JobRow,
  openStore,
  retryConnection,
  type SqlExecutor,
  type Store,
  type SweepRow,
} from "../store/store.ts";
import { checkpointName } from "../trainer/checkpoint.ts";
import { recordedCheckpoints, threadsPerJob } from "./executor.ts";
import {
  describeEval,
  evalArgs,
  type ExecutorUpdate,
  type RunContext,
  runJob,
  samplesPath,
  settle,
  trainArgs,
} from "./jobrun.ts";
import type { EvalJob, TrainJob } from "./planner.ts";
import { enqueue, openQueue, type QueueData, queueName, TOUCH_MS } from "./queue.ts";

/** Options of {@link runWorker}. */
export interface WorkerOptions {
  /** The shared store (PostgreSQL). */
  store: Store & SqlExecutor;
  /** The queue on the store's database. */
  boss: PgBoss;
  /** This machine's folder of attempt folders. @default "runs" */
  runsDir?: string;
  /** The command that runs main.ts, e.g. [deno, "run", "-A", "/abs/main.ts"]. */
  workerCommand: string[];
  /** Jobs at a time, across sweeps. @default navigator.hardwareConcurrency */
  concurrency?: number;
  /** DMW_THREADS of each job. @default cores ÷ concurrency */
  threads?: number;
  /** Backend of the children ("auto" passes none). @default "auto" */
  backend?: string;
  /** Only this sweep's queue (a coordinator's own worker); absent = every running sweep. */
  sweepId?: number;
  /** Retries of a crashed or timed-out job before it is marked failed. @default 1 */
  maxFailures?: number;
  /** Per-job timeout in seconds; 0 = none. @default 0 */
  timeout?: number;
  /** How often queues and the store are polled, ms. @default 500 */
  pollMs?: number;
  /** Called on every event of a job. */
  onUpdate?: (update: ExecutorUpdate) => void;
  /** Called with a line when the queue or the store cannot be reached (the worker goes on trying). */
  onProblem?: (line: string) => void;
  /** Aborting stops taking jobs; the running ones are killed and left to the queue. */
  signal?: AbortSignal;
}

/** Walks a folder: every file's path relative to `root`. */
function walk(dir: string, root = dir): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name), root) : [relative(root, join(dir, e.name))]
  );
}

/** Copies a stored checkpoint (and the run's config.json) of training job `train` into `dir`. */
async function restoreCheckpoint(
  store: Store,
  train: number,
  step: number,
  dir: string,
): Promise<void> {
  const prefix = `ckpt/${checkpointName(step)}/`;
  const names = await store.files(train, prefix);
  if (!names.length || !await store.getFile(train, "config.json", join(dir, "config.json"))) {
    throw new Error(`${store.location}: checkpoint ${prefix} of job ${train} is not in the store`);
  }
  for (const name of names) await store.getFile(train, name, join(dir, name));
}

/**
 * Runs jobs from the queues until `signal` aborts. A job is claimed in the
 * store (queued → running at attempt N + 1, or running at N → N + 1 when the
 * queue handed out a dead worker's job), run, settled in the store only while
 * the claim is still this worker's, and then completed in the queue (or
 * failed there, so that the queue hands it out again, when the store put it
 * back in the queue for a retry).
 */
export async function runWorker(opts: WorkerOptions): Promise<void> {
  const { store, boss } = opts;
  const concurrency = opts.concurrency || navigator.hardwareConcurrency || 2;
  const maxFailures = opts.maxFailures ?? 1;
  const runsDir = opts.runsDir ?? "runs";
  const emit = (u: ExecutorUpdate) => opts.onUpdate?.(u);
  const running = new Map<string, Promise<void>>();
  const aborts = new Set<AbortController>();
  const host = Deno.hostname();
  const stopped = new Promise((r) => opts.signal?.addEventListener("abort", r, { once: true }));
  opts.signal?.addEventListener("abort", () => aborts.forEach((a) => a.abort()));

  const ctxFor = (sweep: SweepRow): RunContext => ({
    store,
    workerCommand: opts.workerCommand,
    threads: opts.threads ? String(opts.threads) : threadsPerJob(concurrency),
    backend: opts.backend ?? "auto",
    timeout: opts.timeout ?? 0,
    pollMs: 250,
    emit,
    recordCheckpoint: async (job, step, dir, rel) => {
      for (const f of walk(join(dir, rel))) {
        await store.putFile(job.id, join(rel, f), join(dir, rel, f));
      }
      await store.putFile(job.id, "config.json", join(dir, "config.json"));
      await store.transaction(async (tx) => {
        const row = await tx.job(job.id);
        if (row?.state !== "running" || row.attempts !== job.attempts) return;
        await tx.putArtifact(job.id, "checkpoint", rel);
        for (const e of await tx.jobs(sweep.id)) {
          if (e.kind !== "eval" || e.state !== "queued") continue;
          const ev = JSON.parse(e.spec) as EvalJob;
          if (ev.train === job.key && ev.checkpoint === step) await enqueue(boss, tx, e, tx);
        }
      });
    },
  });

  const run = async (sweep: SweepRow, q: { id: string; retryCount: number }, row: JobRow) => {
    const name = queueName(sweep.id);
    const claimed = { ...row, state: "running" as const, attempts: row.attempts + 1 };
    const won = await store.updateJobIf(row.id, { state: row.state, attempts: row.attempts }, {
      state: "running",
      attempts: claimed.attempts,
      started: new Date().toISOString(),
      finished: null,
      pid: null,
      host,
    }).catch((e) => {
      // Unclaimed, it is handed out again once its heartbeat lapses.
      opts.onProblem?.(`${row.kind} ${row.key}: not claimed (${(e as Error).message})`);
      return false;
    });
    if (!won) return;
    const ctx = ctxFor(sweep);
    const abort = new AbortController();
    aborts.add(abort);
    const beat = setInterval(async () => {
      try {
        // pg-boss answers { affected }, which its typings leave out.
        const touched = await boss.touch(name, q) as { affected?: number };
        const now = await store.job(row.id);
        if (!touched.affected || now?.attempts !== claimed.attempts) abort.abort();
      } catch {
        // The database is away for now; the queue decides when that costs this worker the job.
      }
    }, TOUCH_MS);
    let scratch: string | undefined;
    try {
      let spec: TrainJob | EvalJob;
      const restore = (train: number, step: number, dir: string) =>
        retryConnection(() => restoreCheckpoint(store, train, step, dir), opts.onProblem);
      let dir: string;
      let args: string[];
      if (row.kind === "train") {
        const t = JSON.parse(row.spec) as TrainJob;
        dir = join(runsDir, sweep.name, row.key, `a${claimed.attempts}`);
        const steps = [...await recordedCheckpoints(store, row.id)].sort((a, b) => a - b);
        if (steps.length) await restore(row.id, steps.at(-1)!, dir);
        spec = t;
        args = trainArgs(t, dir, ctx.backend);
      } else {
        const ev = JSON.parse(row.spec) as EvalJob;
        const train = (await store.jobs(sweep.id)).find((j) => j.key === ev.train);
        if (!train) throw new Error(`${store.location}: training job ${ev.train} is missing`);
        dir = scratch = join(runsDir, sweep.name, ev.train, `eval-${row.key}-a${claimed.attempts}`);
        await restore(train.id, ev.checkpoint, dir);
        spec = ev;
        args = evalArgs(ev, dir, samplesPath(ev, dir), ctx.backend);
      }
      emit({
        type: "start",
        job: claimed,
        message: `start ${row.kind} ${row.key} on ${host}${
          row.kind === "eval" ? ` (${describeEval(spec as EvalJob)})` : ""
        }`,
      });
      const outcome = await runJob(ctx, claimed, spec, dir, args, abort.signal);
      if (outcome.state === "lost" && opts.signal?.aborted) {
        await putBack(name, q, claimed);
        return;
      }
      const state = await retryConnection(
        () => settle(store, claimed, outcome, maxFailures, emit),
        opts.onProblem,
      );
      await retryConnection(async () => {
        if (state === "queued") {
          await boss.fail(name, q, { error: (outcome as { error: string }).error });
        } else if (state) await boss.complete(name, q, { state });
      }, opts.onProblem);
    } catch (e) {
      const error = (e as Error).message;
      const failed = {
        state: "failed" as const,
        error,
        pid: null,
        finished: new Date().toISOString(),
      };
      try {
        const claim = { state: "running" as const, attempts: claimed.attempts };
        if (await retryConnection(() => store.updateJobIf(row.id, claim, failed), opts.onProblem)) {
          await boss.complete(name, q, { state: "failed" });
        }
        emit({ type: "failed", job: claimed, message: `failed ${row.kind} ${row.key}: ${error}` });
      } catch (e2) {
        // The store stayed away: the queue hands the job out again once its heartbeat lapses.
        opts.onProblem?.(
          `${row.kind} ${row.key}: ${error}; not recorded (${(e2 as Error).message})`,
        );
      }
    } finally {
      clearInterval(beat);
      aborts.delete(abort);
      if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    }
  };

  // This worker stops (Ctrl-C, or its sweep's coordinator stops) with the job still its own: back
  // in the store's queue, and failed in pg-boss's, so that the next worker takes it at once (this
  // attempt counts, as a lost one does). The store away: its heartbeat lapsing hands it out.
  const putBack = async (name: string, q: { id: string; retryCount: number }, claimed: JobRow) => {
    const claim = { state: "running" as const, attempts: claimed.attempts };
    try {
      if (!await store.updateJobIf(claimed.id, claim, { state: "queued", pid: null })) return;
      await boss.fail(name, q, { error: `its worker on ${host} stopped` });
      emit({
        type: "retry",
        job: { ...claimed, state: "queued" },
        message: `stopped ${claimed.kind} ${claimed.key} with the worker on ${host}; queued again`,
      });
    } catch (e) {
      opts.onProblem?.(`${claimed.kind} ${claimed.key}: not put back (${(e as Error).message})`);
    }
  };

  const take = async (sweep: SweepRow, free: number) => {
    const name = queueName(sweep.id);
    if (!await boss.getQueue(name)) return 0;
    const got = await boss.fetch<QueueData>(name, { batchSize: free });
    for (const q of got) {
      const row = await store.job(q.data.job);
      if (!row || (row.state !== "queued" && row.state !== "running")) {
        // Settled meanwhile (cancelled by the coordinator, or a stale round): nothing to run.
        await boss.complete(name, q, { state: row?.state ?? "missing" });
        continue;
      }
      const p = run(sweep, q, row)
        .catch((e) => opts.onProblem?.(`${row.kind} ${row.key}: ${(e as Error).message}`))
        .finally(() => running.delete(q.id));
      running.set(q.id, p);
    }
    return got.length;
  };

  while (!opts.signal?.aborted) {
    try {
      const sweeps = (await store.sweeps()).filter((s) =>
        s.status === "running" && (opts.sweepId === undefined || s.id === opts.sweepId)
      );
      for (const sweep of sweeps) {
        const free = concurrency - running.size;
        if (free <= 0) break;
        await take(sweep, free);
      }
    } catch (e) {
      opts.onProblem?.(`worker on ${host}: ${(e as Error).message} (trying again)`);
    }
    await Promise.race([
      new Promise((r) => setTimeout(r, opts.pollMs ?? 500)),
      stopped,
      ...running.values(),
    ]);
  }
  await Promise.allSettled(running.values());
}

/** Options of {@link workerCommand}. */
export interface WorkerCommandOptions {
  /** The shared store: a postgres:// URL. */
  storePath: string;
  /** Jobs at a time. @default navigator.hardwareConcurrency */
  concurrency?: number;
  /** This machine's folder of attempt folders. @default "runs" */
  runsDir?: string;
  /** Backend of the jobs. @default "auto" */
  backend?: string;
  /** Command running main.ts for the jobs. @default this project's main.ts */
  workerCommand?: string[];
  /** Sink of plain lines. @default console.log */
  onEvent?: (line: string) => void;
  /** Aborting stops the worker. @default SIGINT or SIGTERM */
  signal?: AbortSignal;
}

/**
 * `deno task worker --store postgres://…`: joins every running sweep in that
 * database until Ctrl-C (its running jobs are killed; the queue hands them to
 * another worker after their heartbeat lapses). A database not reachable yet
 * is waited for ({@link REACH_RETRY_MS}), with one line saying so.
 */
export async function workerCommand(opts: WorkerCommandOptions): Promise<void> {
  const say = opts.onEvent ?? ((l: string) => console.log(l));
  if (!isPostgresUrl(opts.storePath)) {
    throw new Error(
      `--store ${opts.storePath}: a worker needs the sweep's PostgreSQL store (postgres://user@host:port/db); ` +
        "a sweep on an SQLite store runs its jobs itself",
    );
  }
  const stop = new AbortController();
  opts.signal?.addEventListener("abort", () => stop.abort());
  const signals = opts.signal ? [] : (["SIGINT", "SIGTERM"] as const);
  const onSignal = () => stop.abort();
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const time = () => new Date().toISOString().slice(11, 19);
  const line = (l: string) => say(`${time()} ${l}`);
  let store: (Store & SqlExecutor) | undefined;
  // A database not up yet (or a network away) is waited for; a wrong password or a missing
  // database ends the worker at once.
  const reachable = <T>(open: () => Promise<T>) =>
    retryConnection(open, {
      intervalMs: REACH_RETRY_MS,
      maxMs: Infinity,
      signal: stop.signal,
      onWait: (e) =>
        line(
          `worker on ${Deno.hostname()}: ${e.message.split("; ")[0]}; ` +
            `trying again every ${REACH_RETRY_MS / 1000} s (Ctrl-C stops)`,
        ),
      onBack: () => line(`worker on ${Deno.hostname()}: the database answers; starting`),
    });
  try {
    const opened = await reachable(() => openStore(opts.storePath));
    store = opened;
    const boss = await reachable(() => openQueue(opened, line));
    try {
      const concurrency = opts.concurrency || navigator.hardwareConcurrency || 2;
      say(
        `worker on ${Deno.hostname()}: ${concurrency} jobs at a time from every running sweep in ` +
          `${opened.location}`,
      );
      await runWorker({
        store: opened,
        boss,
        concurrency,
        runsDir: opts.runsDir,
        backend: opts.backend,
        workerCommand: opts.workerCommand ?? defaultWorkerCommand(),
        onUpdate: (u) => u.type !== "train" && say(`${time()} ${u.message}`),
        onProblem: (l) => say(`${time()} ${l}`),
        signal: stop.signal,
      });
    } finally {
      await boss.stop({ timeout: 2000 }).catch(() => {});
    }
  } catch (e) {
    // Stopped while waiting for the database: nothing ran, nothing to report.
    if (e !== stop.signal.reason) throw e;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await store?.close();
  }
}

/** How often a worker that cannot reach the database at its start tries again, ms. */
export const REACH_RETRY_MS = 5000;

/** This Deno running this project's main.ts. */
function defaultWorkerCommand(): string[] {
  return [Deno.execPath(), "run", "-A", fileURLToPath(new URL("../../main.ts", import.meta.url))];
}
