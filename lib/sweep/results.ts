/**
 * A sweep's results as `compare`, `report` and the dashboard read them: every
 * configuration with its metrics from the store, the parameters that vary,
 * the metric compared (the experiment's, else the first one recorded), the
 * default axes and the compare grid (the best over the other parameters in
 * each cell). One module, so the command line and the dashboard cannot
 * disagree.
 */
import * as fs from "node:fs";
import type { RunConfig } from "../models/model.ts";
import type { EvalRow, Store } from "../store/store.ts";
import { didYouMean } from "../runtime/text.ts";
import type { Experiment } from "./experiment.ts";

/** The `nfe` (network evaluations per sample) an evaluation recorded among its extra fields (JSON), if any. */
export function recordedNfe(extra: string | null | undefined): number | undefined {
  try {
    const nfe = JSON.parse(extra ?? "null")?.nfe;
    return typeof nfe === "number" && nfe > 0 ? nfe : undefined;
  } catch {
    return undefined;
  }
}

/** A sample file of an evaluation: its name (`samples/<key>.csv`, or a path) and its bytes. */
export interface SampleFile {
  /** The stored name, or the path it was read from. */
  name: string;
  /** Its content. */
  bytes: Uint8Array;
}

/**
 * An evaluation's sample files, CSVs (2-D points, tables) first: those in
 * the store (`samples/…`, which every machine reads), else, for a store
 * written before sample files were stored, the recorded `samples` artifacts
 * that exist on this machine.
 */
export async function evalSampleFiles(store: Store, job: number): Promise<SampleFile[]> {
  const out: SampleFile[] = [];
  for (const name of await store.files(job, "samples/")) {
    const bytes = await store.readFile(job, name);
    if (bytes) out.push({ name, bytes });
  }
  if (!out.length) {
    for (const a of await store.artifacts(job)) {
      if (a.kind === "samples" && fs.existsSync(a.path)) {
        out.push({ name: a.path, bytes: new Uint8Array(fs.readFileSync(a.path)) });
      }
    }
  }
  return out.sort((a, b) => Number(b.name.endsWith(".csv")) - Number(a.name.endsWith(".csv")));
}

/** What the grid needs of a configuration: its parameters and its metrics. */
export interface Scored {
  /** The configuration's parameters. */
  params: RunConfig;
  /** Metric name → value. */
  metrics: Record<string, number>;
}

/** One configuration of a sweep with its evaluation results. */
export interface ConfigResult extends Scored {
  /** The sweep it belongs to. */
  sweep: string;
  /** The configuration's full parameters, plus `nfe` when its evaluation recorded one. */
  params: RunConfig;
  /** Metric name → value of its evaluation job. */
  metrics: Record<string, number>;
  /** Metric name → its spread (a bootstrap standard deviation). */
  spreads: Record<string, number>;
  /** State of its evaluation job ("missing" when it has none). */
  state: string;
  /** Its evaluation job's id, when the store has the job. */
  job?: number;
}

/** A sweep as stored, with its configurations' results. */
export interface SweepResults {
  /** The sweep's name. */
  name: string;
  /** Its experiment as stored. */
  experiment: Experiment;
  /** Its configurations (removed ones left out), in plan order. */
  results: ConfigResult[];
  /** The experiment's parameters whose values differ between configurations, in file order. */
  varying: string[];
}

/**
 * The error for a sweep the store does not have: the nearest name and every
 * name it has, or how to make a first one.
 */
export async function noSweepError(store: Store, name?: string): Promise<Error> {
  const known = (await store.sweeps()).map((s) => s.name);
  return new Error(
    name
      ? `no sweep named "${name}" in the store ${store.location}${didYouMean(name, known)} ` +
        `(sweeps: ${known.join(", ") || "none"})`
      : `no sweep in the store ${store.location} yet (run \`deno task sweep\` first)`,
  );
}

/** The parameters whose values differ between configurations, in the order of `parameters`. */
export function varyingParams(parameters: string[], configs: RunConfig[]): string[] {
  return parameters.filter((k) => new Set(configs.map((c) => JSON.stringify(c[k]))).size > 1);
}

/**
 * Every configuration of a sweep (the most recent when `name` is not given)
 * with its metrics, spreads and recorded NFE; read-only.
 */
export async function sweepResults(store: Store, name?: string): Promise<SweepResults> {
  const sweep = await store.sweep(name);
  if (!sweep) throw await noSweepError(store, name);
  const experiment = JSON.parse(sweep.spec) as Experiment;
  const jobs = new Map((await store.jobs(sweep.id)).map((j) => [j.key, j]));
  const byJob = new Map<number, EvalRow[]>();
  for (const e of await store.evalsForSweep(sweep.id)) {
    byJob.set(e.job, [...(byJob.get(e.job) ?? []), e]);
  }
  const results = (await store.configs(sweep.id)).filter((c) => !c.removed).map((c) => {
    const job = jobs.get(c.evalKey);
    const metrics: Record<string, number> = {};
    const spreads: Record<string, number> = {};
    let nfe: number | undefined;
    for (const e of job ? byJob.get(job.id) ?? [] : []) {
      metrics[e.metric] = e.value;
      spreads[e.metric] = e.spread;
      nfe ??= recordedNfe(e.extra);
    }
    // `nfe`, recorded by the evaluation, joins the parameters so that it can be an axis.
    const params = { ...JSON.parse(c.params), ...(nfe === undefined ? {} : { nfe }) };
    return {
      sweep: sweep.name,
      params,
      metrics,
      spreads,
      state: job?.state ?? "missing",
      job: job?.id,
    };
  });
  const varying = varyingParams(
    Object.keys(experiment.parameters ?? {}),
    results.map((r) => r.params),
  );
  return { name: sweep.name, experiment, results, varying };
}

/** Metric names in the order the configurations first recorded them. */
export function metricNames(results: Scored[]): string[] {
  return [...new Set(results.flatMap((r) => Object.keys(r.metrics)))];
}

/** The metric compared and its direction. */
export interface MetricChoice {
  /** Metric name ("" when nothing names one and nothing was recorded yet). */
  name: string;
  /** Whether a smaller value is better. */
  minimize: boolean;
}

/**
 * The metric to compare: `requested`, else the experiment's `metric:`, else
 * the first metric any configuration recorded. A requested metric that the
 * sweep's evaluations did not record is an error naming the sweep and the
 * metrics it has. The goal is the experiment's (minimize when it has none).
 */
export function chooseMetric(
  sweep: { name: string; experiment: Experiment; results: Scored[] },
  requested?: string,
): MetricChoice {
  const recorded = metricNames(sweep.results);
  const minimize = sweep.experiment.metric?.goal !== "maximize";
  if (requested !== undefined && recorded.length > 0 && !recorded.includes(requested)) {
    throw new Error(
      `--metric ${requested}: sweep ${sweep.name} recorded no such metric${
        didYouMean(requested, recorded)
      } (recorded: ${recorded.join(", ")})`,
    );
  }
  return { name: requested ?? (sweep.experiment.metric?.name || recorded[0] || ""), minimize };
}

/**
 * One metric for several sweeps compared together: chosen on the first
 * (as {@link chooseMetric}); every other sweep that recorded metrics must
 * have it and the same goal, else the error names the sweep.
 */
export function chooseSharedMetric(sweeps: SweepResults[], requested?: string): MetricChoice {
  const choice = chooseMetric(sweeps[0], requested);
  for (const s of sweeps.slice(1)) {
    const recorded = metricNames(s.results);
    if (recorded.length > 0 && !recorded.includes(choice.name)) {
      throw new Error(
        `sweep ${s.name} recorded no ${choice.name} (it has ${recorded.join(", ")}), ` +
          `which sweep ${sweeps[0].name} is compared by: name one both have with --metric`,
      );
    }
    if (
      s.experiment.metric?.name && (s.experiment.metric.goal !== "maximize") !== choice.minimize
    ) {
      throw new Error(
        `sweeps ${sweeps[0].name} and ${s.name} disagree on whether ${choice.name} is better ` +
          `larger or smaller (metric.goal in their experiment files)`,
      );
    }
  }
  return choice;
}

/** The default compare axes: schedule × sample_steps when they vary, else the first two varying. */
export function defaultAxes(varying: string[]): [string | undefined, string | undefined] {
  const rows = varying.includes("schedule") ? "schedule" : varying[0];
  const cols = varying.includes("sample_steps") && rows !== "sample_steps"
    ? "sample_steps"
    : varying.find((k) => k !== rows);
  return [rows, cols];
}

/** A parameter value as tables and figures show it: strings bare, anything else as JSON. */
export function showValue(v: unknown): string {
  if (v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Distinct values as shown: numbers ascending, otherwise in order of appearance. */
export function distinctValues(values: unknown[]): string[] {
  const seen = [...new Set(values.map(showValue))];
  const numeric = seen.every((v) => v !== "" && Number.isFinite(Number(v)));
  return numeric ? seen.sort((a, b) => Number(a) - Number(b)) : seen;
}

/** The metric in a grid of two parameters. */
export interface CompareGrid {
  /** Row parameter. */
  rowParam: string;
  /** Column parameter. */
  colParam: string;
  /** Row values as shown. */
  rowValues: string[];
  /** Column values as shown. */
  colValues: string[];
  /** cells[r][c]: the best metric over the other parameters, undefined when none. */
  cells: (number | undefined)[][];
  /** members[r][c]: the index (into the items given) of the configuration that scored cells[r][c]. */
  members: (number | undefined)[][];
  /** The best cell, [row, column] (the first of equals). */
  best?: [number, number];
  /** Smallest metric in the grid. */
  min: number;
  /** Largest metric in the grid. */
  max: number;
}

/**
 * The metric of each (row value, column value) pair, the best over the
 * other parameters when several configurations share a cell (the first of
 * equals). Configurations without a finite value of `metric` are left out.
 * `values` fixes the rows' and columns' values (to lay several sweeps' grids
 * side by side); by default they are the items' distinct values.
 */
export function compareGrid(
  items: Scored[],
  rowParam: string,
  colParam: string,
  metric: string,
  minimize: boolean,
  values: { rows?: string[]; cols?: string[] } = {},
): CompareGrid {
  const rowValues = values.rows ?? distinctValues(items.map((r) => r.params[rowParam]));
  const colValues = values.cols ?? distinctValues(items.map((r) => r.params[colParam]));
  const cells: (number | undefined)[][] = rowValues.map(() => colValues.map(() => undefined));
  const members: (number | undefined)[][] = rowValues.map(() => colValues.map(() => undefined));
  const better = (a: number, b: number) => (minimize ? a < b : a > b);
  items.forEach((r, k) => {
    const v = r.metrics[metric];
    if (v === undefined || !Number.isFinite(v)) return;
    const i = rowValues.indexOf(showValue(r.params[rowParam]));
    const j = colValues.indexOf(showValue(r.params[colParam]));
    if (i < 0 || j < 0) return;
    const cur = cells[i][j];
    if (cur === undefined || better(v, cur)) {
      cells[i][j] = v;
      members[i][j] = k;
    }
  });
  let best: [number, number] | undefined;
  let min = Infinity;
  let max = -Infinity;
  cells.forEach((row, i) =>
    row.forEach((v, j) => {
      if (v === undefined) return;
      min = Math.min(min, v);
      max = Math.max(max, v);
      if (!best || better(v, cells[best[0]][best[1]]!)) best = [i, j];
    })
  );
  return { rowParam, colParam, rowValues, colValues, cells, members, best, min, max };
}

/**
 * Checks that `name` (given as `option`) is a parameter of the sweep,
 * naming the sweep, the nearest parameter, the varying ones and all.
 */
export function checkParam(sweep: SweepResults, option: string, name: string): void {
  const params = [...new Set(sweep.results.flatMap((r) => Object.keys(r.params)))];
  if (params.includes(name) || sweep.results.length === 0) return;
  throw new Error(
    `${option} ${name}: not a parameter of sweep ${sweep.name}${didYouMean(name, params)} ` +
      `(varying: ${sweep.varying.join(", ") || "none"}; all: ${params.join(", ")})`,
  );
}

/** One term of a run filter: the parameter and the value it must show. */
export interface FilterTerm {
  /** Parameter name. */
  key: string;
  /** The value as shown ({@link showValue}). */
  value: string;
}

/**
 * Parses a run filter, `key=value` terms separated by spaces
 * (`schedule=cosine sampler=ddim`); a run matches when it matches every
 * key, and any of the values given for one key (`sampler=ddim
 * sampler=heun`). A term that is not `key=value`, or whose key is not one
 * of `params`, is an error naming it and the nearest parameter.
 */
export function parseFilter(text: string, params: string[]): FilterTerm[] {
  const terms: FilterTerm[] = [];
  for (const word of text.trim().split(/\s+/).filter((w) => w !== "")) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw new Error(`"${word}" is not key=value (schedule=cosine)`);
    const key = word.slice(0, eq);
    if (!params.includes(key)) {
      throw new Error(
        `${key} is not a parameter${didYouMean(key, params)} in "${word}" (${params.join(", ")})`,
      );
    }
    terms.push({ key, value: word.slice(eq + 1) });
  }
  return terms;
}

/** Whether a configuration's parameters match every key of a filter (any of its values). */
export function matchesFilter(params: RunConfig, terms: FilterTerm[]): boolean {
  const keys = new Set(terms.map((t) => t.key));
  return [...keys].every((k) => terms.some((t) => t.key === k && showValue(params[k]) === t.value));
}
