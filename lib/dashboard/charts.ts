/**
 * Terminal charts as pure functions of numbers: a braille line chart with a
 * log-scale toggle, horizontal bars in eighth blocks, a greyscale image in
 * half blocks, a 2-D density over the data, histograms as sparklines and a
 * colour scale. Each returns {@link Line}s (text spans with 256-colour
 * styles); {@link toAnsi} turns a line into a string for the terminal, and
 * {@link plain} into its bare text, which is what the tests compare.
 */

/** A run of text in one style; colours are xterm 256-colour indices. */
export interface Span {
  /** The characters. */
  text: string;
  /** Foreground colour index (0–255). @default the terminal's */
  fg?: number;
  /** Background colour index (0–255). @default the terminal's */
  bg?: number;
  /** Dim (faint) text. @default false */
  dim?: boolean;
  /** Bold text. @default false */
  bold?: boolean;
  /** Reversed colours (a selection). @default false */
  inverse?: boolean;
}

/** One terminal line of spans. */
export type Line = Span[];

const ESC = String.fromCharCode(27);

/** The line as a string with SGR escape codes (reset after each styled span). */
export function toAnsi(line: Line): string {
  let out = "";
  for (const s of line) {
    const codes: string[] = [];
    if (s.bold) codes.push("1");
    if (s.dim) codes.push("2");
    if (s.inverse) codes.push("7");
    if (s.fg !== undefined) codes.push(`38;5;${s.fg}`);
    if (s.bg !== undefined) codes.push(`48;5;${s.bg}`);
    out += codes.length ? `${ESC}[${codes.join(";")}m${s.text}${ESC}[0m` : s.text;
  }
  return out;
}

/** The line's text without styles. */
export function plain(line: Line): string {
  return line.map((s) => s.text).join("");
}

/** Display width of a string (every code point one column; the charts use no wide characters). */
export function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Cuts a string to `w` columns (an ellipsis marks the cut) and pads it to `w`. */
export function fit(text: string, w: number, align: "left" | "right" = "left"): string {
  if (w <= 0) return "";
  const chars = [...text];
  if (chars.length > w) return w === 1 ? "…" : chars.slice(0, w - 1).join("") + "…";
  const pad = " ".repeat(w - chars.length);
  return align === "left" ? text + pad : pad + text;
}

/**
 * Wraps a string into lines of at most `w` columns, breaking after a space
 * where one falls in the line's second half, else mid-word.
 * @example wrap("error: out of memory", 10) // ["error: out", "of memory"]
 */
export function wrap(text: string, w: number): string[] {
  const out: string[] = [];
  let rest = [...text.trimEnd()];
  while (rest.length > w && w > 0) {
    const space = rest.slice(0, w + 1).lastIndexOf(" ");
    const cut = space > w / 2 ? space : w;
    out.push(rest.slice(0, cut).join("").trimEnd());
    rest = rest.slice(cut);
    while (rest[0] === " ") rest = rest.slice(1);
  }
  out.push(rest.join(""));
  return out;
}

/** Cuts a line of spans to `w` columns and pads it with spaces to exactly `w`. */
export function fitLine(line: Line, w: number): Line {
  const out: Line = [];
  let left = w;
  for (const s of line) {
    if (left <= 0) break;
    const chars = [...s.text];
    if (chars.length <= left) {
      out.push(s);
      left -= chars.length;
    } else {
      out.push({ ...s, text: chars.slice(0, left).join("") });
      left = 0;
    }
  }
  if (left > 0) out.push({ text: " ".repeat(left) });
  return out;
}

/** Colours of chart series, in order (xterm 256: blue, orange, green, red, purple, …). */
export const SERIES_COLOURS = [39, 208, 76, 196, 141, 220, 51, 205, 250, 130];

/** A series of a line chart. */
export interface Series {
  /** Legend label. */
  label: string;
  /** Points in x order; non-finite y values (and y ≤ 0 on a log scale) are skipped. */
  points: [number, number][];
  /** Colour index. @default SERIES_COLOURS[i] */
  colour?: number;
}

/** A drawn chart: its lines and the ranges its axes cover. */
export interface Chart {
  /** `height` lines of `width` characters. */
  lines: Line[];
  /** Smallest x drawn. */
  xMin: number;
  /** Largest x drawn. */
  xMax: number;
  /** Bottom of the y axis (in data units, also on a log scale). */
  yMin: number;
  /** Top of the y axis. */
  yMax: number;
}

/** Braille dot bit of pixel (dx, dy) within a cell, dx in 0..1, dy in 0..3. */
const BRAILLE_BITS = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];

/**
 * A line chart in braille: each character cell holds 2×4 dots, consecutive
 * points are joined by straight segments, and a cell takes the colour of the
 * last series that drew into it. With `log`, y is drawn on a log10 scale.
 * Returns blank lines and NaN ranges when no point is drawable.
 */
export function brailleChart(
  series: Series[],
  opts: { width: number; height: number; log?: boolean; yMin?: number; yMax?: number },
): Chart {
  const { width: W, height: H } = opts;
  const log = opts.log ?? false;
  const ty = (y: number) => (log ? Math.log10(y) : y);
  const usable = series.map((s) =>
    s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!log || y > 0))
  );
  const xs = usable.flat().map((p) => p[0]);
  const ys = usable.flat().map((p) => ty(p[1]));
  const blank = Array.from({ length: H }, () => [{ text: " ".repeat(W) }]);
  if (xs.length === 0 || W <= 0 || H <= 0) {
    return { lines: blank, xMin: NaN, xMax: NaN, yMin: NaN, yMax: NaN };
  }
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  let lo = opts.yMin !== undefined ? ty(opts.yMin) : Math.min(...ys);
  let hi = opts.yMax !== undefined ? ty(opts.yMax) : Math.max(...ys);
  if (hi === lo) {
    const pad = Math.abs(hi) * 0.05 || (log ? 0.5 : 1);
    lo -= pad;
    hi += pad;
  }
  const pw = W * 2;
  const ph = H * 4;
  const bits = new Uint8Array(W * H);
  const owner = new Int16Array(W * H).fill(-1);
  const px = (x: number) => (xMax === xMin ? 0 : Math.round((x - xMin) / (xMax - xMin) * (pw - 1)));
  const py = (y: number) => Math.round((1 - (ty(y) - lo) / (hi - lo)) * (ph - 1));
  const dot = (x: number, y: number, k: number) => {
    if (x < 0 || x >= pw || y < 0 || y >= ph) return;
    const cell = Math.floor(y / 4) * W + Math.floor(x / 2);
    bits[cell] |= BRAILLE_BITS[x % 2][y % 4];
    owner[cell] = k;
  };
  usable.forEach((pts, k) => {
    let prev: [number, number] | undefined;
    for (const [x, y] of pts) {
      const p: [number, number] = [px(x), py(y)];
      if (prev) segment(prev, p, (a, b) => dot(a, b, k));
      else dot(p[0], p[1], k);
      prev = p;
    }
  });
  const lines: Line[] = [];
  for (let r = 0; r < H; r++) {
    const line: Line = [];
    for (let c = 0; c < W; c++) {
      const i = r * W + c;
      const ch = bits[i] ? String.fromCharCode(0x2800 + bits[i]) : " ";
      const k = owner[i];
      const fg = k >= 0 ? series[k].colour ?? SERIES_COLOURS[k % SERIES_COLOURS.length] : undefined;
      const last = line.at(-1);
      if (last && last.fg === fg) last.text += ch;
      else line.push(fg === undefined ? { text: ch } : { text: ch, fg });
    }
    lines.push(line);
  }
  const back = (v: number) => (log ? 10 ** v : v);
  return { lines, xMin, xMax, yMin: back(lo), yMax: back(hi) };
}

/** Calls `dot` for every pixel of the segment a–b (Bresenham). */
function segment(
  a: [number, number],
  b: [number, number],
  dot: (x: number, y: number) => void,
): void {
  let [x0, y0] = a;
  const [x1, y1] = b;
  const dx = Math.abs(x1 - x0);
  const dy = -Math.abs(y1 - y0);
  const sx = x0 < x1 ? 1 : -1;
  const sy = y0 < y1 ? 1 : -1;
  let err = dx + dy;
  while (true) {
    dot(x0, y0);
    if (x0 === x1 && y0 === y1) return;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

/** A number in at most `w` characters: 4 significant digits, exponent form when needed. */
export function short(v: number | undefined, w = 7): string {
  if (v === undefined || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  for (let p = 4; p >= 1; p--) {
    const t = Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0)
      ? v.toExponential(Math.max(0, p - 1)).replace("e+", "e")
      : String(Number(v.toPrecision(p)));
    if (t.length <= w) return t;
  }
  return v.toExponential(0).replace("e+", "e");
}

/**
 * A chart with a y axis (top, middle and bottom values, `axis` columns wide)
 * on the left and an x axis line (first and last x) below: `height + 1`
 * lines of `width` columns.
 */
export function withAxes(chart: Chart, opts: { axis?: number; xLabel?: string } = {}): Line[] {
  const axis = opts.axis ?? 7;
  const H = chart.lines.length;
  const mid = Math.floor((H - 1) / 2);
  const yAt = (r: number) => {
    if (Number.isNaN(chart.yMin)) return "";
    if (r === 0) return short(chart.yMax, axis - 1);
    if (r === H - 1) return short(chart.yMin, axis - 1);
    if (r === mid && H >= 5) {
      const logMid = chart.yMin > 0 && chart.yMax / chart.yMin > 20;
      return short(
        logMid ? Math.sqrt(chart.yMin * chart.yMax) : (chart.yMin + chart.yMax) / 2,
        axis - 1,
      );
    }
    return "";
  };
  const lines: Line[] = chart.lines.map((l, r) => [
    { text: fit(yAt(r), axis - 1, "right") + "│", dim: true },
    ...l,
  ]);
  const plotW = chart.lines[0] ? plain(chart.lines[0]).length : 0;
  const left = Number.isNaN(chart.xMin) ? "" : short(chart.xMin);
  const right = Number.isNaN(chart.xMax) ? "" : short(chart.xMax);
  const label = opts.xLabel ?? "";
  const inner = Math.max(0, plotW - left.length - right.length);
  const middle = fit(label ? ` ${label} ` : "", inner).trimEnd();
  const gap = Math.max(0, inner - width(middle));
  const xLine = left + " ".repeat(Math.floor(gap / 2)) + middle + " ".repeat(Math.ceil(gap / 2)) +
    right;
  lines.push([{ text: " ".repeat(axis - 1) + "└" + fit(xLine, plotW), dim: true }]);
  return lines;
}

const EIGHTHS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/** A horizontal bar of `value / max` of `width` columns in eighth blocks, padded to `width`. */
export function hbar(value: number, max: number, w: number): string {
  const frac = max > 0 && Number.isFinite(value) ? Math.max(0, Math.min(1, value / max)) : 0;
  const eighths = Math.round(frac * w * 8);
  const text = "█".repeat(Math.floor(eighths / 8)) + EIGHTHS[eighths % 8];
  return text + " ".repeat(w - width(text));
}

/** A progress bar of `w` columns: eighth blocks on a dim track. */
export function progressBar(frac: number, w: number, colour = 76): Line {
  const bar = hbar(frac, 1, w);
  const filled = bar.trimEnd();
  return [{ text: filled, fg: colour }, { text: "░".repeat(w - width(filled)), dim: true }];
}

/** The 256-colour index of a grey level 0–255 (the 24-step grey ramp, 232–255). */
export function grey(v: number): number {
  return 232 + Math.round(Math.max(0, Math.min(255, v)) / 255 * 23);
}

/** A greyscale raster: `width × height` levels 0–255, row-major. */
export interface GreyImage {
  /** Pixels per row. */
  width: number;
  /** Rows. */
  height: number;
  /** Levels 0–255. */
  data: Uint8Array;
}

/**
 * Box-averages `factor × factor` pixel blocks of an image starting at the
 * top-left corner, keeping at most `maxW × maxH` output pixels (the rest is
 * cropped).
 */
export function shrink(img: GreyImage, factor: number, maxW: number, maxH: number): GreyImage {
  const w = Math.min(maxW, Math.floor(img.width / factor));
  const h = Math.min(maxH, Math.floor(img.height / factor));
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let dy = 0; dy < factor; dy++) {
        for (let dx = 0; dx < factor; dx++) {
          s += img.data[(y * factor + dy) * img.width + x * factor + dx];
        }
      }
      data[y * w + x] = Math.round(s / (factor * factor));
    }
  }
  return { width: w, height: h, data };
}

/**
 * An image in half blocks: each character is "▀" with the upper pixel as
 * foreground and the lower one as background, so `height` pixels take
 * `ceil(height / 2)` lines (an odd last row has a black lower half).
 */
export function halfBlock(img: GreyImage): Line[] {
  const lines: Line[] = [];
  for (let y = 0; y < img.height; y += 2) {
    const line: Line = [];
    for (let x = 0; x < img.width; x++) {
      const top = img.data[y * img.width + x];
      const bottom = y + 1 < img.height ? img.data[(y + 1) * img.width + x] : 0;
      line.push({ text: "▀", fg: grey(top), bg: grey(bottom) });
    }
    lines.push(line);
  }
  return lines;
}

/** Density shades, from empty to full. */
export const SHADES = [" ", "░", "▒", "▓", "█"];

/** Plot bounds of 2-D points. */
export interface Box {
  /** Smallest x. */
  x0: number;
  /** Largest x. */
  x1: number;
  /** Smallest y. */
  y0: number;
  /** Largest y. */
  y1: number;
}

/** Bounds of interleaved (x, y) points, widened by `margin` of their span on each side. */
export function boxOf(points: ArrayLike<number>, margin = 0.05): Box {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = points[i], y = points[i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  if (!Number.isFinite(x0)) return { x0: -1, x1: 1, y0: -1, y1: 1 };
  const mx = (x1 - x0) * margin || 1;
  const my = (y1 - y0) * margin || 1;
  return { x0: x0 - mx, x1: x1 + mx, y0: y0 - my, y1: y1 + my };
}

/** Counts of interleaved (x, y) points per cell of a `cols × rows` grid over `box` (row 0 at the top). */
export function bin2d(points: ArrayLike<number>, box: Box, cols: number, rows: number): number[] {
  const counts = new Array(cols * rows).fill(0);
  for (let i = 0; i + 1 < points.length; i += 2) {
    const c = Math.floor((points[i] - box.x0) / (box.x1 - box.x0) * cols);
    const r = Math.floor((box.y1 - points[i + 1]) / (box.y1 - box.y0) * rows);
    if (c >= 0 && c < cols && r >= 0 && r < rows) counts[r * cols + c]++;
  }
  return counts;
}

/**
 * Samples as a density over the data: a cell's shade (" ░▒▓█") is its
 * sample count relative to the fullest cell, in red; a cell with no sample
 * where the real data lies shows a grey "·". Bounds come from the real data
 * when given.
 */
export function densityPlot(
  samples: ArrayLike<number>,
  real: ArrayLike<number> | undefined,
  cols: number,
  rows: number,
): Line[] {
  const box = boxOf(real && real.length ? real : samples);
  const s = bin2d(samples, box, cols, rows);
  const d = real ? bin2d(real, box, cols, rows) : new Array(cols * rows).fill(0);
  const max = Math.max(1, ...s);
  const lines: Line[] = [];
  for (let r = 0; r < rows; r++) {
    const line: Line = [];
    for (let c = 0; c < cols; c++) {
      const n = s[r * cols + c];
      const span: Span = n > 0
        ? { text: SHADES[Math.max(1, Math.ceil(n / max * 4))], fg: 203 }
        : d[r * cols + c] > 0
        ? { text: "·", fg: 244 }
        : { text: " " };
      const last = line.at(-1);
      if (last && last.fg === span.fg) last.text += span.text;
      else line.push(span);
    }
    lines.push(line);
  }
  return lines;
}

/** Counts of `values` in `bins` equal bins over [lo, hi] (values at hi go in the last bin). */
export function histogram(
  values: ArrayLike<number>,
  lo: number,
  hi: number,
  bins: number,
): number[] {
  const counts = new Array(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v) || v < lo || v > hi) continue;
    const b = hi > lo ? Math.min(bins - 1, Math.floor((v - lo) / (hi - lo) * bins)) : 0;
    counts[b]++;
  }
  return counts;
}

const TICKS = "▁▂▃▄▅▆▇█";

/** Counts (or frequencies) as a sparkline: "▁"…"█" relative to `max`, a space for zero. */
export function sparkline(counts: number[], max = Math.max(...counts)): string {
  return counts.map((c) =>
    c <= 0 || max <= 0 ? " " : TICKS[Math.min(7, Math.max(0, Math.ceil(c / max * 8) - 1))]
  ).join("");
}

const SCALE = [46, 82, 118, 154, 190, 226, 220, 214, 208, 202, 196];

/** A colour from green (t = 0, best) through yellow to red (t = 1, worst). */
export function scaleColour(t: number): number {
  const k = Math.round(Math.max(0, Math.min(1, Number.isFinite(t) ? t : 1)) * (SCALE.length - 1));
  return SCALE[k];
}

/** Compact duration: "42s", "3m05s", "2h07m", "3d04h"; "—" when unknown. */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, "0")}h`;
}
