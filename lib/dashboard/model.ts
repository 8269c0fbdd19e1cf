/**
 * What the dashboard shows, computed from the store alone: a
 * {@link SweepReader} follows one sweep incrementally (only metric points
 * past the last step it has, evaluations again only when another evaluation
 * finished) and hands out {@link Snapshot}s; the rest are pure functions of
 * a snapshot (varying parameters, ETA, sorting, the compare grid, the
 * evaluation series of a run).
 */
import type { RunConfig } from "../models/model.ts";
import type { ConfigRow, EvalRow, JobRow, JobState, Store, SweepRow } from "../store/store.ts";
import type { Experiment } from "../sweep/experiment.ts";
import type { EvalJob, TrainJob } from "../sweep/planner.ts";
import {
  chooseMetric,
  noSweepError,
  recordedNfe,
  showValue,
  varyingParams,
} from "../sweep/results.ts";

/** One logged training step. */
export interface MetricPoint {
  /** Training step. */
  step: number;
  /** Training loss. */
  loss: number;
  /** Loss per timestep band, low t first (null where a band had no sample). */
  bands: (number | null)[];
  /** Learning rate. */
  lr: number;
  /** Throughput. */
  stepsPerSec: number;
}

/** A job with its parsed definition. */
export interface JobInfo {
  /** The job as stored. */
  row: JobRow;
  /** Its definition (a training or an evaluation job of the plan). */
  spec: TrainJob | EvalJob;
}

/** One configuration of the sweep: a row of the runs table. */
export interface RunRow {
  /** Position in the expanded experiment. */
  idx: number;
  /** Its full parameters. */
  params: RunConfig;
  /** Its training job. */
  train?: JobRow;
  /** Its evaluation job. */
  eval?: JobRow;
  /** The job it waits on: its training job until that is done, then its evaluation. */
  stage: "train" | "eval";
  /** State of the stage's job ("missing" when the store has none). */
  state: JobState | "missing";
  /** One word for the table: training, evaluating, queued, done, failed, cancelled, stopped. */
  status: string;
  /** Fraction done: 0.9 for the training, 0.1 for the evaluation. */
  progress: number;
  /** Latest training throughput, while training. */
  stepsPerSec?: number;
  /** Latest training loss. */
  loss?: number;
  /** Time left of its training, while training. */
  etaMs?: number;
  /** The sweep's metric from its evaluation. */
  metric?: number;
  /** Every metric of its evaluation. */
  metrics: Record<string, number>;
  /** Network evaluations per sample its evaluation used, when recorded. */
  nfe?: number;
}

/** Jobs by state. */
export interface Counts {
  /** Jobs done. */
  done: number;
  /** Jobs running. */
  running: number;
  /** Jobs queued. */
  queued: number;
  /** Jobs failed. */
  failed: number;
  /** Jobs cancelled or stopped early. */
  cancelled: number;
  /** All jobs. */
  total: number;
}

/** Everything one frame of the dashboard needs. */
export interface Snapshot {
  /** The sweep. */
  sweep: SweepRow;
  /** Its experiment as stored. */
  experiment: Experiment;
  /** The metric compared across configurations. */
  metric: string;
  /** Whether a smaller metric is better. */
  minimize: boolean;
  /** Parameters that vary across the configurations, in the experiment's order. */
  varying: string[];
  /** The configurations (removed ones left out), in plan order. */
  rows: RunRow[];
  /** Every job with its definition, by id. */
  jobs: Map<number, JobInfo>;
  /** Jobs by state. */
  counts: Counts;
  /** Time during which at least one job ran. */
  elapsedMs: number;
  /** Time left, when it can be estimated. */
  etaMs?: number;
  /** The ETA leaves out evaluations (none has finished yet to time them). */
  etaPartial: boolean;
  /** The configuration with the best metric. */
  best?: RunRow;
  /** Backend as configured, and as the first training run reported it. */
  backend: string;
  /** Whether an executor is working on the sweep (its status is running). */
  live: boolean;
  /** Increases whenever anything shown changed. */
  version: number;
}

/** Options of {@link SweepReader}. */
export interface ReaderOptions {
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
  /** Return undefined (not an error) while the named sweep is not in the store yet. @default false */
  wait?: boolean;
  /** Metric points kept per job; older ones are thinned to every other point. @default 4000 */
  maxPoints?: number;
}

/** Follows one sweep in a store, reading only what changed since the last refresh. */
export class SweepReader {
  readonly #store: Store;
  readonly #opts: ReaderOptions;
  #sweepId?: number;
  #hash = "";
  #experiment?: Experiment;
  #configs: ConfigRow[] = [];
  readonly #specs = new Map<number, { text: string; spec: TrainJob | EvalJob }>();
  readonly #series = new Map<number, MetricPoint[]>();
  readonly #lastStep = new Map<number, number>();
  readonly #seenState = new Map<number, string>();
  #evals: EvalRow[] = [];
  #evalsKey = "";
  #backend?: string;
  #signature = "";
  #version = 0;
  #queries = 0;

  /** A reader of `store` (which it does not close). */
  constructor(store: Store, opts: ReaderOptions = {}) {
    this.#store = store;
    this.#opts = opts;
  }

  /** Store queries made so far (the incremental-read test counts them). */
  get queries(): number {
    return this.#queries;
  }

  /** A job's logged training steps, ascending. */
  series(jobId: number): MetricPoint[] {
    return this.#series.get(jobId) ?? [];
  }

  /** Reads what changed and returns the new snapshot; undefined while waiting for the sweep. */
  async refresh(now = Date.now()): Promise<Snapshot | undefined> {
    const store = this.#store;
    this.#queries++;
    const sweep = this.#sweepId === undefined
      ? await store.sweep(this.#opts.sweep)
      : (await store.sweeps()).find((s) => s.id === this.#sweepId);
    if (!sweep) {
      if (this.#opts.wait) return undefined;
      throw await noSweepError(store, this.#opts.sweep);
    }
    this.#sweepId = sweep.id;
    if (sweep.hash !== this.#hash || !this.#experiment) {
      this.#hash = sweep.hash;
      this.#experiment = JSON.parse(sweep.spec) as Experiment;
      this.#configs = (await store.configs(sweep.id)).filter((c) => !c.removed);
      this.#queries++;
    }
    const rows = await store.jobs(sweep.id);
    this.#queries++;
    const jobs = new Map<number, JobInfo>();
    for (const row of rows) {
      let cached = this.#specs.get(row.id);
      if (!cached || cached.text !== row.spec) {
        cached = { text: row.spec, spec: JSON.parse(row.spec) };
        this.#specs.set(row.id, cached);
      }
      jobs.set(row.id, { row, spec: cached.spec });
      if (row.kind === "train") await this.#readMetrics(row);
    }
    const evalsKey = rows.filter((j) => j.kind === "eval" && j.state === "done")
      .map((j) => `${j.id}:${j.finished}`).join(",");
    if (evalsKey !== this.#evalsKey) {
      this.#evalsKey = evalsKey;
      this.#evals = await store.evalsForSweep(sweep.id);
      this.#queries++;
    }
    this.#backend ??= firstBackend(rows);
    const experiment = this.#experiment!;
    const snap = buildSnapshot({
      sweep,
      experiment,
      configs: this.#configs,
      jobs,
      evals: this.#evals,
      series: (id) => this.series(id),
      now,
      backend: `${experiment.backend || "auto"}${this.#backend ? ` → ${this.#backend}` : ""}`,
    });
    const signature = JSON.stringify([
      sweep.status,
      rows.map((j) => [j.state, j.progress, j.cancelRequested, j.error]),
      [...this.#lastStep.values()],
      this.#evals.length,
      this.#backend,
    ]);
    if (signature !== this.#signature) {
      this.#signature = signature;
      this.#version++;
    }
    snap.version = this.#version;
    return snap;
  }

  /** Appends the job's metric points past the last step read (only while it may still grow). */
  async #readMetrics(job: JobRow): Promise<void> {
    const seen = this.#seenState.get(job.id);
    const key = `${job.state}:${job.attempts}`;
    if (seen === key && job.state !== "running") return;
    this.#seenState.set(job.id, key);
    const last = this.#lastStep.get(job.id) ?? 0;
    const fresh = await this.#store.metricsSince(job.id, last);
    this.#queries++;
    if (fresh.length === 0) return;
    let points = this.#series.get(job.id) ?? [];
    for (const m of fresh) {
      let bands: (number | null)[] = [];
      try {
        bands = JSON.parse(m.bands ?? "[]");
      } catch {
        // a malformed bands cell shows as no bands
      }
      points.push({
        step: m.step,
        loss: m.loss ?? NaN,
        bands,
        lr: m.lr ?? NaN,
        stepsPerSec: m.stepsPerSec ?? NaN,
      });
    }
    const max = this.#opts.maxPoints ?? 4000;
    if (points.length > max) points = points.filter((_, i) => i % 2 === 1 || i >= max / 2);
    this.#series.set(job.id, points);
    this.#lastStep.set(job.id, fresh.at(-1)!.step);
  }
}

/** The backend the first training run that started reported (recorded in the store). */
function firstBackend(jobs: JobRow[]): string | undefined {
  return jobs.find((j) => j.kind === "train" && j.backend)?.backend ?? undefined;
}

/** Inputs of {@link buildSnapshot}. */
export interface SnapshotInputs {
  /** The sweep. */
  sweep: SweepRow;
  /** Its experiment. */
  experiment: Experiment;
  /** Its configurations (not removed). */
  configs: ConfigRow[];
  /** Its jobs by id. */
  jobs: Map<number, JobInfo>;
  /** Its evaluations. */
  evals: EvalRow[];
  /** A training job's metric points. */
  series: (jobId: number) => MetricPoint[];
  /** The time now, ms. */
  now: number;
  /** Backend text for the header. */
  backend: string;
}

/** Total time covered by at least one of the intervals [start, end] (ms). */
export function coveredTime(intervals: [number, number][]): number {
  const sorted = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  let total = 0;
  let end = -Infinity;
  for (const [a, b] of sorted) {
    if (b <= end) continue;
    total += b - Math.max(a, end);
    end = b;
  }
  return total;
}

/** Steps a training job runs to. */
function totalSteps(info: JobInfo | undefined): number {
  return Number((info?.spec as TrainJob | undefined)?.config?.steps ?? NaN);
}

/** A snapshot from already-read rows (pure; {@link SweepReader.refresh} calls it). */
export function buildSnapshot(inp: SnapshotInputs): Snapshot {
  const { sweep, experiment, configs, jobs, evals, now } = inp;
  const byKey = new Map([...jobs.values()].map((j) => [j.row.key, j.row]));
  const evalsByJob = new Map<number, Record<string, number>>();
  const nfeByJob = new Map<number, number>();
  for (const e of evals) {
    const m = evalsByJob.get(e.job) ?? {};
    m[e.metric] = e.value ?? NaN;
    evalsByJob.set(e.job, m);
    const nfe = recordedNfe(e.extra);
    if (nfe !== undefined) nfeByJob.set(e.job, nfe);
  }
  const params = configs.map((c) => JSON.parse(c.params) as RunConfig);
  const scored = configs.map((c, i) => {
    const ev = byKey.get(c.evalKey);
    return { params: params[i], metrics: ev ? evalsByJob.get(ev.id) ?? {} : {} };
  });
  const { name: metric, minimize } = chooseMetric({
    name: sweep.name,
    experiment,
    results: scored,
  });
  const varying = varyingParams(Object.keys(experiment.parameters ?? {}), params);
  const trainEta = (row: JobRow | undefined): number | undefined => {
    if (!row || row.state !== "running") return undefined;
    const last = inp.series(row.id).at(-1);
    const total = totalSteps(jobs.get(row.id));
    if (!last || !(last.stepsPerSec > 0) || !Number.isFinite(total)) return undefined;
    return Math.max(0, total - last.step) / last.stepsPerSec * 1000;
  };
  const rows: RunRow[] = configs.map((c, i) => {
    const train = byKey.get(c.trainKey);
    const ev = byKey.get(c.evalKey);
    const stage = !train || train.state === "done" ? "eval" : "train";
    const job = stage === "train" ? train : ev;
    const state = job?.state ?? "missing";
    const last = train ? inp.series(train.id).at(-1) : undefined;
    const metrics = scored[i].metrics;
    const status = state === "running"
      ? (stage === "train" ? "training" : "evaluating")
      : state === "queued" && job?.cancelRequested
      ? "cancelling"
      : state;
    const trainFrac = train?.state === "done" ? 1 : train?.progress ?? 0;
    // A running evaluation reports its sampling progress.
    const evalFrac = ev?.state === "done" ? 1 : ev?.state === "running" ? ev.progress : 0;
    return {
      idx: c.idx,
      params: params[i],
      train,
      eval: ev,
      stage,
      state,
      status: state === "running" && job?.cancelRequested ? "cancelling" : status,
      progress: 0.9 * trainFrac + 0.1 * evalFrac,
      stepsPerSec: train?.state === "running" ? last?.stepsPerSec : undefined,
      loss: last?.loss,
      etaMs: trainEta(train),
      metric: metrics[metric],
      metrics,
      nfe: ev ? nfeByJob.get(ev.id) : undefined,
    };
  });
  const all = [...jobs.values()].map((j) => j.row);
  const counts: Counts = {
    done: all.filter((j) => j.state === "done").length,
    running: all.filter((j) => j.state === "running").length,
    queued: all.filter((j) => j.state === "queued").length,
    failed: all.filter((j) => j.state === "failed").length,
    cancelled: all.filter((j) => j.state === "cancelled" || j.state === "stopped").length,
    total: all.length,
  };
  const elapsedMs = coveredTime(
    all.filter((j) => j.started).map((j) => {
      const a = Date.parse(j.started!);
      const b = j.state === "running" ? now : j.finished ? Date.parse(j.finished) : a;
      return [a, Math.max(a, b)];
    }),
  );
  const live = sweep.status === "running";
  return {
    sweep,
    experiment,
    metric,
    minimize,
    varying,
    rows,
    jobs,
    counts,
    elapsedMs,
    ...(live
      ? sweepEta([...jobs.values()], inp.series, experiment.concurrency)
      : { etaMs: undefined, etaPartial: false }),
    best: bestRow(rows, minimize),
    backend: inp.backend,
    live,
    version: 0,
  };
}

/** The row with the best finite metric (first of equals). */
export function bestRow(rows: RunRow[], minimize: boolean): RunRow | undefined {
  let best: RunRow | undefined;
  for (const r of rows) {
    if (r.metric === undefined || !Number.isFinite(r.metric)) continue;
    if (!best || (minimize ? r.metric < best.metric! : r.metric > best.metric!)) best = r;
  }
  return best;
}

/**
 * Time left of a sweep: the remaining training steps of running and queued
 * training jobs at their observed throughput, plus the queued and running
 * evaluations at the mean duration of those done, shared among the jobs that
 * run at once (the concurrency, else the number running); never less than
 * the longest running training job's own remainder. `etaMs` is undefined
 * when no throughput has been measured yet and 0 when nothing is left;
 * `etaPartial` says the evaluations were left out (none has finished yet).
 */
export function sweepEta(
  jobs: JobInfo[],
  series: (jobId: number) => MetricPoint[],
  concurrency = 0,
): { etaMs?: number; etaPartial: boolean } {
  const left = jobs.filter((j) => j.row.state === "queued" || j.row.state === "running");
  if (left.length === 0) return { etaMs: 0, etaPartial: false };
  const rates = jobs.filter((j) => j.row.kind === "train")
    .map((j) => series(j.row.id).at(-1)?.stepsPerSec ?? NaN)
    .filter((r) => r > 0);
  const meanRate = rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : NaN;
  const evalTimes = jobs.filter((j) =>
    j.row.kind === "eval" && j.row.state === "done" && j.row.started && j.row.finished
  ).map((j) => Date.parse(j.row.finished!) - Date.parse(j.row.started!));
  const meanEval = evalTimes.length ? evalTimes.reduce((a, b) => a + b, 0) / evalTimes.length : NaN;
  let work = 0;
  let longest = 0;
  let partial = false;
  for (const j of left) {
    if (j.row.kind === "train") {
      const last = series(j.row.id).at(-1);
      const rate = last && last.stepsPerSec > 0 ? last.stepsPerSec : meanRate;
      const stepsLeft = totalSteps(j) - (j.row.state === "running" ? last?.step ?? 0 : 0);
      const ms = Math.max(0, stepsLeft) / rate * 1000;
      work += ms;
      if (j.row.state === "running") longest = Math.max(longest, ms);
    } else if (Number.isNaN(meanEval)) partial = true;
    else work += meanEval;
  }
  if (!Number.isFinite(work)) return { etaMs: undefined, etaPartial: partial };
  const running = left.filter((j) => j.row.state === "running").length;
  const parallel = Math.max(1, concurrency || running);
  return { etaMs: Math.max(longest, work / parallel), etaPartial: partial };
}

/** How the runs table is sorted. */
export type SortOrder = "plan" | "metric";

/** Rows in plan order, or by metric (best first; rows without one last, in plan order). */
export function sortRows(rows: RunRow[], order: SortOrder, minimize: boolean): RunRow[] {
  if (order === "plan") return [...rows].sort((a, b) => a.idx - b.idx);
  const key = (r: RunRow) =>
    r.metric === undefined || !Number.isFinite(r.metric)
      ? Infinity
      : minimize
      ? r.metric
      : -r.metric;
  return [...rows].sort((a, b) => key(a) - key(b) || a.idx - b.idx);
}

/**
 * A training run's evaluations as series of the metric against the network
 * evaluations they cost (NFE, when every one recorded it; Heun costs about
 * two per step) or else against sampling steps, one per sampler and EMA
 * setting (labels like "ddim ema 0.999").
 */
export function evalSeries(
  snap: Snapshot,
  trainKey: string,
): { x: "nfe" | "steps"; series: { label: string; points: [number, number][] }[] } {
  const groups = new Map<string, [number, number][]>();
  const mine = snap.rows.filter((r) =>
    r.train?.key === trainKey && r.metric !== undefined && Number.isFinite(r.metric)
  );
  const byNfe = mine.length > 0 && mine.every((r) => r.nfe !== undefined);
  for (const r of mine) {
    if (r.metric === undefined) continue;
    const settings = r.eval ? (snap.jobs.get(r.eval.id)?.spec as EvalJob).settings ?? {} : {};
    const steps = byNfe ? r.nfe! : Number(settings.sample_steps ?? r.params.sample_steps ?? 0);
    const sampler = showValue(settings.sampler ?? r.params.sampler) || "default";
    const ema = showValue(settings.ema_eval ?? r.params.ema_eval);
    const label = `${sampler}${ema ? ` ema ${ema}` : ""}`;
    const pts = groups.get(label) ?? [];
    if (!pts.some(([x]) => x === steps)) pts.push([steps, r.metric]);
    groups.set(label, pts);
  }
  const series = [...groups].map(([label, points]) => ({
    label,
    points: points.sort((a, b) => a[0] - b[0]),
  }));
  return { x: byNfe ? "nfe" : "steps", series };
}

/**
 * The job `c` acts on for a row: its stage's job. `reason` says why nothing
 * can be cancelled when that is so.
 */
export function cancelTarget(
  snap: Snapshot,
  row: RunRow,
): { job?: JobRow; reason?: string; shared: number } {
  const job = row.stage === "train" ? row.train : row.eval;
  const shared = job ? snap.rows.filter((r) => r.train?.id === job.id).length : 0;
  if (!job) return { reason: "this configuration has no job in the store", shared };
  const what = `${job.kind === "train" ? "training" : "evaluation"} job ${job.key}`;
  if (job.state !== "queued" && job.state !== "running") {
    return { reason: `${what} is ${job.state}: nothing to cancel`, shared };
  }
  if (!snap.live) {
    return {
      reason: `sweep ${snap.sweep.name} is ${snap.sweep.status}, not running: nothing to cancel`,
      shared,
    };
  }
  if (job.cancelRequested) return { reason: `${what}: cancel already requested`, shared };
  return { job, shared };
}

/** The job `r` restarts for a row (a failed, cancelled or stopped one), or why there is none. */
export function restartTarget(snap: Snapshot, row: RunRow): { job?: JobRow; reason?: string } {
  const restartable = (j?: JobRow) =>
    j && (j.state === "failed" || j.state === "cancelled" || j.state === "stopped");
  const job = restartable(row.train) ? row.train : restartable(row.eval) ? row.eval : undefined;
  if (!job) {
    const cur = row.stage === "train" ? row.train : row.eval;
    return {
      reason: `only a failed, cancelled or stopped job restarts; this one is ${
        cur?.state ?? "missing"
      }`,
    };
  }
  if (!snap.live) {
    return {
      reason: `sweep ${snap.sweep.name} is ${snap.sweep.status} and nothing runs it: ` +
        `\`deno task sweep ${snap.sweep.file} --restart-failed\` restarts its failed jobs`,
    };
  }
  return { job };
}
