/**
 * `deno task compare`: the stored sweeps read back as text. A sweep's metric
 * in a grid of two parameters (several sweeps side by side), every
 * configuration as CSV, or the list of sweeps in the store (`--list`).
 */
import { stringify } from "csv-stringify/sync";
import { DEFAULT_STORE, openStore, type Store } from "../store/store.ts";
import { plotSweeps } from "./plot.ts";
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
