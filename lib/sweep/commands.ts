/**
 * `deno task sweep`, `watch` (plain) and `compare`: load and plan an
 * experiment, record it in the store, run it (resuming whatever an earlier,
 * interrupted invocation left), and tabulate the results.
 */
import { acquireSweepLock } from "./lock.ts";
import { stringify } from "csv-stringify/sync";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_STORE,
  openStore,
  type SqlExecutor,
  type Store,
  type SweepRow,
} from "../store/store.ts";
import {
  checkParam,
  chooseSharedMetric,
  compareGrid,
  defaultAxes,
  distinctValues,
  showValue,
  type SweepResults,
  sweepResults,
} from "./results.ts";
import { plotSweeps } from "./plot.ts";
import { type Experiment, loadExperiment } from "./experiment.ts";
import { execute, type ExecuteOptions, type ExecutorUpdate } from "./executor.ts";
import { configRows, describePlan, type Plan, planSweep, type TrainJob } from "./planner.ts";
import { coordinate } from "./coordinator.ts";
import { openQueue } from "./queue.ts";
import { runWorker } from "./worker.ts";

/** Options of {@link runSweep}. */
export interface SweepOptions {
  /** Experiment file. @default "experiments/default.yaml" */
  file?: string;
  /** Print the plan and stop. @default false */
  dryRun?: boolean;
  /** Plain progress lines even when `onUpdate` (a dashboard) is given. @default false */
  noTui?: boolean;
  /** Jobs at a time (overrides the experiment). @default the experiment's, else the number of cores */
  concurrency?: number;
  /** Put failed jobs back in the queue first. @default false */
  restartFailed?: boolean;
  /** An open store to use (left open); otherwise `storePath` is opened and closed. */
  store?: Store;
  /** Store: an SQLite file or a postgres:// URL, when no `store` is given. @default "runs/store.sqlite" */
  storePath?: string;
  /** Folder of run directories: runs/<sweep-name>/<job-key>/. @default "runs" */
  runsDir?: string;
  /** Command running main.ts for the child jobs. @default {@link defaultWorker} */
  workerCommand?: string[];
  /** Sink of plain progress lines (one per event, no escape codes). @default console.log */
  onEvent?: (line: string) => void;
  /** Structured progress for a dashboard; while given (and not `noTui`) no plain job lines are printed. */
  onUpdate?: (update: ExecutorUpdate, sweepId: number) => void;
  /** Backend for the jobs (overrides the experiment). @default the experiment's */
  backend?: string;
  /**
   * On a PostgreSQL store, also run jobs in this process (a worker limited to
   * this sweep); false = coordinate only, `deno task worker` runs them.
   * @default true
   */
  localWorker?: boolean;
  /** Aborting stops the sweep as Ctrl-C does. @default SIGINT or SIGTERM */
  signal?: AbortSignal;
}

/** The default worker: this Deno running this project's main.ts. */
export function defaultWorker(): string[] {
  return [Deno.execPath(), "run", "-A", fileURLToPath(new URL("../../main.ts", import.meta.url))];
}

function hashText(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** Key paths whose values differ between two JSON values, e.g. `parameters.lr.values: [1] → [2]`. */
function diffKeys(a: unknown, b: unknown, path: string, out: string[]): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      diffKeys(a[k], b[k], path ? `${path}.${k}` : k, out);
    }
  } else if (JSON.stringify(a) !== JSON.stringify(b)) {
    out.push(`${path}: ${JSON.stringify(a) ?? "(absent)"} → ${JSON.stringify(b) ?? "(absent)"}`);
  }
  return out;
}

/** What changed between the stored sweep and the new experiment and configurations. */
async function describeChange(
  store: Store,
  sweep: SweepRow,
  experiment: Experiment,
  params: string[],
): Promise<string[]> {
  const before = new Set(
    (await store.configs(sweep.id)).filter((c) => !c.removed).map((c) => c.params),
  );
  const after = new Set(params);
  const added = params.filter((p) => !before.has(p));
  const removed = [...before].filter((p) => !after.has(p));
  const { file: _old, ...oldSpec } = JSON.parse(sweep.spec) as Experiment;
  const { file: _new, ...newSpec } = experiment;
  const changed = diffKeys(oldSpec, newSpec, "", []);
  const lines = [
    `the experiment file changed: ${added.length} configurations added, ${removed.length} removed`,
  ];
  for (const c of changed) lines.push(`  ~ ${c}`);
  for (const p of added.slice(0, 10)) lines.push(`  + ${p}`);
  if (added.length > 10) lines.push(`  + … ${added.length - 10} more`);
  for (const p of removed.slice(0, 10)) lines.push(`  - ${p} (kept in the store, not run)`);
  if (removed.length > 10) lines.push(`  - … ${removed.length - 10} more`);
  return lines;
}

/** Runs (or resumes) a sweep; returns its name and counts. */
export async function runSweep(
  opts: SweepOptions = {},
): Promise<{ name: string; done: number; failed: number }> {
  const file = opts.file ?? "experiments/default.yaml";
  const say = opts.onEvent ?? ((l: string) => console.log(l));
  const { experiment, text } = loadExperiment(file);
  const plan = planSweep(experiment);
  if (opts.dryRun) {
    say(describePlan(plan));
    return { name: experiment.name, done: 0, failed: 0 };
  }
  const runsDir = opts.runsDir ?? "runs";
  const release = acquireSweepLock(join(runsDir, experiment.name, "sweep.lock"), experiment.name);
  let store: Store | undefined;
  try {
    store = opts.store ?? await openStore(opts.storePath ?? DEFAULT_STORE);
  } catch (e) {
    release();
    throw e;
  }
  const plain = opts.noTui || !opts.onUpdate;
  try {
    const hash = hashText(text);
    const existing = await store.sweep(experiment.name);
    const params = plan.configs.map((c) => JSON.stringify(c.params));
    if (existing && existing.hash !== hash) {
      for (const l of await describeChange(store, existing, experiment, params)) say(l);
    }
    const sweep = await store.upsertSweep(experiment.name, file, hash, JSON.stringify(experiment));
    await store.setConfigs(sweep.id, configRows(plan));
    for (const t of plan.train) {
      const spec = JSON.stringify(t);
      const job = await store.ensureJob(
        sweep.id,
        t.key,
        "train",
        spec,
        join(runsDir, experiment.name, t.key),
      );
      if (job.spec === spec) continue;
      // Same training keys, other steps or EMA decays: the run continues from its checkpoint.
      const changes = diffKeys((JSON.parse(job.spec) as TrainJob).config, t.config, "", []);
      await store.updateJob(job.id, { spec });
      if (job.state !== "queued" && job.state !== "running") {
        await store.updateJob(job.id, {
          state: "queued",
          attempts: 0,
          error: null,
          cancelRequested: 0,
        });
      }
      say(
        `training job ${t.key} changed (${changes.join("; ")}): it continues from its checkpoint`,
      );
    }
    for (const ev of plan.eval) {
      await store.ensureJob(
        sweep.id,
        ev.key,
        "eval",
        JSON.stringify(ev),
        join(runsDir, experiment.name, ev.train),
      );
    }
    if (opts.restartFailed) {
      for (const j of await store.jobs(sweep.id)) {
        if (j.state === "failed") await store.requeue(j.id);
      }
    }
    const done = (await store.jobs(sweep.id)).filter((j) => j.state === "done").length;
    say(
      `sweep ${experiment.name}: ${plan.configs.length} configurations → ${plan.train.length} training + ` +
        `${plan.eval.length} evaluation jobs (${done} already done)`,
    );
    await store.setSweepStatus(sweep.id, "running");
    const t0 = performance.now();
    const onUpdate = (u: ExecutorUpdate) => {
      opts.onUpdate?.(u, sweep.id);
      if (plain) say(`${new Date().toISOString().slice(11, 19)} ${u.message}`);
    };
    const stop = new AbortController();
    opts.signal?.addEventListener("abort", () => stop.abort());
    const signals = opts.signal ? [] : (["SIGINT", "SIGTERM"] as const);
    const onSignal = () => stop.abort();
    for (const s of signals) Deno.addSignalListener(s, onSignal);
    const common = {
      workerCommand: opts.workerCommand ?? defaultWorker(),
      concurrency: opts.concurrency || experiment.concurrency || undefined,
      maxFailures: experiment.maxFailures,
      timeout: experiment.timeout,
      backend: opts.backend ?? experiment.backend,
    };
    let result: { done: number; failed: number };
    try {
      result = store.engine === "postgres"
        ? await runDistributed(store as Store & SqlExecutor, sweep.id, plan, {
          ...common,
          earlyTerminate: experiment.earlyTerminate,
          localWorker: opts.localWorker ?? true,
          runsDir,
          onUpdate,
          onProblem: say,
          signal: stop.signal,
        })
        : await execute({
          ...common,
          store,
          sweepId: sweep.id,
          plan,
          earlyTerminate: experiment.earlyTerminate,
          onUpdate,
          signal: stop.signal,
        });
    } finally {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    }
    if (stop.signal.aborted) {
      await store.setSweepStatus(sweep.id, "stopped");
      say(
        `sweep ${experiment.name} stopped after ${
          ((performance.now() - t0) / 1000).toFixed(0)
        } s: ${result.done} jobs done; \`deno task sweep ${file}\` continues it`,
      );
      return { name: experiment.name, ...result };
    }
    await store.setSweepStatus(sweep.id, result.failed ? "failed" : "done");
    say(
      `sweep ${experiment.name} finished in ${((performance.now() - t0) / 1000).toFixed(0)} s: ` +
        `${result.done} jobs done, ${result.failed} failed`,
    );
    return { name: experiment.name, ...result };
  } finally {
    if (!opts.store) await store.close();
    release();
  }
}

/**
 * A sweep on a PostgreSQL store: the coordinator, and unless
 * `localWorker` is false a worker in this process that takes only this
 * sweep's jobs; both stop when the sweep ends or `signal` aborts.
 */
async function runDistributed(
  store: Store & SqlExecutor,
  sweepId: number,
  plan: Plan,
  o:
    & Pick<
      ExecuteOptions,
      "workerCommand" | "concurrency" | "maxFailures" | "timeout" | "backend" | "earlyTerminate"
    >
    & {
      localWorker: boolean;
      runsDir: string;
      onUpdate: (u: ExecutorUpdate) => void;
      onProblem: (line: string) => void;
      signal: AbortSignal;
    },
): Promise<{ done: number; failed: number }> {
  const boss = await openQueue(store, o.onProblem);
  const workerStop = new AbortController();
  o.signal.addEventListener("abort", () => workerStop.abort());
  try {
    const result = coordinate({
      store,
      boss,
      sweepId,
      plan,
      maxFailures: o.maxFailures,
      earlyTerminate: o.earlyTerminate,
      onUpdate: o.onUpdate,
      onProblem: o.onProblem,
      signal: o.signal,
    });
    const worker = o.localWorker
      ? runWorker({
        store,
        boss,
        sweepId,
        runsDir: join(o.runsDir, ".worker"),
        workerCommand: o.workerCommand,
        concurrency: o.concurrency,
        backend: o.backend,
        maxFailures: o.maxFailures,
        timeout: o.timeout,
        onProblem: o.onProblem,
        signal: workerStop.signal,
      })
      : Promise.resolve();
    try {
      return await result;
    } finally {
      workerStop.abort();
      await worker;
    }
  } finally {
    await boss.stop({ timeout: 2000 }).catch(() => {});
  }
}

/** Options of {@link compareSweep}. */
export interface CompareOptions {
  /** Sweep names, compared side by side. @default the most recent sweep */
  sweeps?: string[];
  /** Row parameter. @default "schedule" (or the first varying parameter) */
  rows?: string;
  /** Column parameter (or `nfe`, the network evaluations each evaluation recorded). @default "sample_steps" (or the next varying parameter) */
  cols?: string;
  /** Metric. @default the experiment's, else the first one its evaluations recorded */
  metric?: string;
  /** Every configuration as one CSV row: (sweep,) parameters, state, then metrics. @default false */
  csv?: boolean;
  /** Also write the metric against sampling steps or NFE as a figure: a .svg or .png file. */
  plot?: string;
  /** The figure's series: one line per value of this parameter. @default see {@link plotAxes} */
  by?: string;
  /** The figure's x axis: `nfe` or `sample_steps`. @default nfe when every evaluation recorded it */
  x?: string;
  /** An open store to read (left open); otherwise `storePath` is opened read-only. */
  store?: Store;
  /** Store: an SQLite file (opened read-only) or a postgres:// URL, when no `store` is given. @default "runs/store.sqlite" */
  storePath?: string;
}

/** The sweeps named (each once), or the most recent one. */
export async function loadSweeps(store: Store, names: string[] = []): Promise<SweepResults[]> {
  const list = names.length ? [...new Set(names)] : [undefined];
  const out: SweepResults[] = [];
  for (const n of list) out.push(await sweepResults(store, n));
  return out;
}

/** The parameters that vary in any of the sweeps, the first sweep's order first. */
function varyingOfAll(sweeps: SweepResults[]): string[] {
  return [...new Set(sweeps.flatMap((s) => s.varying))];
}

/** Every configuration as CSV: a sweep column when there are several, parameters, state, metrics. */
function resultsCsv(sweeps: SweepResults[]): string {
  const all = sweeps.flatMap((s) => s.results);
  const varying = varyingOfAll(sweeps);
  const metricNames = [...new Set(all.flatMap((r) => Object.keys(r.metrics)))].sort();
  const keys = [...new Set(all.flatMap((r) => Object.keys(r.params)))];
  const ordered = [...varying, ...keys.filter((k) => !varying.includes(k))];
  const several = sweeps.length > 1;
  return stringify([
    [...(several ? ["sweep"] : []), ...ordered, "state", ...metricNames],
    ...all.map((r) => [
      ...(several ? [r.sweep] : []),
      ...ordered.map((k) =>
        r.params[k] === undefined
          ? ""
          : typeof r.params[k] === "object"
          ? JSON.stringify(r.params[k])
          : String(r.params[k])
      ),
      r.state,
      ...metricNames.map((m) => r.metrics[m] ?? ""),
    ]),
  ]);
}

/**
 * The compare table (or CSV) as text: one grid, or with several sweeps their
 * grids side by side on the same rows and columns, each with its best cell
 * marked. With `plot`, also writes the figure and says where.
 */
export async function compareSweep(opts: CompareOptions = {}): Promise<string> {
  const store = opts.store ?? await openStore(opts.storePath ?? DEFAULT_STORE, { readOnly: true });
  try {
    const sweeps = await loadSweeps(store, opts.sweeps);
    if (opts.csv) return resultsCsv(sweeps);
    const { name: metric, minimize } = chooseSharedMetric(sweeps, opts.metric);
    const varying = varyingOfAll(sweeps);
    const [defRows, defCols] = defaultAxes(varying);
    const rows = opts.rows ?? defRows;
    const cols = opts.cols ?? (defCols === rows ? varying.find((k) => k !== rows) : defCols);
    if (!rows || !cols) {
      throw new Error(
        `compare needs two parameters that vary; sweep ${
          sweeps.map((s) => s.name).join(", ")
        } varies ${varying.join(", ") || "none"} (use --rows and --cols)`,
      );
    }
    for (const s of sweeps) {
      checkParam(s, "--rows", rows);
      checkParam(s, "--cols", cols);
    }
    if (rows === cols) throw new Error(`--rows and --cols are both ${rows}: name two parameters`);
    const all = sweeps.flatMap((s) => s.results);
    const values = {
      rows: distinctValues(all.map((r) => r.params[rows])),
      cols: distinctValues(all.map((r) => r.params[cols])),
    };
    const grids = sweeps.map((s) => compareGrid(s.results, rows, cols, metric, minimize, values));
    const others = varying.filter((k) => k !== rows && k !== cols);
    const width = 11;
    const corner = `${rows} \\ ${cols}`;
    const labelW = Math.max(18, corner.length + 1, ...values.rows.map((v) => v.length + 1));
    const sep = sweeps.length > 1 ? "  |" : "";
    const lines = [
      `${sweeps.map((s) => s.name).join(", ")}: ${metric || "(no metric recorded yet)"} (${
        minimize ? "minimize" : "maximize"
      }), best over ${others.join(", ") || "nothing else"} per cell; * = best${
        sweeps.length > 1 ? " of each sweep" : ""
      }`,
    ];
    if (sweeps.length > 1) {
      lines.push(
        " ".repeat(labelW) +
          sweeps.map((s) => `${sep}${s.name.padStart(values.cols.length * width)}`).join(""),
      );
    }
    lines.push(
      corner.padEnd(labelW) +
        grids.map(() => sep + values.cols.map((c) => c.padStart(width)).join("")).join(""),
    );
    values.rows.forEach((r, i) => {
      const blocks = grids.map((g) =>
        sep + values.cols.map((_, j) => {
          const v = g.cells[i][j];
          const isBest = g.best?.[0] === i && g.best?.[1] === j;
          return (v === undefined ? "—  " : `${v.toPrecision(4)}${isBest ? "*" : " "}`)
            .padStart(width);
        }).join("")
      );
      lines.push(r.padEnd(labelW) + blocks.join(""));
    });
    const bests = grids.flatMap((g, k) => {
      if (!g.best || others.length === 0) return [];
      const [i, j] = g.best;
      const member = sweeps[k].results[g.members[i][j]!];
      return [
        `best${sweeps.length > 1 ? ` of ${sweeps[k].name}` : ""}: ${rows}=${
          g.rowValues[i]
        } ${cols}=${g.colValues[j]} ${
          others.map((p) => `${p}=${showValue(member.params[p])}`).join(" ")
        }`,
      ];
    });
    if (bests.length) lines.push("", ...bests);
    if (opts.plot) {
      const figure = await plotSweeps(sweeps, {
        file: opts.plot,
        metric: opts.metric,
        by: opts.by,
        x: opts.x,
      });
      lines.push("", `figure: ${figure.file} (${figure.describe})`);
    }
    return lines.join("\n");
  } finally {
    if (!opts.store) await store.close();
  }
}

/** Plain `watch`: prints the sweep's job states and latest numbers once. */
export async function watchPlain(opts: { sweep?: string; storePath?: string }): Promise<string> {
  const store = await openStore(opts.storePath ?? DEFAULT_STORE, { readOnly: true });
  try {
    const sweep = await store.sweep(opts.sweep);
    if (!sweep) {
      throw new Error(opts.sweep ? `no sweep named "${opts.sweep}"` : "no sweep in the store yet");
    }
    const jobs = await store.jobs(sweep.id);
    const count = (s: string) => jobs.filter((j) => j.state === s).length;
    const lines = [
      `sweep ${sweep.name} (${sweep.status}): ${count("done")} done, ${count("running")} running, ${
        count("queued")
      } queued, ${count("failed")} failed`,
    ];
    const evals = await store.evalsForSweep(sweep.id);
    for (const j of jobs) {
      const last = j.kind === "train" ? (await store.metricsSince(j.id, 0)).at(-1) : undefined;
      const ev = evals.filter((e) => e.job === j.id).map((e) =>
        `${e.metric}=${e.value.toPrecision(4)}`
      ).join(" ");
      lines.push(
        `  ${j.kind.padEnd(5)} ${j.state.padEnd(9)} ${
          (j.progress * 100).toFixed(0).padStart(3)
        }%  ${j.key}` +
          `${last ? `  step ${last.step} loss ${last.loss.toFixed(4)}` : ""}${ev ? `  ${ev}` : ""}${
            j.error ? `  (${j.error})` : ""
          }`,
      );
    }
    return lines.join("\n");
  } finally {
    await store.close();
  }
}

/** Every sweep in the store, newest first: name, status, jobs done of total, creation time, file. */
export async function listSweeps(
  opts: { store?: Store; storePath?: string } = {},
): Promise<string> {
  const store = opts.store ?? await openStore(opts.storePath ?? DEFAULT_STORE, { readOnly: true });
  try {
    const rows = [];
    for (const s of await store.sweeps()) {
      const jobs = await store.jobs(s.id);
      const done = jobs.filter((j) => j.state === "done").length;
      const failed = jobs.filter((j) => j.state === "failed").length;
      rows.push([s.name, s.status, `${done}/${jobs.length}`, String(failed), s.created, s.file]);
    }
    if (rows.length === 0) return "no sweep in the store yet";
    const table = [["sweep", "status", "done", "failed", "created", "file"], ...rows];
    const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
    return table.map((r) => r.map((v, c) => v.padEnd(widths[c])).join("  ").trimEnd()).join("\n");
  } finally {
    if (!opts.store) await store.close();
  }
}
