/**
 * The datasets by name: MNIST, the 2-D toy sets, the built-in tables, or a
 * path to a CSV file. {@link describeDataset} says what kind a name is
 * without loading anything big.
 */
import * as fs from "node:fs";
import { didYouMean } from "../runtime/text.ts";
import { BUILTIN_TABLES, type BuiltinTable, isBuiltinTable } from "./tabular.ts";
import { isToy, TOY_DATASETS, type ToyName } from "./toy2d.ts";

/** Every dataset name (besides CSV paths). */
export const DATASETS: readonly string[] = ["mnist", ...TOY_DATASETS, ...BUILTIN_TABLES];

/** What a dataset name stands for. */
export type DatasetInfo =
  | {
    /** MNIST digits. */
    kind: "image";
    name: "mnist";
    /** Image height in pixels. */
    height: 28;
    /** Image width in pixels. */
    width: 28;
    /** Channels. */
    channels: 1;
    /** Number of classes. */
    classes: 10;
    /** Images in the training and test splits. */
    sizes: { train: 60000; test: 10000 };
  }
  | {
    /** A 2-D toy distribution (sampled, unlimited). */
    kind: "points";
    name: ToyName;
    /** Point dimension. */
    dim: 2;
  }
  | {
    /** A table: built-in (`source: "builtin"`) or a CSV file (`source: "csv"`, `path`). */
    kind: "table";
    name: string;
    source: "builtin" | "csv";
    /** The CSV path (CSV tables only). */
    path?: string;
  };

/**
 * Describes a dataset: "mnist", a toy name ({@link TOY_DATASETS}), a built-in
 * table ({@link BUILTIN_TABLES}) or a path ending in .csv (which must exist).
 * Anything else is an error listing the valid names.
 */
export function describeDataset(name: string): DatasetInfo {
  if (name === "mnist") {
    return {
      kind: "image",
      name: "mnist",
      height: 28,
      width: 28,
      channels: 1,
      classes: 10,
      sizes: { train: 60000, test: 10000 },
    };
  }
  if (isToy(name)) return { kind: "points", name, dim: 2 };
  if (isBuiltinTable(name)) return { kind: "table", name: name as BuiltinTable, source: "builtin" };
  if (name.toLowerCase().endsWith(".csv")) {
    if (!fs.existsSync(name)) throw new Error(`${name}: no such CSV file`);
    return { kind: "table", name, source: "csv", path: name };
  }
  throw new Error(
    `unknown dataset "${name}"${didYouMean(name, DATASETS)}; choose from ${
      DATASETS.join(", ")
    }, or a path ending in .csv`,
  );
}
