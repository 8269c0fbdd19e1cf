/**
 * Figures of sweep results: the metric against sampling steps or NFE, one
 * line per value of a parameter (sampler, schedule, …), spread as error
 * bars, log axes where the values span a decade, each sweep's best point
 * marked; several sweeps overlaid (dashed by sweep). The data comes from
 * {@link compareGrid} (the best over the other parameters at each point),
 * the figure is a Vega-Lite spec compiled by `vega-lite`, rendered to SVG by
 * `vega` without a browser, and rasterised to PNG by resvg with the Source
 * Sans 3 font shipped in the `source-sans` package (so text looks the same
 * on every machine).
 */
import { createRequire } from "node:module";
import { dirname, extname } from "node:path";
import * as fs from "node:fs";
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { Resvg } from "@resvg/resvg-js";
import _fontPackage from "source-sans/package.json" with { type: "json" };
import {
  checkParam,
  chooseSharedMetric,
  compareGrid,
  type ConfigResult,
  showValue,
  type SweepResults,
} from "./results.ts";

/** The font every figure uses, shipped in the `source-sans` npm package. */
export const FIGURE_FONT = "Source Sans 3";

/** What to plot. */
export interface PlotOptions {
  /** Metric. @default the first sweep's (see {@link chooseSharedMetric}) */
  metric?: string;
  /** One line per value of this parameter. @default see {@link plotAxes} */
  by?: string;
  /** The x axis: `nfe` or `sample_steps` (any numeric parameter). @default see {@link plotAxes} */
  x?: string;
}

/** One point of a figure: the best configuration at one (sweep, series, x). */
export interface PlotPoint {
  /** Its sweep. */
  sweep: string;
  /** Its series: the `by` parameter's value (the metric's name when there is no `by`). */
  series: string;
  /** Its x value. */
  x: number;
  /** The metric. */
  value: number;
  /** The metric's spread (0 when none was recorded). */
  spread: number;
  /** Lower end of the error bar. */
  lo: number;
  /** Upper end of the error bar. */
  hi: number;
  /** Whether it is its sweep's best point. */
  best: boolean;
  /** The configuration's parameters. */
  params: Record<string, unknown>;
}

/** A figure's data and axes, before any drawing. */
export interface FigureData {
  /** The metric. */
  metric: string;
  /** Whether smaller is better. */
  minimize: boolean;
  /** The x parameter. */
  x: string;
  /** The series parameter, if any. */
  by?: string;
  /** The sweeps, in order. */
  sweeps: string[];
  /** The varying parameters each point is the best over. */
  others: string[];
  /** Every point, by sweep, series and x. */
  points: PlotPoint[];
  /** x on a log scale (every x > 0 and they span at least a decade). */
  logX: boolean;
  /** y on a log scale (every value > 0 and they span at least a decade). */
  logY: boolean;
  /** Error bars whose lower end was cut at a tenth of the value (log y only). */
  clipped: number;
}

/**
 * The default axes of a figure: x is `nfe` when every evaluation with the
 * metric recorded it, else `sample_steps`; the series are `sampler` when it
 * varies, else `schedule`, else the first other varying parameter (none when
 * nothing else varies).
 */
export function plotAxes(
  sweeps: SweepResults[],
  metric: string,
  opts: Pick<PlotOptions, "x" | "by"> = {},
): { x: string; by?: string } {
  const scored = sweeps.flatMap((s) =>
    s.results.filter((r) => Number.isFinite(r.metrics[metric] ?? NaN))
  );
  const x = opts.x ??
    (scored.length > 0 && scored.every((r) => r.params.nfe !== undefined) ? "nfe" : "sample_steps");
  const varying = [...new Set(sweeps.flatMap((s) => s.varying))];
  const candidates = varying.filter((k) => k !== x && k !== "sample_steps" && k !== "nfe");
  const by = opts.by ??
    (candidates.includes("sampler")
      ? "sampler"
      : candidates.includes("schedule")
      ? "schedule"
      : candidates[0]);
  return { x, by };
}

/**
 * The points of the metric-against-x figure: for each sweep and each value
 * of `by`, the best configuration at each x (over every other parameter), its
 * spread as the error bar, and each sweep's best point.
 */
export function figureData(sweeps: SweepResults[], opts: PlotOptions = {}): FigureData {
  const { name: metric, minimize } = chooseSharedMetric(sweeps, opts.metric);
  if (!metric) {
    throw new Error(`sweep ${sweeps[0].name} has no metric to plot yet (no evaluation finished)`);
  }
  const { x, by } = plotAxes(sweeps, metric, opts);
  if (by === x) throw new Error(`--by and --x are both ${x}: name two parameters`);
  for (const s of sweeps) {
    checkParam(s, "--x", x);
    if (by) checkParam(s, "--by", by);
  }
  const points: PlotPoint[] = [];
  for (const s of sweeps) {
    // Without a series parameter every configuration is one series, named after the metric.
    const items: ConfigResult[] = by
      ? s.results
      : s.results.map((r) => ({ ...r, params: { ...r.params, [SERIES]: metric } }));
    const grid = compareGrid(items, by ?? SERIES, x, metric, minimize);
    grid.rowValues.forEach((series, i) =>
      grid.colValues.forEach((xv, j) => {
        const k = grid.members[i][j];
        if (k === undefined) return;
        const xNum = Number(xv);
        if (!Number.isFinite(xNum)) {
          throw new Error(
            `--x ${x}: sweep ${s.name} has the value ${xv}, not a number (x must be numeric: nfe, sample_steps, …)`,
          );
        }
        const r = s.results[k];
        const value = grid.cells[i][j]!;
        const spread = Number.isFinite(r.spreads[metric]) ? r.spreads[metric] : 0;
        points.push({
          sweep: s.name,
          series,
          x: xNum,
          value,
          spread,
          lo: value - spread,
          hi: value + spread,
          best: grid.best?.[0] === i && grid.best?.[1] === j,
          params: r.params,
        });
      })
    );
  }
  if (points.length === 0) {
    throw new Error(
      `sweep ${sweeps.map((s) => s.name).join(", ")}: no finished evaluation has ${metric} to plot`,
    );
  }
  const decade = (v: number[]) => Math.min(...v) > 0 && Math.max(...v) / Math.min(...v) >= 10;
  const logX = decade(points.map((p) => p.x));
  const logY = decade(points.map((p) => p.value));
  let clipped = 0;
  if (logY) {
    for (const p of points) {
      if (p.lo <= p.value / 10) {
        p.lo = p.value / 10;
        clipped++;
      }
    }
  }
  const varying = [...new Set(sweeps.flatMap((s) => s.varying))];
  const others = varying.filter((k) =>
    k !== x && k !== by && !(x === "nfe" && k === "sample_steps")
  );
  return {
    metric,
    minimize,
    x,
    by,
    sweeps: sweeps.map((s) => s.name),
    others,
    points,
    logX,
    logY,
    clipped,
  };
}

/** The parameter name that holds the single series when there is no `by`. */
const SERIES = "\u0000series";

/** The x axis title of a parameter. */
function xTitle(x: string): string {
  return x === "nfe"
    ? "NFE (network evaluations per sample)"
    : x === "sample_steps"
    ? "sampling steps"
    : x;
}

/** The x parameter in a title or label: "NFE", "sampling steps" or its name. */
function shortX(x: string): string {
  return x === "nfe" ? "NFE" : xTitle(x);
}

/** The label of a sweep's best point, e.g. "best of default: 0.000104 (cosine, NFE 25)". */
export function bestLabel(data: FigureData, p: PlotPoint): string {
  const where = `${data.by ? `${p.series}, ` : ""}${
    data.x === "nfe" ? "NFE" : xTitle(data.x)
  } ${p.x}`;
  return `best${data.sweeps.length > 1 ? ` of ${p.sweep}` : ""}: ${
    Number(p.value.toPrecision(3))
  } (${where})`;
}

/** The Vega-Lite spec of a figure (pure). */
export function figureSpec(data: FigureData): TopLevelSpec {
  const several = data.sweeps.length > 1;
  const values = data.points.map((p) => ({
    sweep: p.sweep,
    series: p.series,
    x: p.x,
    value: p.value,
    lo: p.lo,
    hi: p.hi,
    best: p.best,
    label: p.best ? bestLabel(data, p) : "",
  }));
  const x = {
    field: "x",
    type: "quantitative" as const,
    title: xTitle(data.x),
    scale: data.logX
      ? { type: "log" as const, nice: false, padding: 14 }
      : { zero: false, padding: 14 },
    // Ticks at the values the sweeps ran (a log axis's own ticks can leave out 100).
    axis: { grid: true, values: [...new Set(data.points.map((p) => p.x))].sort((a, b) => a - b) },
  };
  const yScale = data.logY ? { type: "log" as const } : { zero: false };
  const color = {
    field: "series",
    type: "nominal" as const,
    title: data.by ?? "metric",
    sort: [...new Set(data.points.map((p) => p.series))],
  };
  const dash = several
    ? {
      strokeDash: {
        field: "sweep",
        type: "nominal" as const,
        title: "sweep",
        sort: data.sweeps,
        legend: {
          symbolType: "stroke",
          symbolStrokeWidth: 2,
          symbolSize: 400,
          // The line layer's points would otherwise leave the dash symbols without a stroke.
          encode: { symbols: { update: { stroke: { value: "#444" } } } },
        },
      },
    }
    : {};
  const subtitle = [
    `sweep${several ? "s" : ""} ${data.sweeps.join(", ")}; each point the best over ${
      data.others.join(", ") || "nothing else"
    }`,
    `bars ±1 spread (bootstrap s.d.)${
      data.clipped ? `, ${data.clipped} of them cut at a tenth of the value` : ""
    }; diamonds mark the best`,
    ...(several ? data.points.filter((p) => p.best).map((p) => bestLabel(data, p)) : []),
  ];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `${data.metric} against ${shortX(data.x)}`,
      subtitle,
      anchor: "start",
    },
    width: 560,
    height: 340,
    background: "white",
    config: { font: FIGURE_FONT, legend: { orient: "right" } },
    data: { values },
    encoding: { x },
    layer: [
      {
        mark: { type: "rule", strokeWidth: 1.2 },
        encoding: {
          y: { field: "lo", type: "quantitative", scale: yScale },
          y2: { field: "hi" },
          color,
          ...dash,
        },
      },
      {
        mark: { type: "line", point: true, strokeWidth: 2 },
        encoding: {
          y: {
            field: "value",
            type: "quantitative",
            title: `${data.metric} (${data.minimize ? "lower" : "higher"} is better)`,
            scale: yScale,
          },
          color,
          ...dash,
        },
      },
      {
        transform: [{ filter: "datum.best" }],
        mark: { type: "point", shape: "diamond", size: 260, filled: false, strokeWidth: 2.5 },
        encoding: { y: { field: "value", type: "quantitative" }, color: { value: "black" } },
      },
      // One sweep: the label beside its best point; several: their labels are the subtitle's lines.
      ...(several ? [] : [{
        transform: [{ filter: "datum.best" }],
        mark: { type: "text", dy: -16, fontWeight: "bold", align: "left", dx: 6 },
        encoding: {
          y: { field: "value", type: "quantitative" },
          text: { field: "label" },
          color: { value: "black" },
        },
      }]),
    ],
  } as TopLevelSpec;
}

/** A Vega-Lite spec rendered to SVG text (no browser: vega's headless view). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The TTF files of the figure font, from the `source-sans` package. */
function fontFiles(): string[] {
  const require = createRequire(import.meta.url);
  return ["Regular", "Bold"].map((w) => require.resolve(`source-sans/TTF/SourceSans3-${w}.ttf`));
}

/** SVG text rasterised to PNG at `scale` times its size, text in {@link FIGURE_FONT}. */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    background: "white",
    font: { fontFiles: fontFiles(), loadSystemFonts: false, defaultFontFamily: FIGURE_FONT },
  });
  return resvg.render().asPng();
}

/** Checks a figure's file name before anything is computed: .svg or .png, in a folder that exists or can be made. */
export function checkFigureFile(file: string, option = "--plot"): "svg" | "png" {
  const ext = extname(file).toLowerCase();
  if (ext !== ".svg" && ext !== ".png") {
    throw new Error(`${option} ${file}: the file must end in .svg or .png`);
  }
  return ext === ".svg" ? "svg" : "png";
}

/** Writes SVG text to `file` as SVG or PNG (by its extension), making its folder. */
export function writeFigure(file: string, svg: string): void {
  const kind = checkFigureFile(file);
  try {
    fs.mkdirSync(dirname(file), { recursive: true });
    if (kind === "svg") fs.writeFileSync(file, svg);
    else fs.writeFileSync(file, svgToPng(svg));
  } catch (e) {
    throw new Error(`cannot write the figure ${file}: ${(e as Error).message}`);
  }
}

/**
 * The metric-against-x figure of one or more sweeps, written to `file`
 * (.svg or .png); returns the file and a one-line description.
 */
export async function plotSweeps(
  sweeps: SweepResults[],
  opts: PlotOptions & { file: string },
): Promise<{ file: string; describe: string; data: FigureData }> {
  checkFigureFile(opts.file);
  const data = figureData(sweeps, opts);
  writeFigure(opts.file, await renderSvg(figureSpec(data)));
  const series = new Set(data.points.map((p) => `${p.sweep}/${p.series}`)).size;
  const best = data.points.filter((p) => p.best).map((p) =>
    `${bestLabel(data, p)}${
      data.others.length
        ? ` with ${data.others.map((k) => `${k}=${showValue(p.params[k])}`).join(" ")}`
        : ""
    }`
  );
  return {
    file: opts.file,
    describe: `${data.metric} against ${data.x}, ${series} series${
      data.by ? ` by ${data.by}` : ""
    }; ${best.join("; ")}`,
    data,
  };
}
