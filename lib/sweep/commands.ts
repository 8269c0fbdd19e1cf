/**
 * `deno task sweep`: load and plan an experiment, record it in the store and
 * run it (resuming whatever an earlier, interrupted invocation left), here or
 * through a PostgreSQL store's workers.
 */
import { acquireSweepLock } from "./lock.ts";
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
  let unhold = () => Promise.resolve();
  try {
    // One coordinator per sweep, whichever machine it runs on (on PostgreSQL; on SQLite the lock
    // file above): a second one is refused before it changes anything.
    unhold = await store.holdSweep(experiment.name, say);
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
    if (opts.signal?.aborted) stop.abort(); // aborted before it began: its listener would never run
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
    await unhold();
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
  // Ctrl-C: the sweep is marked stopped before the local worker stops, so that no other worker
  // takes the jobs it puts back in the queue.
  let marked = Promise.resolve();
  o.signal.addEventListener("abort", () => {
    marked = store.setSweepStatus(sweepId, "stopped").catch(() => {});
    marked.then(() => workerStop.abort());
  });
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
      await marked;
      workerStop.abort();
      await worker;
    }
  } finally {
    await boss.stop({ timeout: 2000 }).catch(() => {});
  }
}
