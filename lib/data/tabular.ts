/**
 * Tables for tabular diffusion: CSV files (parsed strictly with csv-parse)
 * or the built-in tables of the npm package `vega-datasets`, with column
 * type inference, an explicit blank-cell policy, seeded row splits and CSV
 * writing. The quantile transform to N(0, 1) (TabDDPM's numeric
 * preprocessing) is in `quantile.ts`.
 *
 * A table holds plain typed arrays: numeric and integer columns as
 * Float64Array, categorical and boolean ones as Int32Array category codes.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";

/** How a column is read: floats, integers, labels, or true/false/yes/no. */
export type ColumnType = "numeric" | "integer" | "categorical" | "boolean";

/** Every column type, for validation and messages. */
export const COLUMN_TYPES: readonly ColumnType[] = ["numeric", "integer", "categorical", "boolean"];

/** What to do with blank cells in numeric and integer columns. */
export type NumericBlankPolicy = "drop-row" | "mean";

/**
 * Non-numeric cells in a column that is otherwise numbers (at least 90% of
 * its non-blank cells): an error naming them (the default), blank cells
 * (then the blank policy applies), or the whole column categorical.
 */
export type NonNumericPolicy = "error" | "blank" | "categorical";

/** The policies {@link NonNumericPolicy} allows. */
export const NON_NUMERIC_POLICIES: readonly NonNumericPolicy[] = ["error", "blank", "categorical"];

/** The category that blank cells of categorical and boolean columns become. */
export const MISSING = "__missing__";

/** The built-in tables (from `vega-datasets`). */
export const BUILTIN_TABLES = ["penguins", "seattle-weather", "cars"] as const;

/** A built-in table name. */
export type BuiltinTable = (typeof BUILTIN_TABLES)[number];

/** The vega-datasets file of each built-in table. */
const BUILTIN_FILES: Record<BuiltinTable, string> = {
  penguins: "penguins.json",
  "seattle-weather": "seattle-weather.csv",
  cars: "cars.json",
};

/** Cell texts (trimmed, case-insensitive) that count as blank. */
const BLANK_TEXTS = new Set(["", "na", "n/a", "nan", "null", "none"]);

/** Boolean spellings (case-insensitive). */
const TRUE_TEXTS = new Set(["true", "yes"]);
const FALSE_TEXTS = new Set(["false", "no"]);

/** A decimal or scientific number (what inference accepts as numeric). */
const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** One column's description. */
export interface ColumnSpec {
  /** The header name. */
  name: string;
  /** The (inferred or overridden) type. */
  type: ColumnType;
  /** Whether values are whole numbers (true for "integer" columns only). */
  integer: boolean;
  /**
   * Categorical and boolean columns: code i stands for `categories[i]`.
   * Categorical labels are sorted (code-unit order) with {@link MISSING} last
   * when present; boolean columns are `["false", "true"]` (+ {@link MISSING}).
   */
  categories?: string[];
  /** Numeric and integer columns: the smallest value kept. */
  min?: number;
  /** Numeric and integer columns: the largest value kept. */
  max?: number;
}

/** What happened to one column's blank cells. */
export interface BlankEntry {
  /** Column name. */
  column: string;
  /** Blank cells in the source (before any row was dropped). */
  blanks: number;
  /**
   * `drop-row`: their rows were dropped; `mean`: filled with the column mean
   * (rounded for integer columns); `category`: they became {@link MISSING}.
   */
  action: "drop-row" | "mean" | "category";
  /** For `mean`: the fill value. */
  fill?: number;
}

/** The blank-cell report of a load. */
export interface BlankReport {
  /** Columns that had blanks (columns without blanks are left out). */
  columns: BlankEntry[];
  /** Rows dropped for blank numeric cells. */
  droppedRows: number;
  /** Columns dropped for holding a single value (with `constantColumns: "drop"`). */
  droppedColumns: string[];
}

/** A loaded table. */
export interface Table {
  /** The built-in name, or the CSV path. */
  name: string;
  /** The kept columns in file order. */
  columns: ColumnSpec[];
  /** Number of rows kept. */
  rows: number;
  /** Numeric and integer columns by name: [rows]. */
  numeric: Record<string, Float64Array>;
  /** Categorical and boolean columns by name: [rows] codes into `categories`. */
  categorical: Record<string, Int32Array>;
  /** What was done with blank cells and constant columns. */
  blanks: BlankReport;
}

/** The smallest and largest of `values` (±Infinity when there are none). */
export function valueRange(values: ArrayLike<number>): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    if (values[i] < min) min = values[i];
    if (values[i] > max) max = values[i];
  }
  return { min, max };
}

/** Columns with `min`/`max` set from their numeric values (columns without values unchanged). */
export function withRanges(
  columns: ColumnSpec[],
  numeric: Map<string, ArrayLike<number>>,
): ColumnSpec[] {
  return columns.map((c) => {
    const v = numeric.get(c.name);
    return !v || v.length === 0 ? { ...c } : { ...c, ...valueRange(v) };
  });
}

/** Options of {@link loadTable}. */
export interface LoadTableOptions {
  /** Column types that replace the inferred ones; an unknown column is an error. @default {} */
  types?: Record<string, ColumnType>;
  /** Blank numeric/integer cells: drop their rows, or fill with the column mean. @default "drop-row" */
  blanks?: NumericBlankPolicy;
  /** A few non-numeric cells in a numeric column. @default "error" */
  nonNumeric?: NonNumericPolicy;
  /** A column holding a single value: an error naming it, or drop it silently (reported). @default "error" */
  constantColumns?: "error" | "drop";
  /** Columns to leave out before anything else; an unknown column is an error. @default [] */
  drop?: string[];
}

/** A cell as read from the source: CSV text, or a JSON value. */
type Cell = string | number | boolean | null | undefined;

/** Raw rows with where each came from (for messages). */
interface RawTable {
  name: string;
  header: string[];
  rows: Cell[][];
  /** Where row i is in the source, e.g. "line 12" or "record 4". */
  where: (i: number) => string;
}

/** The folder of the vega-datasets data files. */
function vegaDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("vega-datasets/package.json")), "data");
}

/** Whether a name is a built-in table. */
export function isBuiltinTable(name: string): name is BuiltinTable {
  return (BUILTIN_TABLES as readonly string[]).includes(name);
}

/** Parses CSV text strictly; errors give the path, line and column. */
function parseCsvText(text: string, path: string): RawTable {
  let parsed: { record: string[]; info: { lines: number } }[];
  try {
    parsed = parse(text, {
      info: true,
      bom: true,
      skip_empty_lines: true,
    }) as unknown as typeof parsed;
  } catch (e) {
    const err = e as Error & { code?: string; lines?: number; column?: unknown; index?: number };
    if (err.lines === undefined) throw new Error(`${path}: ${err.message}`);
    const col = typeof err.column === "number" ? err.column : err.index ?? 0;
    throw new Error(
      `${path}: malformed CSV at line ${err.lines}, column ${
        col + 1
      } (${err.code}): ${err.message}`,
    );
  }
  if (parsed.length === 0) throw new Error(`${path}: empty table (no header and no rows)`);
  const header = parsed[0].record;
  checkHeader(header, path);
  const rows = parsed.slice(1);
  return {
    name: path,
    header,
    rows: rows.map((r) => r.record),
    where: (i) => `${path}:${rows[i].info.lines}`,
  };
}

/** Header names must be non-empty and distinct. */
function checkHeader(header: string[], source: string): void {
  const seen = new Set<string>();
  header.forEach((h, j) => {
    if (h.trim() === "") throw new Error(`${source}: header column ${j + 1} has no name`);
    if (seen.has(h)) throw new Error(`${source}: header names column "${h}" twice`);
    seen.add(h);
  });
}

/** Reads a CSV file or a built-in table into raw rows. */
function readRaw(source: string): RawTable {
  if (isBuiltinTable(source)) {
    const path = join(vegaDir(), BUILTIN_FILES[source]);
    if (path.endsWith(".csv")) return { ...parseCsvText(readText(path), path), name: source };
    const records = JSON.parse(readText(path)) as Record<string, Cell>[];
    if (!Array.isArray(records) || records.length === 0) {
      throw new Error(`${path}: empty table (no records)`);
    }
    const header = Object.keys(records[0]);
    checkHeader(header, path);
    return {
      name: source,
      header,
      rows: records.map((r) => header.map((h) => (Object.hasOwn(r, h) ? r[h] : null))),
      where: (i) => `${path} record ${i + 1}`,
    };
  }
  return parseCsvText(readText(source), source);
}

/** A file's UTF-8 text; a missing file is reported with its path. */
function readText(path: string): string {
  if (!fs.existsSync(path)) {
    const hint = path.endsWith(".csv")
      ? ""
      : ` (not a file; built-in tables: ${BUILTIN_TABLES.join(", ")})${
        didYouMean(path, BUILTIN_TABLES)
      }`;
    throw new Error(`${path}: no such file${hint}`);
  }
  return new TextDecoder("utf-8", { fatal: true }).decode(fs.readFileSync(path));
}

/** Whether a cell is blank (null, or a blank text). */
function isBlank(c: Cell): boolean {
  if (c === null || c === undefined) return true;
  if (typeof c === "number") return Number.isNaN(c);
  if (typeof c === "boolean") return false;
  return BLANK_TEXTS.has(c.trim().toLowerCase());
}

/** A cell as a number, or NaN when it is not one. */
function toNumber(c: Cell): number {
  if (typeof c === "number") return c;
  if (typeof c === "string" && NUMBER_RE.test(c.trim())) return Number(c.trim());
  return NaN;
}

/** A cell as a boolean, or undefined when it is not one. */
function toBoolean(c: Cell): boolean | undefined {
  if (typeof c === "boolean") return c;
  if (typeof c !== "string") return undefined;
  const s = c.trim().toLowerCase();
  return TRUE_TEXTS.has(s) ? true : FALSE_TEXTS.has(s) ? false : undefined;
}

/** Whether a numeric cell is written as a whole number ("3", 3; not "3.0" or "3e0"). */
function looksInteger(c: Cell): boolean {
  if (typeof c === "number") return Number.isInteger(c);
  return typeof c === "string" && /^[+-]?\d+$/.test(c.trim());
}

/** Infers a column's type from its non-blank cells. */
function inferType(cells: Cell[]): ColumnType {
  const present = cells.filter((c) => !isBlank(c));
  if (present.length === 0) return "categorical";
  if (present.every((c) => toBoolean(c) !== undefined)) return "boolean";
  if (present.every((c) => Number.isFinite(toNumber(c)))) {
    return present.every(looksInteger) ? "integer" : "numeric";
  }
  return "categorical";
}

/**
 * The rows whose cells are not numbers in a column that is otherwise numbers
 * (at least 90% of at least 5 non-blank cells); none for any other column.
 */
function straysOf(cells: Cell[]): number[] {
  const present = cells.map((c, i) => ({ c, i })).filter(({ c }) => !isBlank(c));
  const strays = present.filter(({ c }) => !Number.isFinite(toNumber(c))).map(({ i }) => i);
  const numbers = present.length - strays.length;
  return present.length >= 5 && strays.length > 0 && numbers >= 0.9 * present.length ? strays : [];
}

/** A cell's label text for categorical columns. */
function label(c: Cell): string {
  return typeof c === "string" ? c : String(c);
}

/**
 * Loads a table: a built-in name ({@link BUILTIN_TABLES}) or a CSV path
 * (UTF-8, header row first, parsed strictly). Types are inferred per column
 * from the non-blank cells — boolean when all are true/false/yes/no
 * (case-insensitive), integer when all are whole numbers written without a
 * point or exponent, numeric when all are numbers, categorical otherwise —
 * and `options.types` overrides them.
 *
 * Blank cells ("", NA, N/A, NaN, null, None; JSON null): categorical and
 * boolean columns give them the category {@link MISSING}; numeric and
 * integer columns follow `options.blanks`. The returned `blanks` report says
 * how many each column had and what was done.
 *
 * Errors name the source: a missing file, malformed CSV (line and column),
 * an empty table, a cell that does not fit an overridden type (line and
 * column name), a column with a single value, an unknown column in `types`
 * or `drop`.
 */
export function loadTable(source: string, options: LoadTableOptions = {}): Table {
  const raw = readRaw(source);
  return buildTable(raw, options);
}

/** Types, blanks, codes and ranges from raw rows. */
function buildTable(raw: RawTable, options: LoadTableOptions): Table {
  const { name, header, rows, where } = raw;
  const policy = options.blanks ?? "drop-row";
  if (policy !== "drop-row" && policy !== "mean") {
    throw new Error(`${name}: blank policy "${policy}" is not "drop-row" or "mean"`);
  }
  const constantPolicy = options.constantColumns ?? "error";
  const types = options.types ?? {};
  for (const col of [...Object.keys(types), ...(options.drop ?? [])]) {
    if (!header.includes(col)) {
      throw new Error(
        `${name}: no column "${col}"${didYouMean(col, header)}; columns: ${header.join(", ")}`,
      );
    }
  }
  for (const [col, t] of Object.entries(types)) {
    if (!COLUMN_TYPES.includes(t)) {
      throw new Error(
        `${name}: column "${col}": type "${t}" is not one of ${COLUMN_TYPES.join(", ")}`,
      );
    }
  }
  if (rows.length === 0) throw new Error(`${name}: empty table (a header but no rows)`);

  const kept = header.map((h, j) => ({ h, j })).filter(({ h }) =>
    !(options.drop ?? []).includes(h)
  );
  const cellsOf = (j: number) => rows.map((r) => r[j]);
  const nonNumeric = options.nonNumeric ?? "error";
  const plans = kept.map(({ h, j }) => {
    const cells = cellsOf(j);
    let type = Object.hasOwn(types, h) ? types[h] : inferType(cells);
    const blank = cells.map(isBlank);
    const strays = type === "categorical" && !Object.hasOwn(types, h) ? straysOf(cells) : [];
    if (strays.length > 0 && nonNumeric === "error") {
      const shown = strays.slice(0, 5).map((i) => `${where(i)} ${JSON.stringify(cells[i])}`);
      throw new Error(
        `${name}: column "${h}" (column ${j + 1}) is numbers but for ${strays.length} cell${
          strays.length > 1 ? "s" : ""
        }: ${shown.join(", ")}${strays.length > 5 ? ", …" : ""}. Treat them as blank ` +
          `(--set non_numeric=blank) or make the column categorical (non_numeric=categorical)`,
      );
    }
    if (strays.length > 0 && nonNumeric === "blank") {
      for (const i of strays) blank[i] = true;
      type = inferType(cells.map((c, i) => (blank[i] ? "" : c)));
    }
    return { name: h, type, cells, blank, blanks: blank.filter(Boolean).length };
  });

  // Numeric parsing (errors point at the cell), then rows to drop.
  const values = new Map<string, Float64Array>();
  const dropRow = new Uint8Array(rows.length);
  for (const p of plans) {
    if (p.type !== "numeric" && p.type !== "integer") continue;
    const v = new Float64Array(rows.length);
    p.cells.forEach((c, i) => {
      if (p.blank[i]) {
        v[i] = NaN;
        if (policy === "drop-row") dropRow[i] = 1;
        return;
      }
      const x = toNumber(c);
      if (!Number.isFinite(x) || (p.type === "integer" && !Number.isInteger(x))) {
        throw new Error(
          `${where(i)}: column "${p.name}": ${JSON.stringify(c)} is not ${
            p.type === "integer" ? "an integer" : "a number"
          }`,
        );
      }
      v[i] = x;
    });
    values.set(p.name, v);
  }
  const keepIdx: number[] = [];
  for (let i = 0; i < rows.length; i++) if (!dropRow[i]) keepIdx.push(i);
  if (keepIdx.length === 0) {
    throw new Error(`${name}: every one of the ${rows.length} rows has a blank numeric cell`);
  }

  const columns: ColumnSpec[] = [];
  // Entries, made into objects at the end: a column may be called "__proto__".
  const numeric: [string, Float64Array][] = [];
  const categorical: [string, Int32Array][] = [];
  const report: BlankReport = {
    columns: [],
    droppedRows: rows.length - keepIdx.length,
    droppedColumns: [],
  };
  const n = keepIdx.length;
  for (const p of plans) {
    let spec: ColumnSpec;
    let distinct: number;
    let example: string;
    if (p.type === "numeric" || p.type === "integer") {
      const src = values.get(p.name)!;
      const out = new Float64Array(n);
      let sum = 0;
      let count = 0;
      keepIdx.forEach((i, k) => {
        out[k] = src[i];
        if (!Number.isNaN(src[i])) [sum, count] = [sum + src[i], count + 1];
      });
      if (count === 0) throw new Error(`${name}: column "${p.name}" has only blank cells`);
      if (p.blanks > 0) {
        if (policy === "mean") {
          const fill = p.type === "integer" ? Math.round(sum / count) : sum / count;
          for (let k = 0; k < n; k++) if (Number.isNaN(out[k])) out[k] = fill;
          report.columns.push({ column: p.name, blanks: p.blanks, action: "mean", fill });
        } else report.columns.push({ column: p.name, blanks: p.blanks, action: "drop-row" });
      }
      const { min, max } = valueRange(out);
      distinct = new Set(out).size;
      example = String(out[0]);
      spec = { name: p.name, type: p.type, integer: p.type === "integer", min, max };
      numeric.push([p.name, out]);
    } else {
      const labels = keepIdx.map((i) => {
        if (p.blank[i]) return MISSING;
        if (p.type === "categorical") return label(p.cells[i]);
        const b = toBoolean(p.cells[i]);
        if (b === undefined) {
          throw new Error(
            `${where(i)}: column "${p.name}": ${
              JSON.stringify(p.cells[i])
            } is not a boolean (true/false/yes/no)`,
          );
        }
        return String(b);
      });
      const present = [...new Set(labels)].filter((l) => l !== MISSING);
      const categories = p.type === "boolean" ? ["false", "true"] : present.sort();
      if (labels.includes(MISSING)) categories.push(MISSING);
      const code = new Map(categories.map((c, k) => [c, k]));
      categorical.push([p.name, Int32Array.from(labels, (l) => code.get(l)!)]);
      const blanksKept = p.blanks > 0 && keepIdx.some((i) => p.blank[i]);
      if (p.blanks > 0) {
        report.columns.push({ column: p.name, blanks: p.blanks, action: "category" });
      }
      distinct = present.length + (blanksKept ? 1 : 0);
      example = labels[0];
      spec = { name: p.name, type: p.type, integer: false, categories };
    }
    if (distinct <= 1) {
      if (constantPolicy === "drop") {
        report.droppedColumns.push(p.name);
        if (spec.categories) categorical.pop();
        else numeric.pop();
        continue;
      }
      throw new Error(
        `${name}: column "${p.name}" holds a single value (${
          JSON.stringify(example)
        }) in all ${n} rows; leave it out (drop) or load with constantColumns: "drop"`,
      );
    }
    columns.push(spec);
  }
  if (columns.length === 0) throw new Error(`${name}: no columns left`);
  return {
    name,
    columns,
    rows: n,
    numeric: Object.fromEntries(numeric),
    categorical: Object.fromEntries(categorical),
    blanks: report,
  };
}

/** A value in a record from {@link tableToRecords}. */
export type RecordValue = string | number | boolean | null;

/** Options of {@link tableToRecords}. */
export interface ToRecordsOptions {
  /** Which rows, in order. @default every row */
  rows?: ArrayLike<number>;
  /** {@link MISSING} cells become `null` (true) or keep the label (false). @default true */
  missingAsNull?: boolean;
}

/**
 * Rows back as records keyed by column name in column order: numeric values
 * as numbers (integer columns rounded to integers), categorical codes as
 * their labels, boolean codes as `true`/`false`. Works on any arrays shaped
 * like the table's (e.g. decoded samples), given as `table`'s fields.
 */
export function tableToRecords(
  table: Pick<Table, "columns" | "numeric" | "categorical" | "rows">,
  options: ToRecordsOptions = {},
): Record<string, RecordValue>[] {
  const missingAsNull = options.missingAsNull ?? true;
  const idx = options.rows ?? Array.from({ length: table.rows }, (_, i) => i);
  const out: Record<string, RecordValue>[] = [];
  for (let k = 0; k < idx.length; k++) {
    const i = idx[k];
    if (!(i >= 0 && i < table.rows)) {
      throw new Error(`tableToRecords: row ${i} outside 0..${table.rows - 1}`);
    }
    const rec: [string, RecordValue][] = [];
    for (const c of table.columns) {
      if (c.categories) {
        const code = table.categorical[c.name][i];
        const lab = c.categories[code];
        if (lab === undefined) {
          throw new Error(
            `tableToRecords: column "${c.name}" row ${i}: code ${code} has no category`,
          );
        }
        const value = lab === MISSING
          ? (missingAsNull ? null : lab)
          : c.type === "boolean"
          ? lab === "true"
          : lab;
        rec.push([c.name, value]);
      } else {
        const x = table.numeric[c.name][i];
        rec.push([c.name, c.integer ? Math.round(x) : x]);
      }
    }
    out.push(Object.fromEntries(rec));
  }
  return out;
}

/** Row indices of a table split in two by {@link splitRows}, each part in table order. */
export interface RowSplit {
  /** Rows to train on. */
  train: Int32Array;
  /** Rows held out (never trained on), for evaluation. */
  holdout: Int32Array;
}

/**
 * A seeded split of `n` rows: `round(n · holdout)` rows drawn without
 * replacement are held out, the rest are for training. The same
 * `(n, holdout, seed)` always gives the same split.
 */
export function splitRows(n: number, holdout: number, seed: number): RowSplit {
  if (!(holdout >= 0 && holdout < 1)) {
    throw new Error(`splitRows: holdout must be a fraction in [0, 1), got ${holdout}`);
  }
  const m = Math.round(n * holdout);
  if (n - m < 1) {
    throw new Error(`splitRows: holding out ${m} of ${n} rows leaves none to train on`);
  }
  const perm = new Rng(seed).permutation(n);
  return { train: perm.slice(m).sort(), holdout: perm.slice(0, m).sort() };
}

/**
 * Some rows of a table, in the given order, as a table with the same columns
 * and categories (so codes mean the same labels in both); the numeric
 * columns' `min`/`max` are those of the rows kept.
 */
export function selectRows(table: Table, rows: ArrayLike<number>): Table {
  for (let k = 0; k < rows.length; k++) {
    if (!(rows[k] >= 0 && rows[k] < table.rows)) {
      throw new Error(`${table.name}: row ${rows[k]} outside 0..${table.rows - 1}`);
    }
  }
  const take = <T extends Float64Array | Int32Array>(v: T): T => {
    const out = new (v.constructor as new (n: number) => T)(rows.length);
    for (let k = 0; k < rows.length; k++) out[k] = v[rows[k]];
    return out;
  };
  const numeric = new Map(Object.entries(table.numeric).map(([k, v]) => [k, take(v)]));
  const columns = withRanges(table.columns, numeric);
  return {
    name: table.name,
    columns,
    rows: rows.length,
    numeric: Object.fromEntries(numeric),
    categorical: Object.fromEntries(
      Object.entries(table.categorical).map(([k, v]) => [k, take(v)]),
    ),
    blanks: table.blanks,
  };
}

/**
 * Writes a CSV file (UTF-8, "\n" line ends): the header in the given order,
 * then the rows, either arrays in header order or records keyed by header
 * name. Fields with commas, quotes or line breaks are quoted (quotes
 * doubled); `null`/`undefined` become empty cells; booleans true/false.
 */
export function writeCsv(
  path: string,
  header: string[],
  rows: (RecordValue | undefined)[][] | Record<string, RecordValue | undefined>[],
): void {
  checkHeader(header, path);
  const arrays = rows.map((r, i) => {
    if (Array.isArray(r)) {
      if (r.length !== header.length) {
        throw new Error(
          `${path}: row ${i + 1} has ${r.length} fields, the header ${header.length}`,
        );
      }
      return r;
    }
    return header.map((h) => (Object.hasOwn(r, h) ? r[h] : null));
  });
  const text = stringify([header, ...arrays], {
    cast: { boolean: (b: boolean) => (b ? "true" : "false") },
    record_delimiter: "unix",
  });
  fs.writeFileSync(path, text, { encoding: "utf-8" });
}
