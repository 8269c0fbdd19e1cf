/**
 * The experiment store: sweeps, their configurations, jobs and their states,
 * metric series, evaluations, artifacts and the files jobs hand to each other
 * (checkpoints, samples). {@link Store} is the asynchronous interface the
 * sweep, the workers and the dashboard use; {@link openStore} opens one on
 * either engine with the same schema and the same queries (Kysely):
 *
 * - an SQLite file (`node:sqlite`, WAL, so readers run alongside the
 *   writer): the default, `runs/store.sqlite`, nothing to set up;
 * - a PostgreSQL database (`postgres://user@host:port/db`), which every
 *   machine of a distributed sweep shares.
 *
 * The engines differ where it shows: PostgreSQL's `REAL` is 4-byte (losses
 * are `DOUBLE PRECISION`), SQLite stores NaN as NULL (every numeric column
 * reads NULL back as NaN, on both), and 64-bit integers come back from `pg`
 * as strings (parsed here; the schema's ids and steps are 32-bit anyway).
 *
 * @example
 * ```ts
 * const store = await openStore("runs/store.sqlite");
 * const sweep = await store.upsertSweep("default", "experiments/default.yaml", hash, spec);
 * await store.close();
 * ```
 */
import { DatabaseSync } from "node:sqlite";
import * as fs from "node:fs";
import { dirname } from "node:path";
import {
  CamelCasePlugin,
  CompiledQuery,
  type Generated,
  Kysely,
  PostgresDialect,
  sql,
  SqliteDialect,
  type Transaction,
} from "kysely";
import pg from "pg";

/** Job states; `stopped` is a training job ended early by ASHA. */
export type JobState = "queued" | "running" | "done" | "failed" | "cancelled" | "stopped";

/** A sweep as stored. */
export interface SweepRow {
  /** Row id. */
  id: number;
  /** Sweep name (unique; the experiment's `name`). */
  name: string;
  /** Experiment file it was last run from. */
  file: string;
  /** Hash of that file's text, to tell a changed file. */
  hash: string;
  /** The experiment, as parsed (JSON). */
  spec: string;
  /** ISO time of creation. */
  created: string;
  /** created, running, done, failed or stopped (its sweep process ended before its jobs). */
  status: string;
}

/** One configuration of a sweep. */
export interface ConfigRow {
  /** Sweep id. */
  sweep: number;
  /** Position in the expanded experiment. */
  idx: number;
  /** The varying and base parameters (JSON object). */
  params: string;
  /** Key of the training job it uses. */
  trainKey: string;
  /** Key of its evaluation job. */
  evalKey: string;
  /** 1 when the experiment file no longer has it (kept, not run). */
  removed: number;
}

/** A job as stored. */
export interface JobRow {
  /** Row id. */
  id: number;
  /** Sweep id. */
  sweep: number;
  /** Stable hash of the job's definition (unique per sweep). */
  key: string;
  /** Training run or evaluation of a checkpoint. */
  kind: "train" | "eval";
  /** The job's definition (JSON). */
  spec: string;
  /** Run directory (an evaluation's is its training run's). */
  runDir: string;
  /** Where the job stands. */
  state: JobState;
  /** Times it was started. */
  attempts: number;
  /** Why it last failed (stderr tail, NaN reason and step, timeout). */
  error: string | null;
  /** ISO time of the last start. */
  started: string | null;
  /** ISO time it last ended. */
  finished: string | null;
  /** Process id of its worker while running. */
  pid: number | null;
  /** 1 when the dashboard asked to cancel the job, 2 when a distributed sweep's ASHA stops it; its runner polls it. */
  cancelRequested: number;
  /** Fraction done in [0, 1]. */
  progress: number;
  /** The backend its last run reported (a training run's start event), e.g. "wasm". */
  backend: string | null;
  /** The machine that last ran it (its host name). */
  host: string | null;
  /** What its last run computed on: the GPU adapter, or the CPU and its threads (the job's own report). */
  device: string | null;
  /** Times it was put back in the queue by hand (a distributed queue's job ids include it). */
  round: number;
}

/** One point of a training run's metric series. */
export interface MetricRow {
  /** Job id. */
  job: number;
  /** Training step. */
  step: number;
  /** Training loss (NaN when the run diverged). */
  loss: number;
  /** Loss per timestep band (JSON array). */
  bands: string;
  /** Learning rate. */
  lr: number;
  /** Throughput. */
  stepsPerSec: number;
}

/** One evaluation result. */
export interface EvalRow {
  /** Job id. */
  job: number;
  /** Metric name. */
  metric: string;
  /** Its value (NaN when the evaluation gave none). */
  value: number;
  /** Samples it used. */
  n: number;
  /** Its spread (standard error or similar). */
  spread: number;
  /** Other fields of the result (JSON). */
  extra: string;
}

/** The fields of a job {@link Store.updateJob} may change. */
export type JobFields = Partial<Omit<JobRow, "id" | "sweep" | "key">>;

/** What the sweep, the workers and the dashboard need from a store. */
export interface Store {
  /** Where it is: the SQLite file, or the PostgreSQL URL without its password. */
  readonly location: string;
  /** Which engine. */
  readonly engine: "sqlite" | "postgres";
  /** Creates or returns the sweep of this name. */
  upsertSweep(name: string, file: string, hash: string, spec: string): Promise<SweepRow>;
  /** Sets a sweep's status (running, done, …). */
  setSweepStatus(id: number, status: string): Promise<void>;
  /** The sweep of this name, or the most recent one. */
  sweep(name?: string): Promise<SweepRow | undefined>;
  /** The most recently created sweep. */
  latestSweep(): Promise<SweepRow | undefined>;
  /** Every sweep, newest first. */
  sweeps(): Promise<SweepRow[]>;
  /** Replaces a sweep's configurations; ones not given are kept, flagged removed. */
  setConfigs(sweep: number, configs: Omit<ConfigRow, "sweep" | "removed">[]): Promise<void>;
  /** A sweep's configurations (removed ones included). */
  configs(sweep: number): Promise<ConfigRow[]>;
  /** Adds a job unless one with its key exists; returns the stored job. */
  ensureJob(
    sweep: number,
    key: string,
    kind: "train" | "eval",
    spec: string,
    runDir: string,
  ): Promise<JobRow>;
  /** A sweep's jobs. */
  jobs(sweep: number): Promise<JobRow[]>;
  /** One job. */
  job(id: number): Promise<JobRow | undefined>;
  /** Updates a job's fields. */
  updateJob(id: number, fields: JobFields): Promise<void>;
  /**
   * Updates a job's fields only while it is in state `from` (and, when
   * given, at attempt `attempts`); true when it did. Two processes racing for
   * one job: exactly one wins.
   */
  updateJobIf(
    id: number,
    from: { state: JobState; attempts?: number },
    fields: JobFields,
  ): Promise<boolean>;
  /** Asks the executor to cancel a job. */
  requestCancel(id: number): Promise<void>;
  /** Puts a failed, cancelled or stopped job back in the queue (attempts reset, round + 1). */
  requeue(id: number): Promise<void>;
  /** Records metric points (one per step; a repeated step replaces the old one). */
  putMetrics(rows: MetricRow[]): Promise<void>;
  /** A job's metric points after `afterStep`, ascending. */
  metricsSince(job: number, afterStep: number): Promise<MetricRow[]>;
  /** Records an evaluation (one per job and metric). */
  putEval(row: EvalRow): Promise<void>;
  /** Every evaluation of a sweep's jobs. */
  evalsForSweep(sweep: number): Promise<EvalRow[]>;
  /** Records an artifact path of a job. */
  putArtifact(job: number, kind: string, path: string): Promise<void>;
  /** A job's artifacts. */
  artifacts(job: number): Promise<{ kind: string; path: string }[]>;
  /**
   * Stores a file of a job under `name` (e.g. `ckpt/step-00000100/state.json`),
   * read from `path` in chunks of `chunkBytes`, never whole; replaces an
   * earlier one of that name.
   * @default chunkBytes 4 MiB
   */
  putFile(job: number, name: string, path: string, chunkBytes?: number): Promise<void>;
  /** Stores a small file of a job whole (a log tail), replacing an earlier one of that name. */
  putBytes(job: number, name: string, data: Uint8Array): Promise<void>;
  /** A small stored file whole (a sample file, a log tail); undefined when there is none. */
  readFile(job: number, name: string): Promise<Uint8Array | undefined>;
  /** Writes a stored file to `path` chunk by chunk (through a temporary, renamed into place); false when there is none. */
  getFile(job: number, name: string, path: string): Promise<boolean>;
  /** The names of a job's stored files that start with `prefix`, sorted. */
  files(job: number, prefix?: string): Promise<string[]>;
  /** Runs `fn` in one transaction with a store bound to it. */
  transaction<T>(fn: (tx: Store & SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Makes this process the coordinator of sweep `name` until the returned
   * function releases it, or throws naming the process (host, pid) that
   * coordinates it: on PostgreSQL a session advisory lock, which the
   * server drops when its holder dies, taken again after a lost connection
   * (`onProblem` hears when it cannot be). On SQLite nothing: the sweep's
   * lock file (lib/sweep/lock.ts) keeps one sweep process per machine.
   */
  holdSweep(name: string, onProblem?: (line: string) => void): Promise<() => Promise<void>>;
  /** Closes the connection(s). */
  close(): Promise<void>;
}

/** Raw SQL on the store's connection (what pg-boss's `db` option takes; PostgreSQL `$1` placeholders). */
export interface SqlExecutor {
  /** Runs one statement. */
  executeSql(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

interface Tables {
  sweeps: Omit<SweepRow, "id"> & { id: Generated<number> };
  configs: ConfigRow;
  jobs: Omit<JobRow, "id"> & { id: Generated<number> };
  metrics: Omit<MetricRow, "loss" | "lr" | "stepsPerSec"> & {
    loss: number | null;
    lr: number | null;
    stepsPerSec: number | null;
  };
  evals: Omit<EvalRow, "value" | "spread"> & { value: number | null; spread: number | null };
  artifacts: { job: number; kind: string; path: string };
  files: { job: number; name: string; chunk: number; data: Uint8Array };
}

type Db = Kysely<Tables> | Transaction<Tables>;

/** The schema; `ID`, `FLOAT` and `BLOB` are the engine's types. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS sweeps (id ID, name TEXT UNIQUE NOT NULL, file TEXT NOT NULL,
  hash TEXT NOT NULL, spec TEXT NOT NULL, created TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (sweep INTEGER NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL,
  train_key TEXT NOT NULL, eval_key TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (sweep, params));
CREATE TABLE IF NOT EXISTS jobs (id ID, sweep INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,
  spec TEXT NOT NULL, run_dir TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
  started TEXT, finished TEXT, pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,
  progress FLOAT NOT NULL DEFAULT 0, UNIQUE (sweep, key));
CREATE TABLE IF NOT EXISTS metrics (job INTEGER NOT NULL, step INTEGER NOT NULL, loss FLOAT, bands TEXT, lr FLOAT,
  steps_per_sec FLOAT, PRIMARY KEY (job, step));
CREATE TABLE IF NOT EXISTS evals (job INTEGER NOT NULL, metric TEXT NOT NULL, value FLOAT, n INTEGER, spread FLOAT,
  extra TEXT, PRIMARY KEY (job, metric));
CREATE TABLE IF NOT EXISTS artifacts (job INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (job, kind, path));
CREATE TABLE IF NOT EXISTS files (job INTEGER NOT NULL, name TEXT NOT NULL, chunk INTEGER NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (job, name, chunk));
`;

/** Columns added to `jobs` after its first version: name → definition. */
const ADDED_JOB_COLUMNS: Record<string, string> = {
  backend: "TEXT",
  host: "TEXT",
  device: "TEXT",
  round: "INTEGER NOT NULL DEFAULT 0",
};

const TYPES = {
  sqlite: { ID: "INTEGER PRIMARY KEY", FLOAT: "REAL", BLOB: "BLOB" },
  postgres: { ID: "SERIAL PRIMARY KEY", FLOAT: "DOUBLE PRECISION", BLOB: "BYTEA" },
};

function schemaFor(engine: "sqlite" | "postgres"): string[] {
  const t = TYPES[engine];
  return SCHEMA.replace(/\b(ID|FLOAT|BLOB)\b(?= |,|\))/g, (m) => t[m as keyof typeof t])
    .split(";").map((s) => s.trim()).filter(Boolean);
}

/** The default store location. */
export const DEFAULT_STORE = "runs/store.sqlite";

/** Whether a `--store` value names a PostgreSQL database rather than an SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** A PostgreSQL URL with its password replaced by `***` (for messages). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
  }
}

/** PostgreSQL error codes of a server going away or not yet back (admin shutdown, crash, starting up). */
const CONNECTION_CODES = new Set(["57P01", "57P02", "57P03", "08000", "08003", "08006", "08001"]);

/**
 * Whether an error is the database being unreachable for now (a restart, a
 * dropped connection) rather than a query's own fault.
 */
export function isConnectionError(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return CONNECTION_CODES.has(err?.code ?? "") ||
    /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|Connection terminated|shutting down|starting up|not yet accepting|connection (refused|reset|closed)|Client has encountered a connection error|timeout exceeded when trying to connect/i
      .test(err?.message ?? "");
}

/** How {@link retryConnection} waits for an unreachable database. */
export interface RetryOptions {
  /** Hears the first failure of a wait. */
  onWait?: (error: Error) => void;
  /** Hears that the database answered after a wait. */
  onBack?: () => void;
  /** Between tries, ms. @default 1000 */
  intervalMs?: number;
  /** Gives up (throws the last error) after this long, ms. @default 300000 */
  maxMs?: number;
  /** Aborting ends the wait at once: the call rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Runs `fn`, again every `intervalMs` while it fails because the database is
 * unreachable (for at most `maxMs`); other errors are thrown at once. A
 * function in place of the options is a sink of lines: it hears about the
 * first failure.
 */
export async function retryConnection<T>(
  fn: () => Promise<T>,
  wait: RetryOptions | ((line: string) => void) = {},
): Promise<T> {
  const o: RetryOptions = typeof wait === "function"
    ? { onWait: (e) => wait(`the store is unreachable (${e.message}); retrying`) }
    : wait;
  const { intervalMs = 1000, maxMs = 300_000, signal } = o;
  const t0 = Date.now();
  for (let waiting = false;;) {
    signal?.throwIfAborted();
    try {
      const value = await fn();
      if (waiting) o.onBack?.();
      return value;
    } catch (e) {
      if (!isConnectionError(e) || Date.now() - t0 > maxMs) throw e;
      if (!waiting) o.onWait?.(e as Error);
      waiting = true;
      // Aborted while the line was printed: no wait.
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, intervalMs);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/** The `node:sqlite` database as Kysely's SQLite dialect wants it (arrays of parameters, `reader`). */
function sqliteDatabase(db: DatabaseSync) {
  return {
    close: () => db.close(),
    prepare: (text: string) => {
      const stmt = db.prepare(text);
      // deno-lint-ignore no-explicit-any
      const args = (p: ReadonlyArray<unknown>) => p as any[];
      return {
        reader: stmt.columns().length > 0,
        all: (p: ReadonlyArray<unknown>) => stmt.all(...args(p)),
        run: (p: ReadonlyArray<unknown>) => stmt.run(...args(p)),
        iterate: (p: ReadonlyArray<unknown>) => stmt.iterate(...args(p)),
      };
    },
  };
}

const INT8 = 20;

/** Options of {@link openStore}. */
export interface OpenOptions {
  /** Open an SQLite file read-only (a missing file is an error); PostgreSQL ignores it. @default false */
  readOnly?: boolean;
  /** Most PostgreSQL connections of this process. @default 4 */
  poolSize?: number;
}

/**
 * Opens the store at `location`: a `postgres://` URL, else an SQLite file
 * (created with its folder unless `readOnly`). Errors name the file or the
 * URL (without its password) and what to do.
 * @default location "runs/store.sqlite"
 */
export async function openStore(
  location: string = DEFAULT_STORE,
  opts: OpenOptions = {},
): Promise<Store & SqlExecutor> {
  if (isPostgresUrl(location)) return await openPostgres(location, opts);
  return openSqlite(location, opts);
}

function openSqlite(path: string, opts: OpenOptions): SqlStore {
  if (!opts.readOnly) fs.mkdirSync(dirname(path), { recursive: true });
  else if (!fs.existsSync(path)) throw new Error(`${path}: no store yet (run a sweep first)`);
  let raw: DatabaseSync | undefined;
  try {
    raw = new DatabaseSync(path, { readOnly: opts.readOnly ?? false });
    raw.exec("PRAGMA busy_timeout = 5000;");
    if (!opts.readOnly) {
      raw.exec("PRAGMA journal_mode = WAL;");
      for (const s of schemaFor("sqlite")) raw.exec(s);
      const columns = raw.prepare("PRAGMA table_info(jobs)").all().map((c) => c.name);
      if (columns.includes("cancel")) {
        raw.exec("ALTER TABLE jobs RENAME COLUMN cancel TO cancel_requested");
      }
      for (const [name, def] of Object.entries(ADDED_JOB_COLUMNS)) {
        if (!columns.includes(name)) raw.exec(`ALTER TABLE jobs ADD COLUMN ${name} ${def}`);
      }
    }
  } catch (e) {
    raw?.close();
    throw new Error(
      `${path}: cannot open the store (${(e as Error).message}); ` +
        "move the file away (or pass another --store) to start a new one",
    );
  }
  const db = new Kysely<Tables>({
    dialect: new SqliteDialect({ database: sqliteDatabase(raw) }),
    plugins: [new CamelCasePlugin()],
  });
  return new SqlStore(db, "sqlite", path);
}

async function openPostgres(url: string, opts: OpenOptions): Promise<SqlStore> {
  const where = redactUrl(url);
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 4,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8 ? Number : pg.types.getTypeParser(oid, format as "text")) as never,
    },
  });
  // A connection dropped while idle (the server restarted) is replaced on the next query; one
  // dropped while checked out fails its query, and its client's own error event is not fatal.
  pool.on("error", () => {});
  pool.on("connect", (client: pg.PoolClient) => client.on("error", () => {}));
  const db = new Kysely<Tables>({
    dialect: new PostgresDialect({ pool }),
    plugins: [new CamelCasePlugin()],
  });
  try {
    await db.transaction().execute(async (trx) => {
      // Two processes starting on a fresh database must not both create the tables.
      await sql`SELECT pg_advisory_xact_lock(7417001)`.execute(trx);
      for (const s of schemaFor("postgres")) await sql.raw(s).execute(trx);
      for (const [name, def] of Object.entries(ADDED_JOB_COLUMNS)) {
        await sql.raw(`ALTER TABLE jobs ADD COLUMN IF NOT EXISTS ${name} ${def}`).execute(trx);
      }
    });
  } catch (e) {
    await db.destroy();
    throw new Error(
      `${where}: cannot open the store (${(e as Error).message}); ` +
        "check that PostgreSQL runs there and the user may create tables",
    );
  }
  return new SqlStore(db, "postgres", where, pool);
}

const nan = (v: number | null | undefined): number => v ?? NaN;

/** A {@link Store} on Kysely, over SQLite or PostgreSQL. */
class SqlStore implements Store, SqlExecutor {
  readonly #db: Db;
  readonly #pool?: pg.Pool;

  /** `pool`: the PostgreSQL pool under `db`, for raw statements outside a transaction. */
  constructor(
    db: Db,
    readonly engine: "sqlite" | "postgres",
    readonly location: string,
    pool?: pg.Pool,
  ) {
    this.#db = db;
    this.#pool = pool;
  }

  async executeSql(text: string, values: unknown[] = []): Promise<{ rows: any[] }> {
    // A multi-statement query (pg-boss's maintenance) goes straight to the pool, which answers
    // every statement's rows, where Kysely keeps only one result.
    if (this.#pool && /;\s*\S/.test(text)) {
      return await this.#pool.query(text, values) as unknown as { rows: any[] };
    }
    const r = await this.#db.executeQuery(CompiledQuery.raw(text, values));
    return { rows: r.rows as any[] };
  }

  async transaction<T>(fn: (tx: Store & SqlExecutor) => Promise<T>): Promise<T> {
    if (!(this.#db instanceof Kysely) || this.#db.isTransaction) {
      return await fn(this);
    }
    return await this.#db.transaction().execute((trx) =>
      fn(new SqlStore(trx, this.engine, this.location))
    );
  }

  async upsertSweep(name: string, file: string, hash: string, spec: string): Promise<SweepRow> {
    await this.#db.insertInto("sweeps")
      .values({ name, file, hash, spec, created: new Date().toISOString(), status: "created" })
      .onConflict((oc) =>
        oc.column("name").doUpdateSet((eb) => ({
          file: eb.ref("excluded.file"),
          hash: eb.ref("excluded.hash"),
          spec: eb.ref("excluded.spec"),
        }))
      ).execute();
    return (await this.sweep(name))!;
  }

  async setSweepStatus(id: number, status: string): Promise<void> {
    await this.#db.updateTable("sweeps").set({ status }).where("id", "=", id).execute();
  }

  async sweep(name?: string): Promise<SweepRow | undefined> {
    let q = this.#db.selectFrom("sweeps").selectAll();
    q = name === undefined ? q.orderBy("id", "desc").limit(1) : q.where("name", "=", name);
    return await q.executeTakeFirst();
  }

  latestSweep(): Promise<SweepRow | undefined> {
    return this.sweep();
  }

  async sweeps(): Promise<SweepRow[]> {
    return await this.#db.selectFrom("sweeps").selectAll().orderBy("id", "desc").execute();
  }

  async setConfigs(sweep: number, configs: Omit<ConfigRow, "sweep" | "removed">[]): Promise<void> {
    await this.transaction(async (tx) => {
      const db = (tx as SqlStore).#db;
      await db.updateTable("configs").set({ removed: 1 }).where("sweep", "=", sweep).execute();
      for (let i = 0; i < configs.length; i += 200) {
        await db.insertInto("configs")
          .values(
            configs.slice(i, i + 200).map((c) => ({
              sweep,
              idx: c.idx,
              params: c.params,
              trainKey: c.trainKey,
              evalKey: c.evalKey,
              removed: 0,
            })),
          )
          .onConflict((oc) =>
            oc.columns(["sweep", "params"]).doUpdateSet((eb) => ({
              idx: eb.ref("excluded.idx"),
              trainKey: eb.ref("excluded.trainKey"),
              evalKey: eb.ref("excluded.evalKey"),
              removed: 0,
            }))
          ).execute();
      }
    });
  }

  async configs(sweep: number): Promise<ConfigRow[]> {
    return await this.#db.selectFrom("configs").selectAll().where("sweep", "=", sweep)
      .orderBy("removed").orderBy("idx").execute();
  }

  async ensureJob(
    sweep: number,
    key: string,
    kind: "train" | "eval",
    spec: string,
    runDir: string,
  ): Promise<JobRow> {
    await this.#db.insertInto("jobs")
      .values({
        sweep,
        key,
        kind,
        spec,
        runDir,
        state: "queued",
        attempts: 0,
        error: null,
        started: null,
        finished: null,
        pid: null,
        cancelRequested: 0,
        progress: 0,
        backend: null,
        host: null,
        device: null,
        round: 0,
      })
      .onConflict((oc) => oc.columns(["sweep", "key"]).doNothing()).execute();
    return await this.#db.selectFrom("jobs").selectAll().where("sweep", "=", sweep)
      .where("key", "=", key).executeTakeFirstOrThrow();
  }

  async jobs(sweep: number): Promise<JobRow[]> {
    return await this.#db.selectFrom("jobs").selectAll().where("sweep", "=", sweep)
      .orderBy("id").execute();
  }

  async job(id: number): Promise<JobRow | undefined> {
    return await this.#db.selectFrom("jobs").selectAll().where("id", "=", id)
      .executeTakeFirst();
  }

  async updateJob(id: number, fields: JobFields): Promise<void> {
    if (Object.keys(fields).length === 0) return;
    await this.#db.updateTable("jobs").set(fields).where("id", "=", id).execute();
  }

  async updateJobIf(
    id: number,
    from: { state: JobState; attempts?: number },
    fields: JobFields,
  ): Promise<boolean> {
    let q = this.#db.updateTable("jobs").set(fields).where("id", "=", id)
      .where("state", "=", from.state);
    if (from.attempts !== undefined) q = q.where("attempts", "=", from.attempts);
    const r = await q.executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async requestCancel(id: number): Promise<void> {
    await this.#db.updateTable("jobs").set({ cancelRequested: 1 }).where("id", "=", id)
      .where("state", "in", ["queued", "running"]).execute();
  }

  async requeue(id: number): Promise<void> {
    await this.#db.updateTable("jobs")
      .set((eb) => ({
        state: "queued",
        cancelRequested: 0,
        error: null,
        attempts: 0,
        round: eb("round", "+", 1),
      }))
      .where("id", "=", id).where("state", "in", ["failed", "cancelled", "stopped"]).execute();
  }

  async putMetrics(rows: MetricRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.transaction(async (tx) => {
      const db = (tx as SqlStore).#db;
      for (let i = 0; i < rows.length; i += 500) {
        await db.insertInto("metrics").values(rows.slice(i, i + 500))
          .onConflict((oc) =>
            oc.columns(["job", "step"]).doUpdateSet((eb) => ({
              loss: eb.ref("excluded.loss"),
              bands: eb.ref("excluded.bands"),
              lr: eb.ref("excluded.lr"),
              stepsPerSec: eb.ref("excluded.stepsPerSec"),
            }))
          ).execute();
      }
    });
  }

  async metricsSince(job: number, afterStep: number): Promise<MetricRow[]> {
    const rows = await this.#db.selectFrom("metrics").selectAll().where("job", "=", job)
      .where("step", ">", afterStep).orderBy("step").execute();
    return rows.map((r) => ({
      ...r,
      loss: nan(r.loss),
      lr: nan(r.lr),
      stepsPerSec: nan(r.stepsPerSec),
    }));
  }

  async putEval(row: EvalRow): Promise<void> {
    await this.#db.insertInto("evals").values(row)
      .onConflict((oc) =>
        oc.columns(["job", "metric"]).doUpdateSet((eb) => ({
          value: eb.ref("excluded.value"),
          n: eb.ref("excluded.n"),
          spread: eb.ref("excluded.spread"),
          extra: eb.ref("excluded.extra"),
        }))
      ).execute();
  }

  async evalsForSweep(sweep: number): Promise<EvalRow[]> {
    const rows = await this.#db.selectFrom("evals").innerJoin("jobs", "jobs.id", "evals.job")
      .selectAll("evals").where("jobs.sweep", "=", sweep).orderBy("evals.job")
      .orderBy("evals.metric").execute();
    return rows.map((r) => ({ ...r, value: nan(r.value), spread: nan(r.spread) }));
  }

  async putArtifact(job: number, kind: string, path: string): Promise<void> {
    await this.#db.insertInto("artifacts").values({ job, kind, path })
      .onConflict((oc) => oc.columns(["job", "kind", "path"]).doNothing()).execute();
  }

  async artifacts(job: number): Promise<{ kind: string; path: string }[]> {
    return await this.#db.selectFrom("artifacts").select(["kind", "path"]).where("job", "=", job)
      .orderBy("kind").orderBy("path").execute();
  }

  async putFile(job: number, name: string, path: string, chunkBytes = 4 << 20): Promise<void> {
    const fd = fs.openSync(path, "r");
    try {
      await this.transaction(async (tx) => {
        const db = (tx as SqlStore).#db;
        await db.deleteFrom("files").where("job", "=", job).where("name", "=", name).execute();
        const buf = new Uint8Array(chunkBytes);
        for (let chunk = 0, pos = 0;; chunk++) {
          const n = fs.readSync(fd, buf, 0, chunkBytes, pos);
          if (n === 0 && chunk > 0) break;
          pos += n;
          await db.insertInto("files").values({ job, name, chunk, data: buf.slice(0, n) })
            .execute();
          if (n < chunkBytes) break;
        }
      });
    } finally {
      fs.closeSync(fd);
    }
  }

  async putBytes(job: number, name: string, data: Uint8Array): Promise<void> {
    await this.transaction(async (tx) => {
      const db = (tx as SqlStore).#db;
      await db.deleteFrom("files").where("job", "=", job).where("name", "=", name).execute();
      await db.insertInto("files").values({ job, name, chunk: 0, data }).execute();
    });
  }

  async readFile(job: number, name: string): Promise<Uint8Array | undefined> {
    const rows = await this.#db.selectFrom("files").select("data").where("job", "=", job)
      .where("name", "=", name).orderBy("chunk").execute();
    if (rows.length === 0) return undefined;
    const out = new Uint8Array(rows.reduce((n, r) => n + r.data.length, 0));
    let at = 0;
    for (const r of rows) {
      out.set(r.data, at);
      at += r.data.length;
    }
    return out;
  }

  async getFile(job: number, name: string, path: string): Promise<boolean> {
    const count = await this.#db.selectFrom("files").select((eb) => eb.fn.countAll().as("n"))
      .where("job", "=", job).where("name", "=", name).executeTakeFirst();
    const chunks = Number(count?.n ?? 0);
    if (chunks === 0) return false;
    fs.mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.part-${Deno.pid}`;
    const fd = fs.openSync(tmp, "w", 0o644);
    try {
      for (let chunk = 0; chunk < chunks; chunk++) {
        const row = await this.#db.selectFrom("files").select("data").where("job", "=", job)
          .where("name", "=", name).where("chunk", "=", chunk).executeTakeFirst();
        if (!row) {
          throw new Error(
            `${this.location}: file ${name} of job ${job}: chunk ${chunk} is missing`,
          );
        }
        fs.writeSync(fd, row.data);
      }
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
    return true;
  }

  async files(job: number, prefix = ""): Promise<string[]> {
    const rows = await this.#db.selectFrom("files").select("name").distinct()
      .where("job", "=", job).where("chunk", "=", 0).orderBy("name").execute();
    return rows.map((r) => r.name).filter((n) => n.startsWith(prefix));
  }

  async holdSweep(
    name: string,
    onProblem?: (line: string) => void,
  ): Promise<() => Promise<void>> {
    const pool = this.#pool;
    if (!pool) return () => Promise.resolve();
    const keys = [SWEEP_HOLD, nameKey(name)];
    const me = `dmw sweep on ${Deno.hostname()} pid ${Deno.pid}`.slice(0, 63);
    const take = async (): Promise<pg.PoolClient> => {
      const client = await pool.connect();
      let held = false;
      try {
        await client.query("SELECT set_config('application_name', $1, false)", [me]);
        held = (await client.query("SELECT pg_try_advisory_lock($1, $2) AS ok", keys)).rows[0].ok;
        if (held) return client;
        const { rows } = await client.query(
          "SELECT a.application_name AS who, a.backend_start AS since FROM pg_locks l " +
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' " +
            "AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted",
          keys,
        );
        const who = rows[0]?.who
          ? `${rows[0].who}, since ${new Date(rows[0].since).toISOString().slice(0, 19)}Z`
          : "a process";
        throw new Error(
          `sweep ${name} is coordinated by another sweep process (${who}) in ${this.location}; ` +
            `\`deno task watch ${name} --store …\` follows it, \`deno task worker --store …\` adds ` +
            "a machine to it",
        );
      } finally {
        if (!held) client.release(true);
      }
    };
    let client: pg.PoolClient | undefined = await take();
    let lost = false;
    const follow = (c: pg.PoolClient) => {
      c.on("error", () => lost = true);
      c.on("end", () => lost = true);
    };
    follow(client);
    // A lost connection (a database restart) lost the lock with it: take it again.
    let said = "";
    let taking = false;
    const timer = setInterval(async () => {
      if (!lost || taking) return;
      taking = true;
      try {
        client?.release(true);
        client = undefined;
        client = await take();
        follow(client);
        lost = false;
        said = "";
      } catch (e) {
        const line = `${this.location}: sweep ${name} not held (${(e as Error).message})`;
        if (!isConnectionError(e) && line !== said) onProblem?.(said = line);
      } finally {
        taking = false;
      }
    }, 1000);
    return async () => {
      clearInterval(timer);
      const c = client;
      client = undefined;
      if (!c) return;
      await c.query("SELECT pg_advisory_unlock($1, $2)", keys).catch(() => {});
      c.release(true);
    };
  }

  async close(): Promise<void> {
    if (this.#db instanceof Kysely && !this.#db.isTransaction) await this.#db.destroy();
  }
}

/** The first key of the advisory locks that hold sweeps (the second: {@link nameKey}). */
const SWEEP_HOLD = 7417002;

/** A sweep name as a non-negative 32-bit key (FNV-1a). */
function nameKey(name: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) h = Math.imul(h ^ b, 0x01000193);
  return (h >>> 0) & 0x7fffffff;
}
