/**
 * The dashboard's screens as pure functions: {@link renderFrame} lays out a
 * frame (header, the overview, run detail, compare or help body, a message
 * line and a footer of keys) as exactly `rows - 1` lines of `cols`
 * characters, and {@link handleKey} is the key map, returning the next UI
 * state and the action a key asks for. The Ink app only draws these lines
 * and carries out the actions, so both are tested without a terminal.
 */
import {
  brailleChart,
  duration,
  fit,
  fitLine,
  hbar,
  type Line,
  plain,
  progressBar,
  scaleColour,
  SERIES_COLOURS,
  short,
  type Span,
  width,
  withAxes,
  wrap,
} from "./charts.ts";
import {
  bestRow,
  cancelTarget,
  evalSeries,
  type MetricPoint,
  restartTarget,
  type RunRow,
  type Snapshot,
  type SortOrder,
  sortRows,
} from "./model.ts";
import {
  compareGrid,
  defaultAxes,
  distinctValues,
  type FilterTerm,
  matchesFilter,
  parseFilter,
  showValue,
} from "../sweep/results.ts";
import { drawPreview, type Preview } from "./samples.ts";
import type { MachineStats } from "./machine.ts";
import type { TrainJob } from "../sweep/planner.ts";
import type { JobRow } from "../store/store.ts";

/** The screens. */
export type View = "overview" | "detail" | "compare" | "machine";

/** Tab order of the screens. */
export const VIEWS: View[] = ["overview", "detail", "compare", "machine"];

/** What the user has chosen. */
export interface UiState {
  /** The screen shown. @default "overview" */
  view: View;
  /** The help overlay is open. @default false */
  help: boolean;
  /** Index of the selected row in the sorted table. @default 0 */
  selected: number;
  /** First table row on screen. @default 0 */
  scroll: number;
  /** Row order. @default "plan" */
  sort: SortOrder;
  /** Loss chart on a log scale. @default true */
  log: boolean;
  /** Compare rows parameter. @default schedule, else the first varying */
  rowParam?: string;
  /** Compare columns parameter. @default sample_steps, else the next varying */
  colParam?: string;
  /** A pending cancel awaiting y. */
  confirm?: { jobId: number; text: string };
  /** The run filter applied (`key=value` terms; see {@link parseFilter}). @default none */
  filter?: string;
  /** The filter being typed after `/`, until Enter applies it or Esc drops it. */
  editing?: string;
  /** Training jobs pinned with `p`, whose losses the run detail overlays. @default none */
  pinned?: number[];
  /** The run detail shows its job's output (`o`) where it shows samples. @default false */
  output?: boolean;
  /** The last message (a result, or why a key did nothing). */
  message?: string;
}

/** The initial UI state. */
export function initialUi(): UiState {
  return { view: "overview", help: false, selected: 0, scroll: 0, sort: "plan", log: true };
}

/** What a key asks the app to do besides changing the UI state. */
export type Action =
  | { type: "quit" }
  | { type: "cancel"; jobId: number }
  | { type: "restart"; jobId: number };

/** A key: a printable character, or up, down, pageup, pagedown, home, end, enter, escape, tab, backspace. */
export type Key = string;

/** Every parameter a filter may name: the configurations' keys, and nfe where recorded. */
function filterParams(snap: Snapshot): string[] {
  const keys = new Set(snap.rows.flatMap((r) => Object.keys(r.params)));
  if (snap.rows.some((r) => r.nfe !== undefined)) keys.add("nfe");
  return [...keys];
}

/** The filter's terms (none when there is no filter or it no longer parses). */
function filterTerms(snap: Snapshot, ui: UiState): FilterTerm[] {
  if (!ui.filter) return [];
  try {
    return parseFilter(ui.filter, filterParams(snap));
  } catch {
    return [];
  }
}

/** The rows the filter keeps, in plan order. */
export function filteredRows(snap: Snapshot, ui: UiState): RunRow[] {
  const terms = filterTerms(snap, ui);
  if (terms.length === 0) return snap.rows;
  return snap.rows.filter((r) =>
    matchesFilter(r.nfe === undefined ? r.params : { ...r.params, nfe: r.nfe }, terms)
  );
}

/** Rows in the order shown (those the filter keeps). */
export function shownRows(snap: Snapshot, ui: UiState): RunRow[] {
  return sortRows(filteredRows(snap, ui), ui.sort, snap.minimize);
}

/** Keys while a filter is typed: characters, backspace, Enter to apply, Esc to drop. */
function editFilter(
  ui: UiState,
  next: UiState,
  key: Key,
  snap: Snapshot | undefined,
): { ui: UiState } {
  const text = ui.editing ?? "";
  if (key === "escape") {
    next.editing = undefined;
    next.message = ui.filter ? `filter kept: ${ui.filter}` : "no filter";
  } else if (key === "backspace") next.editing = text.slice(0, -1);
  else if (key === "enter") {
    if (!snap) return { ui: next };
    try {
      const terms = parseFilter(text, filterParams(snap));
      next.editing = undefined;
      next.filter = terms.length ? text.trim() : undefined;
      next.selected = 0;
      next.scroll = 0;
      const kept = filteredRows(snap, next).length;
      next.message = next.filter
        ? `filter ${next.filter}: ${kept} of ${snap.rows.length} runs`
        : `no filter: all ${snap.rows.length} runs`;
    } catch (e) {
      next.message = (e as Error).message;
    }
  } else if (key.length === 1) next.editing = text + key;
  return { ui: next };
}

/** The next state for a key (and an action, when the key asks for one). */
export function handleKey(
  ui: UiState,
  key: Key,
  snap: Snapshot | undefined,
  pageSize = 10,
): { ui: UiState; action?: Action } {
  const next: UiState = { ...ui, message: undefined };
  if (ui.confirm) {
    next.confirm = undefined;
    if (key === "y" || key === "Y" || key === "enter") {
      return { ui: next, action: { type: "cancel", jobId: ui.confirm.jobId } };
    }
    next.message = "not cancelled";
    return { ui: next };
  }
  if (ui.editing !== undefined) return editFilter(ui, next, key, snap);
  if (key === "q") return { ui: next, action: { type: "quit" } };
  if (key === "?") return { ui: { ...next, help: !ui.help } };
  if (ui.help) {
    if (key === "escape") next.help = false;
    return { ui: next };
  }
  if (key === "tab") {
    next.view = VIEWS[(VIEWS.indexOf(ui.view) + 1) % VIEWS.length];
    return { ui: next };
  }
  if (key === "escape") {
    next.view = "overview";
    return { ui: next };
  }
  if (key === "/") {
    next.editing = ui.filter ?? "";
    return { ui: next };
  }
  if (!snap) return { ui: next };
  const rows = shownRows(snap, ui);
  const move = (d: number) => {
    next.selected = Math.max(0, Math.min(rows.length - 1, ui.selected + d));
  };
  const row = rows[Math.min(ui.selected, rows.length - 1)];
  if (ui.view === "compare") {
    const cycle = (cur: string | undefined, other: string | undefined) => {
      const options = snap.varying.filter((k) => k !== other);
      return options[(options.indexOf(cur ?? "") + 1) % options.length];
    };
    const [r, c] = axesOf(snap, ui);
    if (key === "x") next.rowParam = cycle(r, c);
    else if (key === "y") next.colParam = cycle(c, r);
    if ((key === "x" || key === "y") && snap.varying.length < 3) {
      next.message = "only two parameters vary: nothing else to put on an axis";
    }
    return { ui: next };
  }
  if (key === "up" || key === "k") move(-1);
  else if (key === "down" || key === "j") move(1);
  else if (key === "pageup") move(-pageSize);
  else if (key === "pagedown") move(pageSize);
  else if (key === "home" || key === "g") next.selected = 0;
  else if (key === "end" || key === "G") next.selected = Math.max(0, rows.length - 1);
  else if (key === "enter" && row) next.view = "detail";
  else if (key === "s" && ui.view === "overview") {
    next.sort = ui.sort === "plan" ? "metric" : "plan";
    if (row) {
      next.selected = Math.max(0, shownRows(snap, next).indexOf(row));
    }
    next.message = next.sort === "metric"
      ? `sorted by ${snap.metric || "metric"}, best first`
      : "in plan order";
  } else if (key === "l" && ui.view === "detail") next.log = !ui.log;
  else if (key === "o" && ui.view === "detail") next.output = !ui.output;
  else if (key === "p" && row) {
    const id = row.train?.id;
    if (id === undefined) next.message = "p: this configuration has no training job to pin";
    else {
      const pinned = ui.pinned ?? [];
      next.pinned = pinned.includes(id) ? pinned.filter((j) => j !== id) : [...pinned, id];
      next.message = `${pinned.includes(id) ? "unpinned" : "pinned"} training run ${
        runLabel(snap, id)
      } (${next.pinned.length} pinned; the run detail overlays their losses)`;
    }
  } else if (key === "c" && row) {
    const t = cancelTarget(snap, row);
    if (!t.job) next.message = `c: ${t.reason}`;
    else {
      const what = t.job.kind === "train" ? "training job" : "evaluation job";
      const shared = t.job.kind === "train" && t.shared > 1
        ? ` (used by ${t.shared} configurations)`
        : "";
      next.confirm = {
        jobId: t.job.id,
        text: `cancel ${t.job.state} ${what} ${t.job.key}${shared}? y/n`,
      };
    }
  } else if (key === "r" && row) {
    const t = restartTarget(snap, row);
    if (!t.job) next.message = `r: ${t.reason}`;
    else return { ui: next, action: { type: "restart", jobId: t.job.id } };
  }
  return { ui: next };
}

/** The compare axes chosen or defaulted. */
function axesOf(snap: Snapshot, ui: UiState): [string | undefined, string | undefined] {
  const [r, c] = defaultAxes(snap.varying);
  const rows = ui.rowParam && snap.varying.includes(ui.rowParam) ? ui.rowParam : r;
  const cols = ui.colParam && snap.varying.includes(ui.colParam) && ui.colParam !== rows
    ? ui.colParam
    : c === rows
    ? snap.varying.find((k) => k !== rows)
    : c;
  return [rows, cols];
}

/** What a frame needs besides the snapshot and the UI state. */
export interface FrameContext {
  /** Terminal columns. */
  cols: number;
  /** Terminal rows (the frame takes one less, for the cursor line). */
  rows: number;
  /** A training job's logged steps. */
  series: (jobId: number) => MetricPoint[];
  /** This machine's CPU, memory and the running jobs' processes (the machine view). */
  machine?: MachineStats;
  /** The samples of an evaluation job: a preview, or why there is none. */
  preview?: (jobId: number) => Preview | string;
  /** The last lines a job printed (as the store keeps them), or why there are none. */
  output?: (jobId: number) => string[] | string;
  /** Other sweeps whose grids the compare view lays beside this one's. @default none */
  others?: Snapshot[];
  /** A line shown while there is nothing else to say (e.g. where the sweep runs). */
  status?: string;
  /** Shown instead of the body while there is no snapshot. */
  waiting?: string;
  /** The time now (for the header clock). @default Date.now() */
  now?: number;
}

const STATUS_COLOUR: Record<string, number> = {
  training: 39,
  evaluating: 51,
  done: 76,
  failed: 196,
  cancelled: 178,
  cancelling: 178,
  stopped: 178,
};

/**
 * The whole frame: `rows - 1` lines, each exactly `cols` wide, and the
 * table's first row on screen (kept so the selection stays visible; store
 * it in the UI state).
 */
export function renderFrame(
  snap: Snapshot | undefined,
  ui: UiState,
  ctx: FrameContext,
): { lines: Line[]; scroll: number } {
  const cols = Math.max(20, ctx.cols);
  const height = Math.max(6, ctx.rows - 1);
  const bodyH = height - 5;
  const header = snap ? headerLines(snap) : [[{ text: "sweep dashboard", bold: true }], []];
  let body: Line[];
  let scroll = ui.scroll;
  if (!snap) body = [[{ text: ctx.waiting ?? "waiting for the sweep…" }]];
  else if (ui.help) body = helpLines();
  else if (ui.view === "overview") ({ lines: body, scroll } = overviewLines(snap, ui, cols, bodyH));
  else if (ui.view === "detail") body = detailLines(snap, ui, ctx, cols, bodyH);
  else if (ui.view === "machine") body = machineLines(snap, ctx.machine, cols);
  else body = compareLines(snap, ui, cols, bodyH, ctx.others ?? []);
  const tabs: Line = [{ text: " " }];
  for (const v of VIEWS) {
    const name = v === "overview"
      ? "Overview"
      : v === "detail"
      ? "Run detail"
      : v === "compare"
      ? "Compare"
      : "Machine";
    tabs.push(
      v === ui.view && !ui.help ? { text: ` ${name} `, inverse: true } : { text: ` ${name} ` },
    );
  }
  if (ui.help) tabs.push({ text: " Help ", inverse: true });
  if (snap && ui.view === "overview") {
    tabs.push({ text: `   sort: ${ui.sort === "plan" ? "plan order" : snap.metric}`, dim: true });
  }
  if (snap && ui.filter && ui.view !== "detail") {
    tabs.push({
      text: `   filter ${filteredRows(snap, ui).length}/${snap.rows.length}: ${ui.filter}`,
      fg: 214,
    });
  }
  const message: Line = ui.editing !== undefined
    ? [
      ui.message
        ? { text: ui.message, fg: 214 }
        : { text: "filter: key=value terms, e.g. schedule=cosine sampler=ddim", dim: true },
    ]
    : ui.confirm
    ? [{ text: ui.confirm.text, fg: 214, bold: true }]
    : ui.message
    ? [{ text: ui.message, fg: 214 }]
    : [{ text: ctx.status ?? "", dim: true }];
  const lines = [
    ...header,
    tabs,
    ...body.slice(0, bodyH),
    ...Array.from({ length: Math.max(0, bodyH - body.length) }, () => []),
    message,
    footerLine(ui, cols),
  ];
  return { lines: lines.map((l) => fitLine(l, cols)), scroll };
}

function headerLines(s: Snapshot): Line[] {
  const e = s.experiment;
  const c = s.counts;
  const conc = e.concurrency ? `concurrency ${e.concurrency}` : "concurrency = cores";
  const statusColour = s.sweep.status === "running"
    ? 39
    : s.sweep.status === "done"
    ? 76
    : s.sweep.status === "failed"
    ? 196
    : undefined;
  return [
    [
      { text: " " },
      { text: s.sweep.name, bold: true },
      { text: "  " },
      { text: s.sweep.status, fg: statusColour },
      { text: `  ${e.model} on ${e.data}  backend ${s.backend}  ${conc}`, dim: true },
    ],
    [
      { text: " " },
      { text: `${c.done} done`, fg: 76 },
      { text: " · " },
      { text: `${c.running} running`, fg: 39 },
      { text: ` · ${c.queued} queued · ` },
      { text: `${c.failed} failed`, fg: c.failed ? 196 : undefined },
      ...(c.cancelled ? [{ text: ` · ${c.cancelled} cancelled` }] : []),
      { text: ` of ${c.total} jobs   elapsed ${duration(s.elapsedMs)}` },
      {
        text: s.live
          ? `  ETA ${s.etaPartial ? "≥" : ""}${
            s.etaMs === 0 ? "—" : s.etaMs === undefined ? "?" : duration(s.etaMs)
          }`
          : "",
      },
    ],
  ];
}

/** A table column. */
interface Column {
  title: string;
  width: number;
  align: "left" | "right";
  cell: (r: RunRow) => Line;
}

function overviewColumns(s: Snapshot, rows: RunRow[], cols: number): Column[] {
  const txt = (t: string, extra: Partial<Span> = {}): Line => [{ text: t, ...extra }];
  const valueWidth = (k: string) => Math.max(3, ...rows.map((r) => showValue(r.params[k]).length));
  const params: Column[] = s.varying.map((k) => {
    return {
      title: k,
      width: Math.max(valueWidth(k), k.length),
      align: "left",
      cell: (r) => txt(showValue(r.params[k])),
    };
  });
  const best = s.best;
  const fixed: (Column & { drop?: number })[] = [
    { title: "#", width: 3, align: "right", cell: (r) => txt(String(r.idx)) },
    ...params,
    {
      title: "status",
      width: 10,
      align: "left",
      cell: (r) => txt(r.status, { fg: STATUS_COLOUR[r.status], dim: r.status === "queued" }),
    },
    {
      title: "progress",
      width: 13,
      align: "left",
      cell: (r) => [...progressBar(r.progress, 8), { text: ` ${Math.round(r.progress * 100)}%` }],
    },
    {
      title: "steps/s",
      width: 7,
      align: "right",
      drop: 2,
      cell: (r) => txt(r.stepsPerSec === undefined ? "" : short(r.stepsPerSec, 7)),
    },
    {
      title: "ETA",
      width: 6,
      align: "right",
      drop: 1,
      cell: (r) => txt(r.etaMs === undefined ? "" : duration(r.etaMs)),
    },
    { title: "loss", width: 6, align: "right", cell: (r) => txt(short(r.loss, 6)) },
    {
      title: s.metric || "metric",
      width: 9,
      align: "right",
      cell: (r) =>
        r === best
          ? txt(`★${short(r.metric, 8)}`, { fg: 76, bold: true })
          : txt(short(r.metric, 8)),
    },
  ];
  const total = (cs: Column[]) => cs.reduce((a, c) => a + c.width + 1, 0) - 1;
  let cs = fixed;
  // Narrow terminals: drop throughput, the percentage, ETA, then shorten parameter titles.
  const progress = cs.find((c) => c.title === "progress")!;
  const steps: (() => void)[] = [
    () => cs = cs.filter((c) => c.drop !== 2),
    () => {
      progress.width = 8;
      progress.cell = (r) => progressBar(r.progress, 8);
    },
    () => cs = cs.filter((c) => c.drop !== 1),
    ...params.map((p) => ({ p, min: valueWidth(p.title) }))
      .sort((a, b) => (b.p.width - b.min) - (a.p.width - a.min))
      .map(({ p, min }) => () => {
        p.width = Math.max(min, p.width - (total(cs) - cols));
      }),
  ];
  for (const step of steps) {
    if (total(cs) <= cols) break;
    step();
  }
  return cs;
}

function overviewLines(
  s: Snapshot,
  ui: UiState,
  cols: number,
  bodyH: number,
): { lines: Line[]; scroll: number } {
  const rows = shownRows(s, ui);
  const columns = overviewColumns(s, rows, cols - 1);
  const head: Line = [{ text: " " }];
  for (const c of columns) head.push({ text: fit(c.title, c.width, c.align) + " ", bold: true });
  const visible = Math.max(1, bodyH - 2);
  const sel = Math.min(ui.selected, rows.length - 1);
  let scroll = Math.min(ui.scroll, Math.max(0, rows.length - visible));
  if (sel < scroll) scroll = sel;
  if (sel >= scroll + visible) scroll = sel - visible + 1;
  const lines: Line[] = [head];
  rows.slice(scroll, scroll + visible).forEach((r, i) => {
    const line: Line = [];
    for (const c of columns) {
      const cell = c.cell(r);
      const pad = c.align === "right" ? Math.max(0, c.width - width(plain(cell))) : 0;
      if (pad) line.push({ text: " ".repeat(pad) });
      line.push(...fitLine(cell, c.width - pad), { text: " " });
    }
    const selected = scroll + i === sel;
    const pinned = r.train !== undefined && (ui.pinned ?? []).includes(r.train.id);
    line.unshift(
      selected
        ? { text: "▸", bold: true }
        : pinned
        ? { text: "●", fg: pinColour(r.train!.id) }
        : { text: " " },
    );
    lines.push(selected ? line.map((sp) => ({ ...sp, inverse: true })) : line);
  });
  while (lines.length < bodyH - 1) lines.push([]);
  // With a filter, the best of the runs it keeps.
  const b = ui.filter ? bestRow(rows, s.minimize) : s.best;
  const more = rows.length > visible
    ? `${scroll + 1}–${Math.min(rows.length, scroll + visible)}/${rows.length}  `
    : "";
  lines.push([
    { text: more, dim: true },
    b
      ? {
        text: `best ${s.metric} ${short(b.metric, 8)}: #${b.idx} ${
          s.varying.map((k) => `${k}=${showValue(b.params[k])}`).join(" ")
        }`,
        fg: 76,
      }
      : { text: `no ${s.metric || "metric"} yet`, dim: true },
  ]);
  return { lines, scroll };
}

/** A pinned run's colour: fixed by its training job, so it stays when others are pinned. */
export function pinColour(jobId: number): number {
  return SERIES_COLOURS[jobId % SERIES_COLOURS.length];
}

/** A training run by the training parameters that vary, e.g. "schedule=cosine" (else its key). */
function runLabel(s: Snapshot, jobId: number): string {
  const spec = s.jobs.get(jobId)?.spec as TrainJob | undefined;
  const trains = [...s.jobs.values()].filter((j) => j.row.kind === "train")
    .map((j) => (j.spec as TrainJob).config);
  const differ = s.varying.filter((k) =>
    new Set(trains.map((c) => JSON.stringify(c?.[k]))).size > 1
  );
  if (!spec || differ.length === 0) return s.jobs.get(jobId)?.row.key ?? `job ${jobId}`;
  return differ.map((k) => `${k}=${showValue(spec.config[k])}`).join(" ");
}

function describeRow(s: Snapshot, r: RunRow): string {
  const p = s.varying.map((k) => `${k}=${showValue(r.params[k])}`).join(" ");
  return `#${r.idx} ${p || "(the only configuration)"}`;
}

function detailLines(
  s: Snapshot,
  ui: UiState,
  ctx: FrameContext,
  cols: number,
  bodyH: number,
): Line[] {
  const rows = shownRows(s, ui);
  const r = rows[Math.min(ui.selected, rows.length - 1)];
  if (!r) return [[{ text: "no configuration" }]];
  const jobText = (label: string, j: RunRow["train"]) =>
    j
      ? `${label} ${j.state}${j.state === "running" ? ` ${Math.round(j.progress * 100)}%` : ""}`
      : `${label} —`;
  const err = (r.train?.state === "failed" ? r.train.error : undefined) ??
    (r.eval?.state === "failed" ? r.eval.error : undefined);
  const title: Line[] = [
    [{ text: describeRow(s, r), bold: true }],
    [
      { text: `${jobText("train", r.train)} · ${jobText("eval", r.eval)}`, dim: true },
      { text: err ? `: ${err}` : "", fg: 196 },
    ],
  ];
  const h = bodyH - title.length;
  const leftW = Math.floor((cols - 1) / 2);
  const rightW = cols - leftW - 1;
  const pins = ui.pinned ?? [];
  const left = pins.length
    ? pinnedPanel(s, r, pins, ui.log, ctx, leftW, h)
    : lossPanel(s, r, ui.log, ctx, leftW, h);
  const right = evalPanel(s, r, ui, ctx, rightW, h);
  const out = [...title];
  for (let i = 0; i < h; i++) {
    out.push([...fitLine(left[i] ?? [], leftW), { text: "│", dim: true }, ...(right[i] ?? [])]);
  }
  return out;
}

/**
 * The training loss of the selected run and every pinned one on one chart,
 * each in its training job's colour, with a legend (the selected run's
 * marked ▸).
 */
function pinnedPanel(
  s: Snapshot,
  r: RunRow,
  pins: number[],
  log: boolean,
  ctx: FrameContext,
  w: number,
  h: number,
): Line[] {
  const ids = [...new Set([...(r.train ? [r.train.id] : []), ...pins])];
  const legendH = Math.min(ids.length, Math.max(1, Math.floor(h / 3)));
  const chartH = Math.max(2, h - 3 - legendH);
  const series = ids.map((id) => ({
    label: runLabel(s, id),
    points: ctx.series(id).map((p) => [p.step, p.loss] as [number, number]),
    colour: pinColour(id),
  }));
  const chart = withAxes(brailleChart(series, { width: w - 7, height: chartH, log }), {
    xLabel: "step",
  });
  const lines: Line[] = [[
    { text: `training loss, pinned runs${log ? " (log)" : ""}`, bold: true },
  ], ...chart];
  ids.slice(0, legendH).forEach((id, i) => {
    const last = series[i].points.at(-1);
    lines.push([
      { text: id === r.train?.id ? "▸" : " ", bold: true },
      { text: "━ ", fg: pinColour(id) },
      { text: fit(series[i].label, Math.max(1, w - 12)) },
      { text: fit(last ? short(last[1], 8) : "—", 9, "right"), dim: true },
    ]);
  });
  if (ids.length > legendH) lines.push([{ text: `… ${ids.length - legendH} more`, dim: true }]);
  return lines;
}

function lossPanel(
  s: Snapshot,
  r: RunRow,
  log: boolean,
  ctx: FrameContext,
  w: number,
  h: number,
): Line[] {
  const pts = r.train ? ctx.series(r.train.id) : [];
  const last = pts.at(-1);
  const nb = Math.max(0, ...pts.map((p) => p.bands.length));
  const barLines = Math.min(nb, Math.max(1, Math.floor(h / 3)));
  const chartH = Math.max(2, h - 3 - barLines - 1);
  const series = Array.from({ length: nb }, (_, b) => ({
    label: `band ${b}`,
    points: pts.map((p) => [p.step, p.bands[b] ?? NaN] as [number, number]),
  }));
  if (nb === 0) series.push({ label: "loss", points: pts.map((p) => [p.step, p.loss]) });
  const chart = withAxes(brailleChart(series, { width: w - 7, height: chartH, log }), {
    xLabel: "step",
  });
  const lines: Line[] = [[
    { text: `loss per timestep band${log ? " (log)" : ""}`, bold: true },
    { text: pts.length ? "" : "  no steps logged yet", dim: true },
  ]];
  lines.push(...chart);
  const latest = last?.bands ?? [];
  const max = Math.max(0, ...latest.map((v) => v ?? 0));
  const labelW = 11;
  const valueW = 7;
  const shownBands = latest.slice(0, barLines);
  shownBands.forEach((v, b) => {
    const lo = (b / nb).toFixed(2).replace(/^0/, "");
    const hi = ((b + 1) / nb).toFixed(2).replace(/^0/, "");
    lines.push([
      { text: fit(`t ${lo}–${hi}`, labelW), dim: true },
      { text: hbar(v ?? 0, max, Math.max(1, w - labelW - valueW - 1)), fg: SERIES_COLOURS[b % 10] },
      { text: " " + fit(short(v ?? NaN, valueW - 1), valueW - 1, "right") },
    ]);
  });
  if (latest.length > barLines) {
    lines.push([{ text: `… ${latest.length - barLines} more bands`, dim: true }]);
  }
  const total = Number(
    (s.jobs.get(r.train?.id ?? -1)?.spec as { config?: { steps?: number } })?.config?.steps,
  );
  lines.push([{
    text: last
      ? `step ${last.step}${Number.isFinite(total) ? `/${total}` : ""} · lr ${short(last.lr)} · ${
        short(last.stepsPerSec)
      } steps/s`
      : "",
    dim: true,
  }]);
  return lines;
}

/**
 * The job whose output the run detail shows in place of the samples: a
 * failed one (its training, else its evaluation) always, else with `o` the
 * job the row waits on (the one that ran last).
 */
function outputJob(r: RunRow, asked: boolean): JobRow | undefined {
  if (r.train?.state === "failed") return asked ? undefined : r.train;
  if (r.eval?.state === "failed") return asked ? undefined : r.eval;
  if (!asked) return undefined;
  return r.stage === "eval" && r.eval?.attempts ? r.eval : r.train;
}

function evalPanel(
  s: Snapshot,
  r: RunRow,
  ui: UiState,
  ctx: FrameContext,
  w: number,
  h: number,
): Line[] {
  const { x, series } = r.train ? evalSeries(s, r.train.key) : { x: "steps", series: [] };
  const chartH = Math.max(3, Math.floor(h / 2) - 3);
  const lines: Line[] = [[
    {
      text: ` ${s.metric || "metric"} vs ${x === "nfe" ? "NFE" : "sampling steps"}`,
      bold: true,
    },
    { text: series.length ? "" : "  no evaluation yet", dim: true },
  ]];
  const chart = withAxes(
    brailleChart(series, { width: w - 8, height: chartH, log: false }),
    { xLabel: x === "nfe" ? "NFE" : "steps" },
  );
  lines.push(...chart.map((l) => [{ text: " " }, ...l]));
  let legend: Line = [{ text: " " }];
  series.forEach((sr, i) => {
    const item = [{ text: "━ ", fg: SERIES_COLOURS[i % 10] }, { text: `${sr.label}  ` }];
    if (width(plain(legend)) + width(plain(item)) > w && legend.length > 1) {
      lines.push(legend);
      legend = [{ text: " " }];
    }
    legend.push(...item);
  });
  lines.push(legend);
  const previewH = h - lines.length - 1;
  const shown = outputJob(r, ui.output ?? false);
  if (shown) {
    lines.push([
      { text: ` output of ${shown.key}`, bold: true },
      { text: ` (attempt ${shown.attempts}, ${shown.state})`, dim: true },
    ]);
    if (previewH <= 0) return lines;
    const out = ctx.output ? ctx.output(shown.id) : "no output";
    if (typeof out === "string") lines.push([{ text: ` ${out}`, dim: true }]);
    else {
      // Wrapped, not cut: the end of an error line is often what says why.
      const wrapped = out.flatMap((l) => wrap(l, w - 1));
      for (const l of wrapped.slice(-previewH)) lines.push([{ text: ` ${l}` }]);
    }
    return lines;
  }
  const ev = r.eval;
  const label = ev ? `samples of eval ${ev.key}` : "samples";
  lines.push([{ text: ` ${label}`, bold: true }, { text: "  o: output", dim: true }]);
  if (previewH <= 0) return lines;
  const p = ev && ctx.preview ? ctx.preview(ev.id) : "no evaluation job";
  if (typeof p === "string") lines.push([{ text: ` ${p}`, dim: true }]);
  else lines.push(...drawPreview(p, w - 2, previewH).map((l) => [{ text: " " }, ...l]));
  return lines;
}

/**
 * The compare view: the metric in a grid of two parameters, the best over
 * the others in each cell, colour-scaled. With other sweeps, their grids
 * follow on the same columns (rows labelled by sweep), on one colour scale,
 * each sweep's best starred; a sweep compared by another metric or goal is
 * named and left out.
 */
function compareLines(
  s: Snapshot,
  ui: UiState,
  cols: number,
  bodyH: number,
  others: Snapshot[],
): Line[] {
  const [rp, cp] = axesOf(s, ui);
  if (!rp || !cp) {
    return [[{
      text: `compare needs two parameters that vary; this sweep varies ${
        s.varying.join(", ") || "none"
      }`,
    }]];
  }
  const comparable = others.filter((o) => o.metric === s.metric && o.minimize === s.minimize);
  const sweeps = [s, ...comparable];
  const several = sweeps.length > 1;
  const rowsOf = sweeps.map((sw) => filteredRows(sw, ui));
  const all = rowsOf.flat();
  const values = {
    rows: distinctValues(all.map((r) => r.params[rp])),
    cols: distinctValues(all.map((r) => r.params[cp])),
  };
  const grids = rowsOf.map((rows) => compareGrid(rows, rp, cp, s.metric, s.minimize, values));
  const bestOver = [...new Set(sweeps.flatMap((sw) => sw.varying))].filter((k) =>
    k !== rp && k !== cp
  );
  const lines: Line[] = [[
    { text: `${s.metric} (${s.minimize ? "lower" : "higher"} is better)`, bold: true },
    {
      text: `: ${rp} × ${cp}${
        bestOver.length ? `, best over ${bestOver.join(", ")} per cell` : ""
      }; ★ ${several ? "each sweep's best" : "best"}`,
      dim: true,
    },
  ], []];
  const label = (k: number, rv: string) => several ? `${sweeps[k].sweep.name} ${rv}` : rv;
  const labels = grids.flatMap((g, k) => g.rowValues.map((rv) => label(k, rv)));
  const labelW = Math.min(
    Math.floor(cols / 3),
    Math.max(`${rp} \\ ${cp}`.length, ...labels.map((v) => v.length)) + 1,
  );
  const cellW = Math.max(8, ...values.cols.map((v) => v.length + 1));
  const fits = Math.max(1, Math.floor((cols - labelW) / cellW));
  const colVals = values.cols.slice(0, fits);
  lines.push([
    { text: fit(`${rp} \\ ${cp}`, labelW), bold: true },
    ...colVals.map((c) => ({ text: fit(c, cellW, "right"), bold: true })),
    { text: values.cols.length > fits ? " …" : "", dim: true },
  ]);
  const min = Math.min(...grids.map((g) => g.min));
  const span = Math.max(...grids.map((g) => g.max)) - min;
  const footer = sweeps.length + 2 + (others.length - comparable.length);
  const rowsFit = Math.max(1, bodyH - 4 - footer);
  const table: Line[] = [];
  grids.forEach((g, k) =>
    g.rowValues.forEach((rv, i) => {
      const line: Line = [{ text: fit(label(k, rv), labelW) }];
      colVals.forEach((_, j) => {
        const v = g.cells[i][j];
        if (v === undefined) {
          line.push({ text: fit("—", cellW, "right"), dim: true });
          return;
        }
        const t = span > 0 ? (v - min) / span : 0;
        const isBest = g.best?.[0] === i && g.best?.[1] === j;
        const text = `${isBest ? "★" : ""}${short(v, cellW - 2)}`;
        line.push({ text: " ".repeat(Math.max(1, cellW - 1 - text.length)) });
        line.push({
          text: text + " ",
          fg: scaleColour(s.minimize ? t : 1 - t),
          bold: isBest,
          inverse: isBest,
        });
      });
      table.push(line);
    })
  );
  lines.push(...table.slice(0, rowsFit));
  if (table.length > rowsFit) {
    lines.push([{ text: `… ${table.length - rowsFit} more rows`, dim: true }]);
  }
  lines.push([]);
  grids.forEach((g, k) => {
    const name = several ? ` in ${sweeps[k].sweep.name}` : "";
    if (!g.best) {
      lines.push([{ text: `no ${s.metric}${name} yet`, dim: true }]);
      return;
    }
    const [bi, bj] = g.best;
    const v = g.cells[bi][bj]!;
    const row = rowsOf[k][g.members[bi][bj]!];
    const rest = sweeps[k].varying.filter((p) => p !== rp && p !== cp);
    lines.push([{
      text: `best ${s.metric} ${short(v, 8)}${name}: ${rp}=${g.rowValues[bi]} ${cp}=${
        g.colValues[bj]
      }${
        row && rest.length
          ? ` ${rest.map((p) => `${p}=${showValue(row.params[p])}`).join(" ")}`
          : ""
      }`,
      fg: 76,
    }]);
  });
  for (const o of others.filter((o) => !comparable.includes(o))) {
    lines.push([{
      text: `sweep ${o.sweep.name} is compared by ${o.metric} (${
        o.minimize ? "lower" : "higher"
      } is better), not ${s.metric}: left out`,
      fg: 178,
    }]);
  }
  lines.push([{ text: `colour: green best … red worst; x and y pick the parameters`, dim: true }]);
  return lines;
}

/** Bytes as GB (or MB below one GB). */
function bytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GB` : `${Math.round(n / 2 ** 20)} MB`;
}

/**
 * The machine view: this machine's CPU and memory as bars, its load, and
 * each running job with its backend, the host and device it runs on (from
 * the store) and, when its process runs here, its CPU (in cores) and
 * resident memory.
 */
function machineLines(s: Snapshot, m: MachineStats | undefined, cols: number): Line[] {
  if (!m) return [[{ text: "this machine's /proc cannot be read: no machine panel here" }]];
  const barW = Math.max(10, Math.min(40, cols - 30));
  const cpu = m.cpu;
  const mem = m.memory.used / m.memory.total;
  const lines: Line[] = [
    [
      { text: "this machine", bold: true },
      {
        text: `  ${m.cores} cores · load ${m.load.map((l) => l.toFixed(2)).join(" ")}`,
        dim: true,
      },
    ],
    [
      { text: fit("cpu", 8) },
      ...progressBar(cpu ?? 0, barW, 39),
      { text: cpu === undefined ? "   measuring…" : ` ${(cpu * 100).toFixed(0).padStart(4)}%` },
    ],
    [
      { text: fit("memory", 8) },
      ...progressBar(mem, barW, 76),
      {
        text: ` ${(mem * 100).toFixed(0).padStart(4)}%  ${bytes(m.memory.used)} of ${
          bytes(m.memory.total)
        }`,
      },
    ],
    [],
  ];
  const running = [...s.jobs.values()].map((j) => j.row).filter((j) => j.state === "running");
  lines.push([
    { text: `running jobs (${running.length})`, bold: true },
    {
      text: "  cpu in cores, memory resident; — where the process is not on this machine",
      dim: true,
    },
  ]);
  const keyW = Math.min(30, Math.max(8, ...running.map((j) => j.key.length)));
  lines.push([{
    text: ` ${fit("kind", 6)}${fit("job", keyW + 1)}${fit("backend", 9)}${fit("pid", 9, "right")}${
      fit("cpu", 7, "right")
    }${fit("memory", 9, "right")}`,
    bold: true,
  }]);
  for (const j of running) {
    // A pid is looked up only where the job runs on this machine: another's pids mean nothing here.
    const here = !j.host || j.host === m.host;
    const p = here && j.pid ? m.processes.get(j.pid) : undefined;
    lines.push([
      { text: ` ${fit(j.kind, 6)}${fit(j.key, keyW + 1)}` },
      { text: fit(j.backend ?? "—", 9), fg: 39 },
      { text: fit(j.pid ? String(j.pid) : "—", 9, "right"), dim: true },
      { text: fit(p?.cpu === undefined ? "—" : p.cpu.toFixed(2), 7, "right") },
      { text: fit(p ? bytes(p.rss) : "—", 9, "right") },
    ]);
    lines.push([{
      text: fit(
        `        on ${j.host ?? "an unknown host"}${here ? " (here)" : ""} · ${
          j.device ?? "device not reported yet"
        }`,
        cols,
      ),
      dim: true,
    }]);
  }
  if (running.length === 0) lines.push([{ text: " no job is running", dim: true }]);
  return lines;
}

/** The help overlay's text. */
export function helpLines(): Line[] {
  const keys: [string, string][] = [
    ["↑ ↓  j k", "select a run (PgUp/PgDn, g/G: page, first, last)"],
    ["Enter", "open the selected run: band losses, evaluations, samples"],
    ["Esc", "back to the overview (closes this help)"],
    ["Tab", "next view: overview → run detail → compare → machine (CPU, memory, jobs)"],
    ["s", "sort the runs by the sweep's metric / plan order"],
    ["l", "run detail: log or linear loss scale"],
    ["o", "run detail: the job's last output lines (a failed job's by itself) / its samples"],
    ["p", "pin / unpin the run's training: the run detail overlays the pinned runs' losses"],
    ["x  y", "compare: change the row / column parameter"],
    ["/", "filter the runs (overview, compare): schedule=cosine sampler=ddim; empty: all"],
    ["c", "cancel the run's current job (asks first)"],
    ["r", "restart the run's failed, cancelled or stopped job"],
    ["?", "this help"],
    ["q", "quit the dashboard; a running sweep keeps running (`deno task watch` attaches)"],
  ];
  return [
    [{ text: "Keys", bold: true }],
    [],
    ...keys.map(([k, v]) => [{ text: fit(k, 12), fg: 214 }, { text: v }]),
  ];
}

function footerLine(ui: UiState, cols: number): Line {
  if (ui.editing !== undefined) {
    // The filter being typed, then its keys (cut first when the text is long).
    const line: Line = [
      { text: " /", fg: 214, bold: true },
      { text: ui.editing },
      { text: "▏", fg: 214 },
    ];
    for (const [k, v] of [["⏎", "apply"], ["Esc", "cancel"], ["⌫", "erase"]]) {
      line.push({ text: `  ${k}`, fg: 214, bold: true }, { text: ` ${v}`, dim: true });
    }
    return line;
  }
  const keys: [string, string][] = ui.confirm
    ? [["y", "confirm"], ["other", "keep it running"]]
    : ui.help
    ? [["Esc/?", "close help"], ["q", "quit"]]
    : ui.view === "overview"
    ? [
      ["↑↓jk", "select"],
      ["⏎", "open"],
      ["Tab", "view"],
      ["s", "sort"],
      ["c", "cancel"],
      [
        "r",
        "restart",
      ],
      ["?", "help"],
      ["q", "quit"],
    ]
    : ui.view === "detail"
    ? [
      ["↑↓jk", "run"],
      ["Esc", "back"],
      ["Tab", "view"],
      ["l", "log/lin"],
      ["c", "cancel"],
      [
        "r",
        "restart",
      ],
      ["?", "help"],
      ["q", "quit"],
    ]
    : ui.view === "machine"
    ? [["Tab", "view"], ["Esc", "back"], ["?", "help"], ["q", "quit"]]
    : [["x", "rows"], ["y", "cols"], ["Esc", "back"], ["Tab", "view"], ["?", "help"], [
      "q",
      "quit",
    ]];
  // "o output", "/ filter" and "p pin" join the keys where the line has room for them (the help
  // has them all).
  const optional: [string, string][] = ui.help || ui.confirm ? [] : [
    ...(ui.view === "detail" ? [["o", "output"] as [string, string]] : []),
    ...(ui.view === "overview" || ui.view === "compare"
      ? [["/", "filter"] as [string, string]]
      : []),
    ...(ui.view === "overview" || ui.view === "detail" ? [["p", "pin"] as [string, string]] : []),
  ];
  const wide = (list: [string, string][]) =>
    1 + list.reduce((n, [k, v]) => n + width(k) + v.length + 3, 0) <= cols;
  let shown = keys;
  for (let n = optional.length; n > 0; n--) {
    const withSome = [...keys.slice(0, -2), ...optional.slice(0, n), ...keys.slice(-2)];
    if (wide(withSome)) {
      shown = withSome;
      break;
    }
  }
  const line: Line = [{ text: " " }];
  for (const [k, v] of shown) {
    line.push({ text: k, fg: 214, bold: true }, { text: ` ${v}  `, dim: true });
  }
  return line;
}
