/**
 * The distributed sweep's queue: pg-boss (npm:pg-boss) in the same
 * PostgreSQL database as the store, one queue per sweep (`dmw-sweep-<id>`),
 * one queue job per store job and round, with a deterministic id so that a
 * repeated send (a second coordinator, a checkpoint recorded twice) is a
 * no-op. pg-boss's own dependencies (`flow()`) are not used: an evaluation is
 * sent when its checkpoint is recorded, by the worker that records it, in the
 * same transaction (lib/sweep/worker.ts). The store stays the record of what
 * ran; pg-boss only hands jobs out, notices dead workers by their missing
 * heartbeats and hands their jobs to someone else.
 */
import { createHash } from "node:crypto";
import { PgBoss } from "pg-boss";
import type { JobRow, SqlExecutor, Store } from "../store/store.ts";

/** Seconds without a heartbeat after which a job is taken from its worker (pg-boss's minimum). */
export const HEARTBEAT_SECONDS = 10;

/** How often a worker heartbeats its jobs, ms. */
export const TOUCH_MS = 3000;

/** The queue of a sweep. */
export function queueName(sweepId: number): string {
  return `dmw-sweep-${sweepId}`;
}

/** The queue job id of a store job in a round: a UUID derived from sweep, key and round. */
export function queueJobId(job: Pick<JobRow, "sweep" | "key" | "round">): string {
  const h = createHash("sha256").update(`dmw/${job.sweep}/${job.key}/${job.round}`).digest("hex");
  const variant = ((parseInt(h[16], 16) & 3) | 8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${
    h.slice(20, 32)
  }`;
}

/** What a queue job carries: the store job's id. */
export interface QueueData {
  /** Store job id. */
  job: number;
}

/**
 * Starts pg-boss on the store's database through the store's own connection
 * pool (raw statements, so its multi-statement maintenance queries get every
 * result), in its own `pgboss` schema (created on first use). Heartbeats are
 * checked every 2 s, so a dead worker's job is handed out again about
 * {@link HEARTBEAT_SECONDS} + 2 s after its last heartbeat. A process that
 * loses the race to install pg-boss's schema in a fresh database (another
 * started at the same moment) starts again on the schema the other made. Errors pg-boss
 * reports in the background (the database restarting) go to `onError`; the
 * pool reconnects on the next query.
 */
export async function openQueue(
  store: Store & SqlExecutor,
  onError: (message: string) => void = (m) => console.error(m),
): Promise<PgBoss> {
  if (store.engine !== "postgres") {
    throw new Error(
      `${store.location}: the job queue needs a PostgreSQL store (--store postgres://…)`,
    );
  }
  for (let attempt = 1;; attempt++) {
    const boss = new PgBoss({
      db: store,
      superviseIntervalSeconds: 2,
      monitorIntervalSeconds: 2,
      maintenanceIntervalSeconds: 300,
      schedule: false,
    });
    boss.on("error", (e) => onError(`${store.location}: queue: ${(e as Error).message}`));
    try {
      await boss.start();
      return boss;
    } catch (e) {
      await boss.stop({ graceful: false, timeout: 1000 }).catch(() => {});
      // Two processes installing pg-boss's schema in a fresh database at once: one of them loses
      // the race on the schema's name (a unique violation); the other's schema is there now.
      const err = e as { code?: string; message?: string };
      if ((err.code === "23505" || /duplicate key value/.test(err.message ?? "")) && attempt < 5) {
        await new Promise((r) => setTimeout(r, 200 * attempt));
        continue;
      }
      throw new Error(`${store.location}: cannot start the job queue (${(e as Error).message})`);
    }
  }
}

/**
 * Creates a sweep's queue unless it exists: at most `retries` hand-outs after
 * the first (a crash the store retries, a worker lost), heartbeat
 * {@link HEARTBEAT_SECONDS}, a claim at most 24 h (pg-boss's limit; a longer
 * training run is resumed from its checkpoint by the next claim), completed
 * queue jobs deleted after 7 days (the store keeps the record).
 */
export async function ensureQueue(boss: PgBoss, sweepId: number, retries: number): Promise<void> {
  const name = queueName(sweepId);
  if (await boss.getQueue(name)) return;
  await boss.createQueue(name, {
    retryLimit: retries,
    heartbeatSeconds: HEARTBEAT_SECONDS,
    expireInSeconds: 24 * 3600,
    deleteAfterSeconds: 7 * 24 * 3600,
  });
}

/** The states of a queue job that pg-boss will not hand out again. */
export const QUEUE_ENDED: readonly string[] = ["completed", "failed", "cancelled"];

/**
 * Sends a store job to its sweep's queue (through `db`, a store transaction,
 * when given). When the job's id of this round was already used by a queue
 * job that has ended (the store put the job back: a changed training job, a
 * restart), the store's round goes up and the job is sent under the new id.
 * Returns the id it is queued under.
 */
export async function enqueue(
  boss: PgBoss,
  store: Store,
  job: JobRow,
  db?: Store & SqlExecutor,
): Promise<string> {
  const name = queueName(job.sweep);
  const id = queueJobId(job);
  const opts = db ? { id, db } : { id };
  if (await boss.send(name, { job: job.id } satisfies QueueData, opts)) return id;
  const [existing] = await boss.findJobs(name, { id, ...(db ? { db } : {}) });
  if (!existing || !QUEUE_ENDED.includes(existing.state)) return id;
  const next = { ...job, round: job.round + 1 };
  await (db ?? store).updateJob(job.id, { round: next.round });
  return await enqueue(boss, store, next, db);
}

/** The state of a store job's queue job of its current round, or undefined when there is none. */
export async function queueState(boss: PgBoss, job: JobRow): Promise<string | undefined> {
  const [q] = await boss.findJobs(queueName(job.sweep), { id: queueJobId(job) });
  return q?.state;
}
