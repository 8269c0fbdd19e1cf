/**
 * The coordinator of a distributed sweep (`deno task sweep FILE --store
 * postgres://…`): with the plan recorded in the store, it sends training
 * jobs to the sweep's queue, sends each evaluation whose checkpoint is
 * recorded (workers send them too, as they record checkpoints), ends the
 * evaluations whose training job ended without their checkpoint (and puts
 * them back in the queue when that training job is queued again), stops
 * training jobs by ASHA from the losses in the store, marks jobs failed whose
 * workers died and that the queue will not hand out again, and reports. It
 * never stops a job another process runs: a second coordinator of the same
 * sweep only repeats sends, which are no-ops. Jobs run in workers
 * (lib/sweep/worker.ts), one of which the sweep process starts itself unless
 * told not to.
 */
import type { PgBoss } from "pg-boss";
import {
  isConnectionError,
  type JobRow,
  type JobState,
  retryConnection,
  type SqlExecutor,
  type Store,
} from "../store/store.ts";
import { Asha, backWithTraining, evalReadiness, recordedCheckpoints } from "./executor.ts";
import { type ExecutorUpdate, STOP_REQUESTED } from "./jobrun.ts";
import type { Plan } from "./planner.ts";
import { enqueue, ensureQueue, QUEUE_ENDED, queueJobId, queueState } from "./queue.ts";

/** Options of {@link coordinate}. */
export interface CoordinateOptions {
  /** The shared store (PostgreSQL). */
  store: Store & SqlExecutor;
  /** The queue on the store's database. */
  boss: PgBoss;
  /** The sweep. */
  sweepId: number;
  /** The plan the jobs come from (jobs of the sweep not in it are left alone). */
  plan: Plan;
  /** Retries of a crashed job (and hand-outs after a lost worker). @default 1 */
  maxFailures?: number;
  /** ASHA early termination of training jobs on their training loss; absent = none. */
  earlyTerminate?: { minIter: number; eta: number };
  /** Called on every change seen in the store. */
  onUpdate?: (update: ExecutorUpdate) => void;
  /** How often the store is read, ms. @default 500 */
  pollMs?: number;
  /** Called with a line when the store or the queue cannot be reached (it goes on trying). */
  onProblem?: (line: string) => void;
  /** Aborting ends coordinating (the jobs stay where they are). */
  signal?: AbortSignal;
}

const FINAL: JobState[] = ["done", "failed", "cancelled", "stopped"];

/** How often running jobs' queue jobs are looked at, ms. */
const QUEUE_CHECK_MS = 5000;

/**
 * Coordinates the sweep until every planned job has ended (or `signal`
 * aborts); returns the counts of the plan's jobs done and failed.
 */
export async function coordinate(
  opts: CoordinateOptions,
): Promise<{ done: number; failed: number }> {
  const { store, boss, sweepId, plan } = opts;
  const maxFailures = opts.maxFailures ?? 1;
  await ensureQueue(boss, sweepId, maxFailures + 2);
  const emit = (u: ExecutorUpdate) => opts.onUpdate?.(u);
  const asha = opts.earlyTerminate &&
    new Asha(opts.earlyTerminate.minIter, opts.earlyTerminate.eta);
  const evalByKey = new Map(plan.eval.map((e) => [e.key, e]));
  const planned = new Set([...plan.train.map((t) => t.key), ...plan.eval.map((e) => e.key)]);
  const sent = new Set<string>();
  const seen = new Map<number, { state: JobState; attempts: number; step: number }>();
  let lastQueueCheck = 0;
  const stopped = new Promise((r) => opts.signal?.addEventListener("abort", r, { once: true }));

  // `recheck`: a job sent before and queued in the store still is sent again (under a new round)
  // when the queue has ended its job meanwhile, its retries spent by workers that stopped.
  const send = async (job: JobRow, recheck = false) => {
    const id = queueJobId(job);
    if (sent.has(id)) {
      const q = recheck ? await queueState(boss, job) : "active";
      if (q !== undefined && !QUEUE_ENDED.includes(q)) return;
      sent.delete(id);
    }
    sent.add(await enqueue(boss, store, job));
  };
  const end = async (job: JobRow, state: JobState, error: string) => {
    const fields = { state, error, finished: new Date().toISOString(), pid: null };
    if (await store.updateJobIf(job.id, { state: job.state, attempts: job.attempts }, fields)) {
      emit({
        type: state as ExecutorUpdate["type"],
        job: { ...job, ...fields },
        message: `${state} ${job.kind} ${job.key}: ${error}`,
      });
    }
  };

  while (!opts.signal?.aborted) {
    try {
      if (await pass()) break;
    } catch (e) {
      if (!isConnectionError(e)) throw e;
      opts.onProblem?.(`coordinator: ${(e as Error).message} (trying again)`);
    }
    await Promise.race([new Promise((r) => setTimeout(r, opts.pollMs ?? 500)), stopped]);
  }
  const final = (await retryConnection(() => store.jobs(sweepId), opts.onProblem))
    .filter((j) => planned.has(j.key));
  return {
    done: final.filter((j) => j.state === "done").length,
    failed: final.filter((j) => j.state === "failed").length,
  };

  /** One look at the store; true when every planned job has ended. */
  async function pass(): Promise<boolean> {
    const jobs = (await store.jobs(sweepId)).filter((j) => planned.has(j.key));
    const byKey = new Map(jobs.map((j) => [j.key, j]));
    const checkQueue = Date.now() - lastQueueCheck > QUEUE_CHECK_MS;
    if (checkQueue) lastQueueCheck = Date.now();
    for (const job of jobs) {
      const ev = evalByKey.get(job.key);
      if (ev && backWithTraining(job, byKey.get(ev.train))) {
        await store.requeue(job.id);
        Object.assign(job, (await store.job(job.id))!);
      }
      const before = seen.get(job.id);
      if (!before || before.state !== job.state || before.attempts !== job.attempts) {
        if (before || job.state !== "queued") report(job, emit);
        seen.set(job.id, { state: job.state, attempts: job.attempts, step: before?.step ?? 0 });
      }
      if (job.state === "queued" && job.cancelRequested) {
        await end(job, "cancelled", "cancel requested");
      } else if (job.state === "queued" && job.kind === "train") {
        await send(job, checkQueue);
      } else if (job.state === "queued") {
        const train = byKey.get(ev!.train);
        if (!train) continue;
        const { ready, end: ended } = evalReadiness(
          ev!,
          train,
          await recordedCheckpoints(store, train.id),
        );
        if (ended) await end(job, ended.state, ended.error);
        else if (ready) await send(job, checkQueue);
      } else if (job.state === "running") {
        if (asha && job.kind === "train" && !job.cancelRequested) {
          const s = seen.get(job.id)!;
          for (const p of await store.metricsSince(job.id, s.step)) {
            s.step = p.step;
            const reason = asha.check(job.id, job.key, p.step, p.loss);
            if (!reason) continue;
            await store.updateJobIf(job.id, { state: "running", attempts: job.attempts }, {
              cancelRequested: STOP_REQUESTED,
            });
            emit({ type: "stopped", job, step: p.step, loss: p.loss, message: reason });
            break;
          }
        }
        if (checkQueue) {
          const q = await queueState(boss, job);
          if (q === undefined || QUEUE_ENDED.includes(q)) {
            // Settled jobs are never `running`: this one's worker died and nobody will retry it.
            const now = await store.job(job.id);
            if (now?.state === "running" && now.attempts === job.attempts) {
              await end(
                job,
                "failed",
                `its worker (${job.host ?? "unknown host"}) stopped answering and the queue has ` +
                  `no retries left (${job.attempts} attempts)`,
              );
            }
          }
        }
      }
    }
    return jobs.every((j) => FINAL.includes(j.state));
  }
}

/** One line for a job whose state changed in the store. */
function report(job: JobRow, emit: (u: ExecutorUpdate) => void): void {
  const where = job.host ? ` on ${job.host}` : "";
  const type: ExecutorUpdate["type"] = job.state === "running"
    ? "start"
    : job.state === "queued"
    ? "retry"
    : (job.state as ExecutorUpdate["type"]);
  const what = job.state === "running" ? `start (attempt ${job.attempts})${where}` : job.state;
  emit({
    type,
    job,
    message: `${what} ${job.kind} ${job.key}${
      job.error && job.state !== "done" ? `: ${job.error}` : ""
    }`,
  });
}
