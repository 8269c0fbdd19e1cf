/**
 * Pictures as PNG files: image grids for samples, and scatter plots of 2-D
 * samples over the data, drawn into plain pixel buffers.
 */
import { encode } from "fast-png";
import * as fs from "node:fs";
import { dirname } from "node:path";

/** An RGB picture. */
export interface Picture {
  width: number;
  height: number;
  /** [height, width, 3] bytes. */
  rgb: Uint8Array;
}

/** A blank picture filled with one colour. */
export function blank(
  width: number,
  height: number,
  colour: [number, number, number] = [255, 255, 255],
): Picture {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set(colour, i * 3);
  return { width, height, rgb };
}

/** Writes a picture as a PNG file (creating its folder). */
export function writePng(path: string, pic: Picture): void {
  fs.mkdirSync(dirname(path), { recursive: true });
  fs.writeFileSync(
    path,
    encode({ width: pic.width, height: pic.height, data: pic.rgb, channels: 3, depth: 8 }),
  );
}

/**
 * Tiles greyscale images in [−1, 1] ([n, h, w] values, one channel) into a
 * grid of `cols` columns with a 2-pixel gutter, scaled up by `scale`.
 * `cells` places image k in cell cells[k] (row-major; default k), leaving
 * the other cells empty.
 */
export function imageGrid(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  cols = Math.ceil(Math.sqrt(n)),
  scale = 2,
  cells?: ArrayLike<number>,
): Picture {
  const cellOf = (k: number) => cells?.[k] ?? k;
  let last = n - 1;
  for (let k = 0; k < n; k++) last = Math.max(last, cellOf(k));
  const rows = Math.ceil((last + 1) / cols);
  const pad = 2;
  const W = cols * (w * scale + pad) + pad;
  const H = rows * (h * scale + pad) + pad;
  const pic = blank(W, H, [40, 40, 40]);
  for (let k = 0; k < n; k++) {
    const ox = pad + (cellOf(k) % cols) * (w * scale + pad);
    const oy = pad + Math.floor(cellOf(k) / cols) * (h * scale + pad);
    for (let y = 0; y < h * scale; y++) {
      for (let x = 0; x < w * scale; x++) {
        const v = images[k * h * w + Math.floor(y / scale) * w + Math.floor(x / scale)];
        const g = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
        pic.rgb.fill(g, ((oy + y) * W + ox + x) * 3, ((oy + y) * W + ox + x) * 3 + 3);
      }
    }
  }
  return pic;
}

/** Bounds of a 2-D plot. */
export interface Bounds {
  xmin: number;
  xmax: number;
  ymin: number;
  ymax: number;
}

/** Bounds covering every point of the given [n·2] sets, with a 5% margin. */
export function boundsOf(...sets: Float32Array[]): Bounds {
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
  for (const s of sets) {
    for (let i = 0; i + 1 < s.length; i += 2) {
      if (!Number.isFinite(s[i]) || !Number.isFinite(s[i + 1])) continue;
      xmin = Math.min(xmin, s[i]);
      xmax = Math.max(xmax, s[i]);
      ymin = Math.min(ymin, s[i + 1]);
      ymax = Math.max(ymax, s[i + 1]);
    }
  }
  const mx = (xmax - xmin) * 0.05 || 1;
  const my = (ymax - ymin) * 0.05 || 1;
  return { xmin: xmin - mx, xmax: xmax + mx, ymin: ymin - my, ymax: ymax + my };
}

/** Draws [n·2] points as 2×2 dots of one colour into a picture. */
export function scatter(
  pic: Picture,
  points: Float32Array,
  b: Bounds,
  colour: [number, number, number],
): void {
  const { width: W, height: H } = pic;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const px = Math.floor((points[i] - b.xmin) / (b.xmax - b.xmin) * (W - 2));
    const py = Math.floor((1 - (points[i + 1] - b.ymin) / (b.ymax - b.ymin)) * (H - 2));
    if (!(px >= 0 && px < W - 1 && py >= 0 && py < H - 1)) continue;
    for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
      pic.rgb.set(colour, ((py + dy) * W + px + dx) * 3);
    }
  }
}

/** A heatmap of a [rows, cols] matrix with a blue–white–red scale, each cell `cell` pixels. */
export function heatmap(
  values: Float32Array | number[],
  rows: number,
  cols: number,
  cell = 4,
): Picture {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const pic = blank(cols * cell, rows * cell);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c] / m; // [−1, 1]
      const colour: [number, number, number] = v >= 0
        ? [255, Math.round(255 * (1 - v)), Math.round(255 * (1 - v))]
        : [Math.round(255 * (1 + v)), Math.round(255 * (1 + v)), 255];
      for (let y = 0; y < cell; y++) {
        for (let x = 0; x < cell; x++) {
          pic.rgb.set(colour, ((r * cell + y) * pic.width + c * cell + x) * 3);
        }
      }
    }
  }
  return pic;
}

/** Line plot of several series over the same x positions, each in its own colour. */
export function linePlot(series: number[][], width = 640, height = 320): Picture {
  const pic = blank(width, height);
  let lo = Infinity, hi = -Infinity;
  for (const s of series) {
    for (const v of s) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  const span = hi - lo || 1;
  const palette: [number, number, number][] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [
    214,
    39,
    40,
  ], [148, 103, 189]];
  series.forEach((s, k) => {
    const colour = palette[k % palette.length];
    for (let i = 0; i + 1 < s.length; i++) {
      const steps = 20;
      for (let j = 0; j <= steps; j++) {
        const f = j / steps;
        const x = Math.round(((i + f) / Math.max(1, s.length - 1)) * (width - 1));
        const v = s[i] + (s[i + 1] - s[i]) * f;
        const y = Math.round((1 - (v - lo) / span) * (height - 1));
        if (x >= 0 && x < width && y >= 0 && y < height) pic.rgb.set(colour, (y * width + x) * 3);
      }
    }
  });
  return pic;
}
