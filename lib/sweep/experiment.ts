/**
 * Experiment files: YAML in a superset of the Weights & Biases sweep format
 * (`method: grid|random`, `parameters` with `value`, `values` or
 * `distribution` + `min`/`max`, `metric: {name, goal}`, `run_cap`), whose
 * other keys give the base configuration. Validated on load: an unknown key
 * or a wrong type names the file and the key path and suggests the nearest
 * valid key; nothing is evaluated as code.
 */
import * as fs from "node:fs";
import { parse } from "yaml";
import {
  COUNT0,
  describeRange,
  inRange,
  NONNEG,
  resolveConfig,
  TRAINER_KEYS,
} from "../models/config.ts";
import { describeDataset } from "../data/registry.ts";
import type { ConfigValue, KeySpec, RunConfig } from "../models/model.ts";
import { MODELS } from "../models/registry.ts";
import { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";

/** Keys that only affect sampling or evaluation: they never cause another training run. */
export const EVAL_KEYS = {
  sampler: { default: "", help: "sampler (the model's default when empty)" },
  sample_steps: {
    default: 0,
    help: "sampling steps (the model's default when 0)",
    range: COUNT0,
  },
  ema_eval: {
    default: "",
    help: "weights to sample with: raw or an EMA decay (the largest tracked when empty)",
  },
  eta: { default: 0, help: "η of ddim and dpmpp2m_sde", range: NONNEG },
  churn: { default: 0, help: "EDM's S_churn for the euler and heun samplers", range: NONNEG },
  clip: {
    default: "",
    help: "x0 clipping: none, static, dynamic (the model's default when empty)",
  },
  guidance: { default: 0, help: "classifier-free guidance scale", range: NONNEG },
  guidance_rescale: {
    default: 0,
    help: "guidance rescale φ (Lin et al. 2023)",
    range: { min: 0, max: 1 },
  },
  n_eval: {
    default: 0,
    help: "samples per evaluation (the dataset's default when 0)",
    range: COUNT0,
  },
  metrics: {
    default: [] as string[],
    help: "metrics to compute (the dataset's default when empty)",
  },
  eval_seed: { default: 0, help: "seed of the evaluation's sampling", range: COUNT0 },
} as const satisfies Record<string, KeySpec>;

/** The sweep-level keys, beside the configuration keys. */
const META_KEYS = [
  "name",
  "description",
  "model",
  "data",
  "method",
  "parameters",
  "metric",
  "run_cap",
  "concurrency",
  "max_failures",
  "timeout",
  "early_terminate",
  "backend",
  "seed_sweep",
];

/** One parameter's search space. */
export type ParamSpace =
  | { values: ConfigValue[] }
  | { distribution: "uniform" | "log_uniform_values" | "int_uniform"; min: number; max: number };

/** A validated experiment. */
export interface Experiment {
  /** The file it came from. */
  file: string;
  /** Sweep name (the store key). @default the file name without .yaml */
  name: string;
  /** Free text. @default "" */
  description: string;
  /** Model of the zoo (ddpm, d3pm, tabddpm, …). */
  model: string;
  /** Dataset name or .csv path. */
  data: string;
  /** Grid (cartesian product) or random (run_cap draws). @default "grid" */
  method: "grid" | "random";
  /** Base configuration: trainer, model and evaluation keys given at the top level. */
  base: RunConfig;
  /** The swept parameters in file order. */
  parameters: Record<string, ParamSpace>;
  /** The metric compared across configurations. @default {name: "", goal: "minimize"} */
  metric: { name: string; goal: "minimize" | "maximize" };
  /** Random draws (method random). @default 10 */
  runCap: number;
  /** Jobs at a time; 0 = the number of cores. @default 0 */
  concurrency: number;
  /** Retries of a crashed or timed-out job. @default 1 */
  maxFailures: number;
  /** Per-job timeout in seconds; 0 = none. @default 0 */
  timeout: number;
  /** Seed of the random search's draws (method random). @default 0 */
  seedSweep: number;
  /**
   * Early termination of training jobs; both types run asynchronous
   * successive halving (ASHA) on the training loss at rungs min_iter·eta^k.
   * Absent = every job runs to the end.
   */
  earlyTerminate?: { type: "asha"; minIter: number; eta: number };
  /** Backend of the jobs. @default "auto" */
  backend: string;
}

function fail(file: string, path: string, msg: string): never {
  throw new Error(`${file}: ${path}: ${msg}`);
}

function configKeys(model: string): Record<string, KeySpec> {
  return { ...TRAINER_KEYS, ...MODELS[model].keys, ...EVAL_KEYS };
}

/** Checks one configuration value for `key`; `path` is its place in the file. */
function checkValue(
  file: string,
  model: string,
  key: string,
  value: unknown,
  path: string,
): ConfigValue {
  const keys = configKeys(model);
  const spec = keys[key];
  if (!spec) {
    fail(
      file,
      path,
      `unknown key "${key}"${didYouMean(key, [...Object.keys(keys), ...META_KEYS])}`,
    );
  }
  if (key === "ema_eval") {
    if (value === "raw") return value;
    const decay = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
    if (typeof decay === "number" && decay > 0 && decay < 1) return String(decay);
    fail(file, path, `must be "raw" or an EMA decay such as 0.999, got ${JSON.stringify(value)}`);
  }
  if (key === "metrics") {
    const list = typeof value === "string" ? [value] : value;
    if (!Array.isArray(list) || !list.every((v) => typeof v === "string")) {
      fail(file, path, `must be a metric name or a list of them, got ${JSON.stringify(value)}`);
    }
    return list as string[];
  }
  if (key in EVAL_KEYS) {
    const want = typeof spec.default;
    const got = typeof value;
    if (got !== want) {
      fail(file, path, `must be a ${want} (${spec.help}), got ${JSON.stringify(value)}`);
    }
    if (typeof value === "number" && !inRange(value, spec.range)) {
      fail(
        file,
        path,
        `must be ${describeRange(spec.range ?? {})} (${spec.help}), got ${JSON.stringify(value)}`,
      );
    }
    return value as ConfigValue;
  }
  try {
    return resolveConfig(
      MODELS[model].keys,
      { [key]: value as ConfigValue },
      `${file}: ${path}`,
    )[key];
  } catch (e) {
    throw new Error(
      (e as Error).message.replace(`${file}: ${path}: ${key} `, `${file}: ${path}: `),
    );
  }
}

function asObject(file: string, path: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    fail(file, path, `must be a mapping, got ${JSON.stringify(v)}`);
  }
  return v as Record<string, unknown>;
}

/** Fails on a key of `obj` not in `allowed`, suggesting the nearest one. */
function onlyKeys(file: string, path: string, obj: Record<string, unknown>, allowed: string[]) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(file, `${path}.${k}`, `unknown key${didYouMean(k, allowed)}`);
  }
}

function intAt(file: string, path: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    fail(file, path, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Parses and validates experiment text (`file` names it in messages). */
export function parseExperiment(text: string, file: string): Experiment {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid YAML: ${(e as Error).message}`);
  }
  const top = asObject(file, "(top level)", doc);
  const model = top.model;
  if (typeof model !== "string") {
    fail(file, "model", `is required (one of ${Object.keys(MODELS).join(", ")})`);
  }
  if (!MODELS[model]) {
    fail(file, "model", `unknown model "${model}"${didYouMean(model, Object.keys(MODELS))}`);
  }
  if (typeof top.data !== "string") {
    fail(file, "data", "is required (a dataset name or a .csv path)");
  }
  try {
    describeDataset(top.data);
  } catch (e) {
    fail(file, "data", (e as Error).message);
  }
  const method = top.method ?? "grid";
  if (method !== "grid" && method !== "random") {
    fail(file, "method", `must be grid or random, got ${JSON.stringify(method)}`);
  }

  const base: RunConfig = {};
  for (const [k, v] of Object.entries(top)) {
    if (META_KEYS.includes(k)) continue;
    base[k] = checkValue(file, model, k, v, k);
  }

  const parameters: Record<string, ParamSpace> = {};
  for (const [k, raw] of Object.entries(asObject(file, "parameters", top.parameters ?? {}))) {
    const path = `parameters.${k}`;
    const known = configKeys(model);
    if (!known[k]) fail(file, path, `unknown key "${k}"${didYouMean(k, Object.keys(known))}`);
    const p = asObject(file, path, raw);
    onlyKeys(file, path, p, ["value", "values", "distribution", "min", "max"]);
    if ("value" in p) {
      parameters[k] = { values: [checkValue(file, model, k, p.value, `${path}.value`)] };
    } else if ("values" in p) {
      if (!Array.isArray(p.values) || p.values.length === 0) {
        fail(file, `${path}.values`, "must be a non-empty list");
      }
      parameters[k] = {
        values: (p.values as unknown[]).map((v, i) =>
          checkValue(file, model, k, v, `${path}.values[${i}]`)
        ),
      };
    } else if ("distribution" in p) {
      const d = p.distribution;
      if (
        d !== "uniform" && d !== "log_uniform_values" && d !== "int_uniform" && d !== "categorical"
      ) {
        fail(
          file,
          `${path}.distribution`,
          `must be uniform, log_uniform_values, int_uniform or categorical, got ${
            JSON.stringify(d)
          }${
            didYouMean(String(d), ["uniform", "log_uniform_values", "int_uniform", "categorical"])
          }`,
        );
      }
      if (d === "categorical") {
        if (!Array.isArray(p.values) || p.values.length === 0) {
          fail(file, `${path}.values`, "a categorical distribution needs a non-empty list");
        }
        parameters[k] = {
          values: (p.values as unknown[]).map((v, i) =>
            checkValue(file, model, k, v, `${path}.values[${i}]`)
          ),
        };
        continue;
      }
      if (method === "grid") fail(file, path, "a distribution needs method: random");
      if (d !== "int_uniform" && configKeys(model)[k]?.range?.int) {
        fail(file, `${path}.distribution`, `${k} takes integers: use int_uniform, not ${d}`);
      }
      for (const end of ["min", "max"] as const) {
        const v = p[end];
        if (typeof v !== "number" || (d === "int_uniform" && !Number.isInteger(v))) {
          fail(
            file,
            `${path}.${end}`,
            `must be ${d === "int_uniform" ? "an integer" : "a number"}, got ${JSON.stringify(v)}`,
          );
        }
        checkValue(file, model, k, v, `${path}.${end}`);
      }
      const [min, max] = [p.min as number, p.max as number];
      if (min > max) fail(file, path, `min ${min} is above max ${max}`);
      if (d === "log_uniform_values" && min <= 0) {
        fail(file, `${path}.min`, "must be above 0 for log_uniform_values");
      }
      parameters[k] = { distribution: d, min, max };
    } else {
      fail(file, path, "needs value, values, or distribution");
    }
  }

  const metric = asObject(file, "metric", top.metric ?? { name: "", goal: "minimize" });
  onlyKeys(file, "metric", metric, ["name", "goal"]);
  if (typeof metric.name !== "string") fail(file, "metric.name", "must be a metric name");
  const goal = metric.goal ?? "minimize";
  if (goal !== "minimize" && goal !== "maximize") {
    fail(file, "metric.goal", "must be minimize or maximize");
  }
  let earlyTerminate: Experiment["earlyTerminate"];
  if (top.early_terminate !== undefined) {
    const et = asObject(file, "early_terminate", top.early_terminate);
    onlyKeys(file, "early_terminate", et, ["type", "min_iter", "eta"]);
    if (et.type === "hyperband") {
      fail(
        file,
        "early_terminate.type",
        "hyperband (several brackets of ASHA) is not implemented; asha is (one bracket)",
      );
    }
    if (et.type !== "asha") fail(file, "early_terminate.type", "must be asha");
    earlyTerminate = {
      type: et.type,
      minIter: intAt(file, "early_terminate.min_iter", et.min_iter ?? 500, 1),
      eta: intAt(file, "early_terminate.eta", et.eta ?? 3, 2),
    };
  }
  return {
    file,
    name: typeof top.name === "string"
      ? top.name
      : file.replace(/^.*\//, "").replace(/\.ya?ml$/, ""),
    description: typeof top.description === "string" ? top.description : "",
    model,
    data: top.data,
    method,
    base,
    parameters,
    metric: { name: metric.name, goal },
    runCap: top.run_cap === undefined ? 0 : intAt(file, "run_cap", top.run_cap, 1),
    concurrency: top.concurrency === undefined ? 0 : intAt(file, "concurrency", top.concurrency, 1),
    maxFailures: top.max_failures === undefined
      ? 1
      : intAt(file, "max_failures", top.max_failures, 0),
    timeout: top.timeout === undefined ? 0 : intAt(file, "timeout", top.timeout, 1),
    seedSweep: top.seed_sweep === undefined ? 0 : intAt(file, "seed_sweep", top.seed_sweep, 0),
    earlyTerminate,
    backend: typeof top.backend === "string" ? top.backend : "auto",
  };
}

/** Reads and validates an experiment file, naming the path when it is missing. */
export function loadExperiment(file: string): { experiment: Experiment; text: string } {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such experiment file`);
  const text = fs.readFileSync(file, "utf8");
  return { experiment: parseExperiment(text, file), text };
}

/**
 * The configurations of an experiment: the base merged with each point of
 * the grid (cartesian product in file order), or with `run_cap` random
 * draws from the generator seeded with `seed_sweep`.
 */
export function expandConfigs(e: Experiment): RunConfig[] {
  const names = Object.keys(e.parameters);
  if (e.method === "grid") {
    let out: RunConfig[] = [{}];
    for (const k of names) {
      const vals = (e.parameters[k] as { values: ConfigValue[] }).values;
      out = out.flatMap((c) => vals.map((v) => ({ ...c, [k]: v })));
    }
    return out.map((c) => ({ ...e.base, ...c }));
  }
  const rng = new Rng(e.seedSweep);
  return Array.from({ length: e.runCap || 10 }, () => {
    const c: RunConfig = { ...e.base };
    for (const k of names) {
      const p = e.parameters[k];
      if ("values" in p) {
        c[k] = p.values[rng.int(p.values.length)];
        continue;
      }
      const { min, max } = p;
      c[k] = p.distribution === "int_uniform"
        ? min + rng.int(max - min + 1)
        : p.distribution === "log_uniform_values"
        ? Math.exp(Math.log(min) + rng.uniform() * (Math.log(max) - Math.log(min)))
        : min + rng.uniform() * (max - min);
    }
    return c;
  });
}
