/**
 * The experiment store: sweeps, their configurations, jobs and their states,
 * metric series, evaluations and artifacts. {@link Store} is the small
 * interface the sweep and the dashboard use; {@link SqliteStore} implements
 * it on `node:sqlite` in WAL mode, so readers (dashboard, compare) run
 * alongside the writer. A PostgreSQL store would implement the same
 * interface.
 */
import { DatabaseSync } from "node:sqlite";
import * as fs from "node:fs";
import { dirname } from "node:path";

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
  /** created, running, done or failed. */
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
  /** 1 when the dashboard asked to cancel the job; the executor polls it. */
  cancelRequested: number;
  /** Fraction done in [0, 1]. */
  progress: number;
}

/** One point of a training run's metric series. */
export interface MetricRow {
  /** Job id. */
  job: number;
  /** Training step. */
  step: number;
  /** Training loss. */
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

/** What the sweep and the dashboard need from a store. */
export interface Store {
  /** Creates or returns the sweep of this name. */
  upsertSweep(name: string, file: string, hash: string, spec: string): SweepRow;
  /** Sets a sweep's status (running, done, …). */
  setSweepStatus(id: number, status: string): void;
  /** The sweep of this name, or the most recent one. */
  sweep(name?: string): SweepRow | undefined;
  /** The most recently created sweep. */
  latestSweep(): SweepRow | undefined;
  /** Every sweep, newest first. */
  sweeps(): SweepRow[];
  /** Replaces a sweep's configurations; ones not given are kept, flagged removed. */
  setConfigs(sweep: number, configs: Omit<ConfigRow, "sweep" | "removed">[]): void;
  /** A sweep's configurations (removed ones included). */
  configs(sweep: number): ConfigRow[];
  /** Adds a job unless one with its key exists; returns the stored job. */
  ensureJob(
    sweep: number,
    key: string,
    kind: "train" | "eval",
    spec: string,
    runDir: string,
  ): JobRow;
  /** A sweep's jobs. */
  jobs(sweep: number): JobRow[];
  /** One job. */
  job(id: number): JobRow | undefined;
  /** Updates a job's fields. */
  updateJob(id: number, fields: Partial<Omit<JobRow, "id" | "sweep" | "key">>): void;
  /** Asks the executor to cancel a job. */
  requestCancel(id: number): void;
  /** Puts a failed, cancelled or stopped job back in the queue (attempts reset). */
  requeue(id: number): void;
  /** Records metric points (one per step; a repeated step replaces the old one). */
  putMetrics(rows: MetricRow[]): void;
  /** A job's metric points after `afterStep`, ascending. */
  metricsSince(job: number, afterStep: number): MetricRow[];
  /** Records an evaluation (one per job and metric). */
  putEval(row: EvalRow): void;
  /** Every evaluation of a sweep's jobs. */
  evalsForSweep(sweep: number): EvalRow[];
  /** Records an artifact path of a job. */
  putArtifact(job: number, kind: string, path: string): void;
  /** A job's artifacts. */
  artifacts(job: number): { kind: string; path: string }[];
  /** Closes the connection. */
  close(): void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sweeps (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, file TEXT NOT NULL,
  hash TEXT NOT NULL, spec TEXT NOT NULL, created TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (sweep INTEGER NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL,
  train_key TEXT NOT NULL, eval_key TEXT NOT NULL, removed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (sweep, params));
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, sweep INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,
  spec TEXT NOT NULL, run_dir TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
  started TEXT, finished TEXT, pid INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0,
  UNIQUE (sweep, key));
CREATE TABLE IF NOT EXISTS metrics (job INTEGER NOT NULL, step INTEGER NOT NULL, loss REAL, bands TEXT, lr REAL,
  steps_per_sec REAL, PRIMARY KEY (job, step));
CREATE TABLE IF NOT EXISTS evals (job INTEGER NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER, spread REAL,
  extra TEXT, PRIMARY KEY (job, metric));
CREATE TABLE IF NOT EXISTS artifacts (job INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (job, kind, path));
`;

const JOB_COLUMNS =
  `id, sweep, key, kind, spec, run_dir AS runDir, state, attempts, error, started, finished, pid,
  cancel_requested AS cancelRequested, progress`;

/** The default store location. */
export const DEFAULT_STORE = "runs/store.sqlite";

/** A {@link Store} on an SQLite file (WAL, busy timeout 5 s). */
export class SqliteStore implements Store {
  readonly #db: DatabaseSync;

  /** Opens (creating if needed) the store at `path`. @default "runs/store.sqlite" */
  constructor(readonly path: string = DEFAULT_STORE, opts: { readOnly?: boolean } = {}) {
    if (!opts.readOnly) fs.mkdirSync(dirname(path), { recursive: true });
    else if (!fs.existsSync(path)) throw new Error(`${path}: no store yet (run a sweep first)`);
    try {
      this.#db = new DatabaseSync(path, { readOnly: opts.readOnly ?? false });
      this.#db.exec("PRAGMA busy_timeout = 5000;");
      if (!opts.readOnly) {
        this.#db.exec("PRAGMA journal_mode = WAL;");
        this.#db.exec(SCHEMA);
        const columns = this.#db.prepare("PRAGMA table_info(jobs)").all().map((c) => c.name);
        if (columns.includes("cancel")) {
          this.#db.exec("ALTER TABLE jobs RENAME COLUMN cancel TO cancel_requested");
        }
      }
    } catch (e) {
      throw new Error(
        `${path}: cannot open the store (${(e as Error).message}); ` +
          "move the file away (or pass another --store) to start a new one",
      );
    }
  }

  upsertSweep(name: string, file: string, hash: string, spec: string): SweepRow {
    this.#db.prepare(
      `INSERT INTO sweeps (name, file, hash, spec, created, status) VALUES (?, ?, ?, ?, ?, 'created')
       ON CONFLICT (name) DO UPDATE SET file = excluded.file, hash = excluded.hash, spec = excluded.spec`,
    ).run(name, file, hash, spec, new Date().toISOString());
    return this.sweep(name)!;
  }

  setSweepStatus(id: number, status: string): void {
    this.#db.prepare("UPDATE sweeps SET status = ? WHERE id = ?").run(status, id);
  }

  sweep(name?: string): SweepRow | undefined {
    const row = name === undefined
      ? this.#db.prepare("SELECT * FROM sweeps ORDER BY id DESC LIMIT 1").get()
      : this.#db.prepare("SELECT * FROM sweeps WHERE name = ?").get(name);
    return row as SweepRow | undefined;
  }

  latestSweep(): SweepRow | undefined {
    return this.sweep();
  }

  sweeps(): SweepRow[] {
    return this.#db.prepare("SELECT * FROM sweeps ORDER BY id DESC").all() as unknown as SweepRow[];
  }

  setConfigs(sweep: number, configs: Omit<ConfigRow, "sweep" | "removed">[]): void {
    this.#db.exec("BEGIN");
    try {
      this.#db.prepare("UPDATE configs SET removed = 1 WHERE sweep = ?").run(sweep);
      const put = this.#db.prepare(
        `INSERT INTO configs (sweep, idx, params, train_key, eval_key, removed) VALUES (?, ?, ?, ?, ?, 0)
         ON CONFLICT (sweep, params) DO UPDATE SET idx = excluded.idx, train_key = excluded.train_key,
         eval_key = excluded.eval_key, removed = 0`,
      );
      for (const c of configs) put.run(sweep, c.idx, c.params, c.trainKey, c.evalKey);
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  configs(sweep: number): ConfigRow[] {
    return this.#db.prepare(
      `SELECT sweep, idx, params, train_key AS trainKey, eval_key AS evalKey, removed FROM configs
       WHERE sweep = ? ORDER BY removed, idx`,
    ).all(sweep) as unknown as ConfigRow[];
  }

  ensureJob(
    sweep: number,
    key: string,
    kind: "train" | "eval",
    spec: string,
    runDir: string,
  ): JobRow {
    this.#db.prepare(
      `INSERT INTO jobs (sweep, key, kind, spec, run_dir, state) VALUES (?, ?, ?, ?, ?, 'queued')
       ON CONFLICT (sweep, key) DO NOTHING`,
    ).run(sweep, key, kind, spec, runDir);
    return this.#db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE sweep = ? AND key = ?`).get(
      sweep,
      key,
    ) as unknown as JobRow;
  }

  jobs(sweep: number): JobRow[] {
    return this.#db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE sweep = ? ORDER BY id`).all(
      sweep,
    ) as unknown as JobRow[];
  }

  job(id: number): JobRow | undefined {
    return this.#db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`).get(id) as
      | JobRow
      | undefined;
  }

  updateJob(id: number, fields: Partial<Omit<JobRow, "id" | "sweep" | "key">>): void {
    const column: Record<string, string> = {
      runDir: "run_dir",
      cancelRequested: "cancel_requested",
    };
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${column[k] ?? k} = ?`).join(", ");
    const values = keys.map((k) => (fields as Record<string, string | number | null>)[k]);
    this.#db.prepare(`UPDATE jobs SET ${sets} WHERE id = ?`).run(...values, id);
  }

  requestCancel(id: number): void {
    this.#db.prepare(
      "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state IN ('queued', 'running')",
    )
      .run(id);
  }

  requeue(id: number): void {
    this.#db.prepare(
      "UPDATE jobs SET state = 'queued', cancel_requested = 0, error = NULL, attempts = 0 WHERE id = ? AND state IN ('failed', 'cancelled', 'stopped')",
    ).run(id);
  }

  putMetrics(rows: MetricRow[]): void {
    if (rows.length === 0) return;
    const put = this.#db.prepare(
      `INSERT INTO metrics (job, step, loss, bands, lr, steps_per_sec) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (job, step) DO UPDATE SET loss = excluded.loss, bands = excluded.bands, lr = excluded.lr,
       steps_per_sec = excluded.steps_per_sec`,
    );
    this.#db.exec("BEGIN");
    try {
      for (const r of rows) put.run(r.job, r.step, r.loss, r.bands, r.lr, r.stepsPerSec);
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  metricsSince(job: number, afterStep: number): MetricRow[] {
    return this.#db.prepare(
      `SELECT job, step, loss, bands, lr, steps_per_sec AS stepsPerSec FROM metrics
       WHERE job = ? AND step > ? ORDER BY step`,
    ).all(job, afterStep) as unknown as MetricRow[];
  }

  putEval(row: EvalRow): void {
    this.#db.prepare(
      `INSERT INTO evals (job, metric, value, n, spread, extra) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (job, metric) DO UPDATE SET value = excluded.value, n = excluded.n, spread = excluded.spread,
       extra = excluded.extra`,
    ).run(row.job, row.metric, row.value, row.n, row.spread, row.extra);
  }

  evalsForSweep(sweep: number): EvalRow[] {
    return this.#db.prepare(
      "SELECT e.* FROM evals e JOIN jobs j ON j.id = e.job WHERE j.sweep = ? ORDER BY e.job, e.metric",
    ).all(sweep) as unknown as EvalRow[];
  }

  putArtifact(job: number, kind: string, path: string): void {
    this.#db.prepare("INSERT OR IGNORE INTO artifacts (job, kind, path) VALUES (?, ?, ?)").run(
      job,
      kind,
      path,
    );
  }

  artifacts(job: number): { kind: string; path: string }[] {
    return this.#db.prepare("SELECT kind, path FROM artifacts WHERE job = ? ORDER BY kind, path")
      .all(job) as unknown as {
        kind: string;
        path: string;
      }[];
  }

  close(): void {
    this.#db.close();
  }
}
