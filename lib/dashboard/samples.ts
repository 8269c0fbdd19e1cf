/**
 * Sample previews of an evaluation: the files it wrote, as the store holds
 * them (lib/sweep/results.ts `evalSampleFiles`), read into an image, 2-D
 * points or table columns, and drawn in the
 * terminal: images in half-block greyscale, points as a density over fresh
 * draws of the data, table columns as histograms against the real table.
 */
import { parse } from "csv-parse/sync";
import { decode } from "fast-png";
import { loadTable } from "../data/tabular.ts";
import { isToy, sampleToy } from "../data/toy2d.ts";
import { Rng } from "../runtime/rng.ts";
import type { SampleFile } from "../sweep/results.ts";
import {
  densityPlot,
  fit,
  type GreyImage,
  halfBlock,
  histogram,
  type Line,
  shrink,
  sparkline,
} from "./charts.ts";

/** A table column's histograms: frequencies of the samples and of the real rows. */
export interface ColumnHistogram {
  /** Column name. */
  name: string;
  /** Sample frequencies per bin (or category). */
  sample: number[];
  /** Real-data frequencies per bin, when the table could be loaded. */
  real?: number[];
}

/** Samples read for a preview. */
export type Preview =
  | { kind: "image"; path: string; image: GreyImage }
  | { kind: "points"; path: string; points: Float32Array; real?: Float32Array }
  | { kind: "table"; path: string; columns: ColumnHistogram[] };

/** Bins of a numeric column's histogram. */
const BINS = 12;

/** A PNG as greyscale levels (the mean of its colour channels). */
export function decodeGrey(bytes: Uint8Array): GreyImage {
  const png = decode(bytes);
  const ch = png.channels;
  const n = png.width * png.height;
  const data = new Uint8Array(n);
  const colours = ch >= 3 ? 3 : 1;
  const scale = png.depth === 16 ? 1 / 257 : 1;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < colours; k++) s += Number(png.data[i * ch + k]);
    data[i] = Math.round(s / colours * scale);
  }
  return { width: png.width, height: png.height, data };
}

/**
 * Reads the first previewable file: a CSV with columns x, y as points (with
 * 2000 draws of `data` when it is a toy set), another CSV as a table
 * (histograms against `data` loaded as a table), a PNG as an image. Errors
 * name the file.
 */
export function readPreview(files: SampleFile[], data: string, drop: string[] = []): Preview {
  const file = files[0];
  if (!file) throw new Error("no sample files");
  const path = file.name;
  if (path.endsWith(".png")) return { kind: "image", path, image: decodeGrey(file.bytes) };
  const rows = parse(new TextDecoder().decode(file.bytes)) as string[][];
  const [header, ...body] = rows;
  if (!header) throw new Error(`${path}: empty CSV`);
  if (header.length === 2 && header[0] === "x" && header[1] === "y") {
    const points = new Float32Array(body.length * 2);
    body.forEach((r, i) => {
      points[2 * i] = Number(r[0]);
      points[2 * i + 1] = Number(r[1]);
    });
    const real = isToy(data) ? sampleToy(data, 2000, new Rng(0xda7a)) : undefined;
    return { kind: "points", path, points, real };
  }
  return { kind: "table", path, columns: tableHistograms(header, body, data, drop) };
}

/** Per-column frequencies of sample rows, beside those of the real table when it loads. */
export function tableHistograms(
  header: string[],
  body: string[][],
  data: string,
  drop: string[] = [],
): ColumnHistogram[] {
  let table: ReturnType<typeof loadTable> | undefined;
  try {
    table = loadTable(data, { constantColumns: "drop", blanks: "mean", nonNumeric: "blank", drop });
  } catch {
    // the real table is not loadable here (a moved CSV): samples alone
  }
  const freq = (c: number[]) => {
    const n = c.reduce((a, b) => a + b, 0) || 1;
    return c.map((v) => v / n);
  };
  return header.map((name, k) => {
    const col = body.map((r) => r[k]);
    const spec = table?.columns.find((c) => c.name === name);
    const numbers = col.map(Number);
    const numeric = spec
      ? spec.type === "numeric" || spec.type === "integer"
      : numbers.every(Number.isFinite);
    if (numeric) {
      const real = table?.numeric[name];
      const range = real && real.length ? real : numbers;
      let lo = Infinity, hi = -Infinity;
      for (const v of range) {
        if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
      }
      return {
        name,
        sample: freq(histogram(numbers, lo, hi, BINS)),
        real: real ? freq(histogram(real, lo, hi, BINS)) : undefined,
      };
    }
    const categories = [...new Set([...(spec?.categories ?? []), ...col])];
    const count = (values: string[]) => categories.map((c) => values.filter((v) => v === c).length);
    const codes = table?.categorical[name];
    const real = codes && spec?.categories
      ? Array.from(codes, (c) => spec.categories![c])
      : undefined;
    return {
      name,
      sample: freq(count(col)),
      real: real ? freq(count(real)) : undefined,
    };
  });
}

/**
 * A preview drawn in `cols × rows` characters. Images are shrunk by up to
 * 4× (so an MNIST grid keeps digits legible) and cropped from the top left.
 */
export function drawPreview(p: Preview, cols: number, rows: number): Line[] {
  if (p.kind === "image") {
    const factor = Math.max(1, Math.min(4, Math.ceil(p.image.width / cols)));
    return halfBlock(shrink(p.image, factor, cols, rows * 2));
  }
  if (p.kind === "points") return densityPlot(p.points, p.real, cols, rows);
  const nameW = Math.min(12, Math.max(4, ...p.columns.map((c) => c.name.length)));
  const bins = Math.max(2, Math.floor((cols - nameW - 3) / 2));
  const lines: Line[] = [];
  for (const c of p.columns.slice(0, rows)) {
    const cut = (v: number[]) => v.slice(0, bins);
    const sample = cut(c.sample);
    const real = c.real ? cut(c.real) : undefined;
    const max = Math.max(...sample, ...(real ?? []));
    lines.push([
      { text: fit(c.name, nameW) + " " },
      { text: fit(sparkline(sample, max), bins), fg: 203 },
      { text: " │ ", dim: true },
      { text: real ? fit(sparkline(real, max), bins) : "", fg: 244 },
    ]);
  }
  return lines;
}
