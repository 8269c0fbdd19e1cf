/**
 * `deno task report [SWEEP] --out DIR`: a sweep's result as a folder to
 * share. DIR/README.md ties together the compare grid (as a Markdown table,
 * the best cell in bold), the metric-against-steps figure, the training loss
 * per timestep band of each training run, and the sweep's configuration;
 * every figure is written as SVG and PNG beside it.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { stringify as yaml } from "yaml";
import { parse } from "csv-parse/sync";
import type { TopLevelSpec } from "vega-lite";
import { isToy, sampleToy } from "../data/toy2d.ts";
import { Rng } from "../runtime/rng.ts";
import { DEFAULT_STORE, openStore, type Store } from "../store/store.ts";
import type { TrainJob } from "./planner.ts";
import {
  FIGURE_FONT,
  type FigureData,
  figureData,
  figureSpec,
  type PlotPoint,
  renderSvg,
  svgToPng,
} from "./plot.ts";
import {
  chooseMetric,
  compareGrid,
  type ConfigResult,
  defaultAxes,
  evalSampleFiles,
  matchesFilter,
  parseFilter,
  showValue,
  type SweepResults,
  sweepResults,
} from "./results.ts";

/** Options of {@link writeReport}. */
export interface ReportOptions {
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
  /** Folder to write (made when missing; files of the same names are replaced). */
  out: string;
  /** Metric. @default the experiment's, else the first one recorded */
  metric?: string;
  /** The figure's series parameter. @default as `compare --plot` */
  by?: string;
  /** The figure's x axis. @default as `compare --plot` */
  x?: string;
  /**
   * The training runs the loss-per-band figure shows, as a filter of their
   * parameters (`schedule=cosine lr=0.001`, as the dashboard's `/`).
   * @default every training run
   */
  runs?: string;
  /** An open store to read (left open); otherwise `storePath` is opened read-only. */
  store?: Store;
  /** Store file or postgres:// URL, when no `store` is given. @default "runs/store.sqlite" */
  storePath?: string;
}

/** One training run's logged losses per timestep band. */
export interface RunLosses {
  /** Its label: the training parameters that differ between the sweep's runs (else its key). */
  label: string;
  /** Its points: step, band name, loss. */
  points: { step: number; band: string; loss: number }[];
}

/** The name of band `i` of `n`, as the dashboard shows it: "t .00–.25". */
export function bandName(i: number, n: number): string {
  const edge = (v: number) => v.toFixed(2).replace(/^0/, "");
  return `t ${edge(i / n)}–${edge((i + 1) / n)}`;
}

/**
 * The loss per timestep band over training of each training job of a sweep,
 * or of those whose parameters match `runs` (a filter, as the dashboard's
 * `/`; an error names a bad term or a filter that keeps none).
 */
export async function runLosses(
  store: Store,
  sweep: SweepResults,
  runs?: string,
): Promise<RunLosses[]> {
  const row = await store.sweep(sweep.name);
  let jobs = (await store.jobs(row!.id)).filter((j) => j.kind === "train");
  let configs = jobs.map((j) => (JSON.parse(j.spec) as TrainJob).config);
  // Labels by what differs between all the sweep's runs, also when only some are shown.
  const differ = sweep.varying.filter((k) =>
    new Set(configs.map((c) => JSON.stringify(c[k]))).size > 1
  );
  if (runs) {
    const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))];
    let terms;
    try {
      terms = parseFilter(runs, keys);
    } catch (e) {
      throw new Error(`--runs ${runs}: ${(e as Error).message}`);
    }
    const keep = configs.map((c) => matchesFilter(c, terms));
    jobs = jobs.filter((_, i) => keep[i]);
    configs = configs.filter((_, i) => keep[i]);
    if (!jobs.length) {
      throw new Error(`--runs ${runs}: no training run of sweep ${sweep.name} matches`);
    }
  }
  const out: RunLosses[] = [];
  for (const [n, job] of jobs.entries()) {
    const label = differ.length
      ? differ.map((k) => `${k}=${showValue(configs[n][k])}`).join(" ")
      : job.key;
    const points: RunLosses["points"] = [];
    for (const m of await store.metricsSince(job.id, 0)) {
      let bands: (number | null)[] = [];
      try {
        bands = JSON.parse(m.bands ?? "[]");
      } catch {
        // a malformed bands cell is left out, as the dashboard does
      }
      bands.forEach((b, i) => {
        if (b !== null && Number.isFinite(b)) {
          points.push({ step: m.step, band: bandName(i, bands.length), loss: b });
        }
      });
    }
    out.push({ label, points });
  }
  return out;
}

/** The Vega-Lite spec of the loss-per-band figure: one panel per run (two a row), one line per band. */
export function lossSpec(runs: RunLosses[]): TopLevelSpec {
  const values = runs.flatMap((r) => r.points.map((p) => ({ run: r.label, ...p })));
  const losses = values.map((v) => v.loss);
  const log = losses.length > 0 && Math.min(...losses) > 0 &&
    Math.max(...losses) / Math.min(...losses) >= 10;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: "training loss per timestep band",
      subtitle: "the loss of the timesteps in each quarter of [0, 1], as logged during training",
      anchor: "start",
    },
    background: "white",
    config: { font: FIGURE_FONT },
    data: { values },
    // Two panels a row, so that a sweep of many runs stays readable.
    facet: { field: "run", type: "nominal", title: null, sort: runs.map((r) => r.label) },
    columns: 2,
    spec: {
      width: 300,
      height: 220,
      mark: { type: "line", strokeWidth: 1.5 },
      encoding: {
        x: { field: "step", type: "quantitative", title: "training step" },
        y: {
          field: "loss",
          type: "quantitative",
          title: "loss",
          scale: log ? { type: "log" } : { zero: false },
        },
        color: { field: "band", type: "nominal", title: "timestep band" },
      },
    },
  } as TopLevelSpec;
}

/** The sample file of a configuration's evaluation: 2-D points, or an image, or none. */
export type BestSamples =
  | { kind: "points"; path: string; points: [number, number][]; real?: [number, number][] }
  | { kind: "png"; path: string; bytes: Uint8Array };

/**
 * The first sample file the configuration's evaluation stored that a
 * report can show (lib/sweep/results.ts `evalSampleFiles`): a CSV of columns
 * x, y (2-D points, with 2,000 draws of the data set when it is a toy set),
 * or a PNG (image samples, an MNIST grid). Tables and missing files give
 * undefined.
 */
export async function bestSamples(
  store: Store,
  config: ConfigResult,
  data: string,
): Promise<BestSamples | undefined> {
  if (config.job === undefined) return undefined;
  const files = await evalSampleFiles(store, config.job);
  const png = files.find((f) => f.name.endsWith(".png"));
  const csv = files.find((f) => f.name.endsWith(".csv"));
  if (csv) {
    const [header, ...body] = parse(new TextDecoder().decode(csv.bytes)) as string[][];
    if (header?.length === 2 && header[0] === "x" && header[1] === "y") {
      const points = body.map((r) => [Number(r[0]), Number(r[1])] as [number, number]);
      let real: [number, number][] | undefined;
      if (isToy(data)) {
        const flat = sampleToy(data, 2000, new Rng(0xda7a));
        real = Array.from({ length: 2000 }, (_, i) => [flat[2 * i], flat[2 * i + 1]]);
      }
      return { kind: "points", path: csv.name, points, real };
    }
  }
  return png ? { kind: "png", path: png.name, bytes: png.bytes } : undefined;
}

/** The encoding of 2-D samples (red) over draws of the data (grey, drawn first). */
const SAMPLES_OVER_DATA = {
  x: { field: "x", type: "quantitative", scale: { zero: false } },
  y: { field: "y", type: "quantitative", scale: { zero: false } },
  color: {
    field: "set",
    type: "nominal",
    title: null,
    scale: { domain: ["data", "samples"], range: ["#bbbbbb", "#d62728"] },
  },
  opacity: { value: 0.6 },
  order: { field: "set", sort: "ascending" },
} as const;

/** The Vega-Lite spec of 2-D samples over draws of the real data (grey). */
export function samplesSpec(
  samples: Extract<BestSamples, { kind: "points" }>,
  title: string,
): TopLevelSpec {
  const values = [
    ...(samples.real ?? []).map(([x, y]) => ({ x, y, set: "data" })),
    ...samples.points.map(([x, y]) => ({ x, y, set: "samples" })),
  ];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: "samples of the best configuration",
      subtitle: `${title}; ${samples.points.length} samples${
        samples.real ? ` over ${samples.real.length} draws of the data (grey)` : ""
      }`,
      anchor: "start",
    },
    background: "white",
    config: { font: FIGURE_FONT },
    width: 360,
    height: 360,
    data: { values },
    // No ARIA label per point: thousands of them would triple the file.
    mark: { type: "circle", size: 8, aria: false },
    encoding: SAMPLES_OVER_DATA,
  } as TopLevelSpec;
}

/** Each line's best point of a figure (the first of equals), in the lines' order. */
export function seriesBest(data: FigureData): PlotPoint[] {
  const out = new Map<string, PlotPoint>();
  for (const p of data.points) {
    const cur = out.get(p.series);
    if (!cur || (data.minimize ? p.value < cur.value : p.value > cur.value)) out.set(p.series, p);
  }
  return [...out.values()];
}

/** One panel of the samples-by-line figure. */
export interface SamplePanel {
  /** Its title: the line, its metric and where. */
  title: string;
  /** The samples. */
  points: [number, number][];
  /** Draws of the data, drawn grey under them. */
  real?: [number, number][];
}

/** The Vega-Lite spec of 2-D samples in panels (three a row), each over draws of the data. */
export function panelsSpec(panels: SamplePanel[], by: string): TopLevelSpec {
  const values = panels.flatMap((p) => [
    ...(p.real ?? []).map(([x, y]) => ({ panel: p.title, x, y, set: "data" })),
    ...p.points.map(([x, y]) => ({ panel: p.title, x, y, set: "samples" })),
  ]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `samples at each ${by}'s best point`,
      subtitle: `${panels[0].points.length} samples a panel${
        panels[0].real ? ` over ${panels[0].real.length} draws of the data (grey)` : ""
      }`,
      anchor: "start",
    },
    background: "white",
    config: { font: FIGURE_FONT },
    data: { values },
    facet: { field: "panel", type: "nominal", title: null, sort: panels.map((p) => p.title) },
    columns: 3,
    spec: {
      width: 220,
      height: 220,
      mark: { type: "circle", size: 6, aria: false },
      encoding: SAMPLES_OVER_DATA,
    },
  } as TopLevelSpec;
}

/** The compare grid as a Markdown table (columns padded, numbers right-aligned), the best cell in bold. */
export function gridMarkdown(
  sweep: SweepResults,
  metric: string,
  minimize: boolean,
  rows: string,
  cols: string,
): string {
  const g = compareGrid(sweep.results, rows, cols, metric, minimize);
  const body = g.rowValues.map((r, i) => [
    r,
    ...g.cells[i].map((v, j) => {
      if (v === undefined) return "—";
      const text = v.toPrecision(4);
      return g.best?.[0] === i && g.best?.[1] === j ? `**${text}**` : text;
    }),
  ]);
  const table = [[`${rows} \\ ${cols}`, ...g.colValues], ...body];
  const widths = table[0].map((_, c) => Math.max(3, ...table.map((r) => [...r[c]].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((t, c) => c === 0 ? t.padEnd(widths[c]) : t.padStart(widths[c])).join(" | ")} |`;
  return [
    line(table[0]),
    `| ${widths.map((w, c) => c === 0 ? "-".repeat(w) : `${"-".repeat(w - 1)}:`).join(" | ")} |`,
    ...body.map(line),
  ].join("\n");
}

/** Writes a figure's SVG and PNG as DIR/NAME.svg and DIR/NAME.png. */
async function writeBoth(dir: string, name: string, spec: TopLevelSpec): Promise<void> {
  const svg = await renderSvg(spec);
  fs.writeFileSync(join(dir, `${name}.svg`), svg);
  fs.writeFileSync(join(dir, `${name}.png`), svgToPng(svg));
}

/** Writes the report folder; returns the files written (README.md first). */
export async function writeReport(opts: ReportOptions): Promise<string[]> {
  const store = opts.store ?? await openStore(opts.storePath ?? DEFAULT_STORE, { readOnly: true });
  try {
    const sweep = await sweepResults(store, opts.sweep);
    const { name: metric, minimize } = chooseMetric(sweep, opts.metric);
    try {
      fs.mkdirSync(opts.out, { recursive: true });
    } catch (e) {
      throw new Error(`--out ${opts.out}: cannot make the folder: ${(e as Error).message}`);
    }
    const files: string[] = [];
    const e = sweep.experiment;
    const states = new Map<string, number>();
    for (const r of sweep.results) states.set(r.state, (states.get(r.state) ?? 0) + 1);
    const md = [
      `# Sweep ${sweep.name}`,
      "",
      e.description ? `${e.description}\n` : "",
      `${e.model} on ${e.data}, ${sweep.results.length} configurations (${
        [...states].map(([s, n]) => `${n} ${s}`).join(", ")
      }), compared by ${metric || "no metric yet"} (${minimize ? "lower" : "higher"} is better).`,
      "",
    ];
    const [rows, cols] = defaultAxes(sweep.varying);
    if (metric && rows && cols) {
      const others = sweep.varying.filter((k) => k !== rows && k !== cols);
      md.push(
        "## Grid",
        "",
        `${metric} by ${rows} and ${cols}, the best over ${
          others.join(", ") || "nothing else"
        } in each cell; the best cell in bold.`,
        "",
        gridMarkdown(sweep, metric, minimize, rows, cols),
        "",
      );
    }
    let best: ConfigResult | undefined;
    let bestText: string | undefined;
    let data: FigureData | undefined;
    if (metric && sweep.results.some((r) => Number.isFinite(r.metrics[metric] ?? NaN))) {
      data = figureData([sweep], { metric, by: opts.by, x: opts.x });
      await writeBoth(opts.out, metric, figureSpec(data));
      files.push(join(opts.out, `${metric}.svg`), join(opts.out, `${metric}.png`));
      const point = data.points.find((p) => p.best)!;
      best = sweep.results.find((r) => r.params === point.params);
      bestText = sweep.varying.map((k) => `${k}=${showValue(point.params[k])}`).join(" ");
      md.push(
        `## ${metric} against ${data.x === "nfe" ? "NFE" : data.x}`,
        "",
        `![${metric} against ${data.x}](${metric}.png)`,
        "",
        `Best: ${metric} ${point.value.toPrecision(4)} ± ${
          point.spread.toPrecision(2)
        } with ${bestText}${point.params.nfe !== undefined ? ` (NFE ${point.params.nfe})` : ""}.`,
        "",
      );
    }
    const samples = best ? await bestSamples(store, best, e.data) : undefined;
    if (samples?.kind === "png") {
      fs.writeFileSync(join(opts.out, "samples-best.png"), samples.bytes);
      files.push(join(opts.out, "samples-best.png"));
    } else if (samples?.kind === "points") {
      await writeBoth(opts.out, "samples-best", samplesSpec(samples, bestText!));
      files.push(join(opts.out, "samples-best.svg"), join(opts.out, "samples-best.png"));
    }
    if (samples) {
      md.push(
        "## Samples of the best configuration",
        "",
        `![samples of ${bestText}](samples-best.png)`,
        "",
        `From \`${samples.path}\`.`,
        "",
      );
    }
    // Beside the curves: the samples at each line's best point (2-D points), when there are lines.
    const lines = data?.by ? seriesBest(data) : [];
    const panels: SamplePanel[] = [];
    const grids: { title: string; file: string }[] = [];
    for (const p of lines) {
      const config = sweep.results.find((r) => r.params === p.params);
      const got = config ? await bestSamples(store, config, e.data) : undefined;
      const title = `${p.series}: ${Number(p.value.toPrecision(3))} at ${
        data!.x === "nfe" ? "NFE" : data!.x
      } ${p.x}${p.best ? " (best)" : ""}`;
      if (got?.kind === "png") {
        // Image samples (an MNIST grid) as the evaluation wrote them, one file a line.
        const file = `samples-${grids.length + 1}.png`;
        fs.writeFileSync(join(opts.out, file), got.bytes);
        files.push(join(opts.out, file));
        grids.push({ title, file });
      }
      if (got?.kind !== "points") continue;
      panels.push({ title, points: got.points, real: got.real?.slice(0, 500) });
    }
    if (grids.length > 1) {
      md.push(
        `## Samples at each ${data!.by}'s best point`,
        "",
        ...grids.flatMap((g) => [`**${g.title}**`, "", `![${g.title}](${g.file})`, ""]),
      );
    }
    if (panels.length > 1) {
      await writeBoth(opts.out, "samples-by-line", panelsSpec(panels, data!.by!));
      files.push(join(opts.out, "samples-by-line.svg"), join(opts.out, "samples-by-line.png"));
      md.push(
        `## Samples at each ${data!.by}'s best point`,
        "",
        `![samples at the best point of each ${data!.by}](samples-by-line.png)`,
        "",
      );
    }
    const losses = await runLosses(store, sweep, opts.runs);
    if (losses.some((r) => r.points.length > 0)) {
      await writeBoth(opts.out, "loss", lossSpec(losses));
      files.push(join(opts.out, "loss.svg"), join(opts.out, "loss.png"));
      md.push(
        "## Training",
        "",
        opts.runs
          ? `The runs with ${opts.runs} (${losses.length} of the sweep's training runs).\n`
          : "",
        "![training loss per timestep band](loss.png)",
        "",
      );
    }
    const { file, base, parameters, metric: m, method } = e;
    md.push(
      "## Configuration",
      "",
      `From \`${file}\`: the base configuration, the swept parameters and the metric.`,
      "",
      "```yaml",
      yaml({ model: e.model, data: e.data, method, metric: m, ...base, parameters }).trimEnd(),
      "```",
      "",
      `Made by \`deno task report ${sweep.name} --out ${opts.out}${
        opts.runs ? ` --runs '${opts.runs}'` : ""
      }${store.location === DEFAULT_STORE ? "" : ` --store ${store.location}`}\`.`,
      "",
    );
    const readme = join(opts.out, "README.md");
    fs.writeFileSync(readme, md.join("\n").replace(/\n{3,}/g, "\n\n"));
    return [readme, ...files];
  } finally {
    if (!opts.store) await store.close();
  }
}
