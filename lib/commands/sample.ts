/**
 * `deno task sample`: draws samples from a run and writes them: a PNG grid
 * for images (conditional ones: one row per label, or a square grid of one
 * label); a CSV plus a PNG scatter over the data for 2-D sets; a CSV of rows
 * for tables.
 */
import * as fs from "node:fs";
import { dirname, extname } from "node:path";
import { stringify } from "csv-stringify/sync";
import { sampleToy } from "../data/toy2d.ts";
import {
  checkSampleRequest,
  pickSamplingOptions,
  type SampleOutput,
  type SampleRequest,
  type SamplingOptions,
} from "../models/model.ts";
import { describeDataset } from "../data/registry.ts";
import { type BackendName, checkBackend, initBackend } from "../runtime/backend.ts";
import { blank, boundsOf, imageGrid, type Picture, scatter, writePng } from "../runtime/png.ts";
import { Progress } from "../runtime/progress.ts";
import { Rng } from "../runtime/rng.ts";
import { openRun } from "./run.ts";

/** Options of {@link sampleCommand}. */
export interface SampleCommandOptions extends SamplingOptions {
  run: string;
  out: string;
  n?: number;
  label?: number;
  ema?: string;
  checkpoint?: number;
  seed: number;
  backend: BackendName;
}

/** Samples from a run and writes the file(s); returns the paths written. */
export async function sampleCommand(opts: SampleCommandOptions): Promise<string[]> {
  await initBackend(opts.backend);
  const run = await openRun(opts.run, { checkpoint: opts.checkpoint, ema: opts.ema });
  try {
    const n = opts.n ?? 64;
    const data = String(run.config.data);
    const req: SampleRequest = {
      n,
      ...pickSamplingOptions(opts),
      labels: opts.label !== undefined ? [opts.label] : undefined,
    };
    checkSampleRequest(String(run.config.model), run.model.sampling, req);
    prepareOutput(describeDataset(data).kind, opts.out);
    const progress = new Progress(`sample ${n}`, 1);
    req.onProgress = (done, total) => {
      progress.total = total;
      progress.update(done);
    };
    const out = await run.model.sample(run.weights, req, new Rng(opts.seed));
    await checkBackend(true);
    return writeSamples(out, opts.out, data, opts.seed);
  } finally {
    run.close();
  }
}

/** The extensions `--out` may carry for each kind of sample (none: they are added). */
const OUT_EXTENSIONS: Record<SampleOutput["kind"], string[]> = {
  image: [".png"],
  points: [".csv", ".png"],
  table: [".csv"],
};

/**
 * The files samples of `kind` go to for `--out path`; a wrong extension is an
 * error (not `x.jpg.png`).
 */
export function outputPaths(kind: SampleOutput["kind"], path: string, option = "--out"): string[] {
  const ext = extname(path).toLowerCase();
  const allowed = OUT_EXTENSIONS[kind];
  if (ext && !allowed.includes(ext)) {
    throw new Error(
      `${option} ${path}: ${kind} samples are written as ${
        kind === "points" ? "a .csv with a .png scatter" : allowed[0]
      }; name a ${allowed.join(" or ")} file (or none, and it is added)`,
    );
  }
  const base = ext ? path.slice(0, -ext.length) : path;
  return kind === "image"
    ? [`${base}.png`]
    : kind === "points"
    ? [`${base}.csv`, `${base}.png`]
    : [`${base}.csv`];
}

/**
 * Checks `--out` before any sampling: its extension ({@link outputPaths}),
 * and that its folder can be created and written (a file is written there and
 * removed), so a read-only or missing place fails now rather than after the
 * samples are drawn.
 */
export function prepareOutput(kind: SampleOutput["kind"], path: string, option = "--out"): void {
  outputPaths(kind, path, option);
  const dir = dirname(path) || ".";
  try {
    fs.mkdirSync(dir, { recursive: true });
    const probe = `${dir}/.dmw-write-check-${Deno.pid}`;
    fs.writeFileSync(probe, "");
    fs.rmSync(probe);
  } catch (e) {
    throw new Error(`${option} ${path}: cannot write in ${dir} (${(e as Error).message})`);
  }
}

/** Writes samples in their natural form next to `out`; returns the paths. */
export function writeSamples(out: SampleOutput, path: string, data: string, seed = 0): string[] {
  const paths = outputPaths(out.kind, path);
  fs.mkdirSync(dirname(path) || ".", { recursive: true });
  if (out.kind === "image") {
    const png = paths[0];
    writePng(
      png,
      out.labels ? labelGrid(out) : imageGrid(out.images, out.n, out.height, out.width),
    );
    return [png];
  }
  if (out.kind === "points") {
    const [csv, png] = paths;
    const rows = Array.from(
      { length: out.n },
      (_, i) => Array.from(out.points.subarray(i * out.dim, (i + 1) * out.dim)),
    );
    fs.writeFileSync(csv, stringify([["x", "y"].slice(0, out.dim), ...rows]));
    const real = sampleToy(data, out.n, new Rng(seed ^ 0xda7a));
    const pic = blank(480, 480);
    const b = boundsOf(real);
    scatter(pic, real, b, [180, 180, 180]);
    scatter(pic, out.points, b, [214, 39, 40]);
    writePng(png, pic);
    return paths;
  }
  fs.writeFileSync(paths[0], stringify([out.header, ...out.rows]));
  return paths;
}

/**
 * Conditional samples as a grid: one row per label, in label order and each
 * row as long as the largest class, when they carry several labels; a
 * square grid when they share one.
 */
export function labelGrid(out: Extract<SampleOutput, { kind: "image" }>): Picture {
  const labels = Array.from(out.labels ?? new Int32Array(out.n));
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  if (classes.length === 1) return imageGrid(out.images, out.n, out.height, out.width);
  const rowOf = new Map(classes.map((c, r) => [c, r]));
  const filled = new Array(classes.length).fill(0);
  const cols = Math.max(...classes.map((c) => labels.filter((l) => l === c).length));
  const cells = labels.map((l) => rowOf.get(l)! * cols + filled[rowOf.get(l)!]++);
  return imageGrid(out.images, out.n, out.height, out.width, cols, 2, cells);
}
