/**
 * One flat configuration for a run: the trainer's keys (below) and the
 * model's own keys, set with `--set key=value` or an experiment file. Values
 * are checked against the defaults' types, choices are checked, and an
 * unknown key is refused with the nearest valid one suggested.
 */
import { didYouMean } from "../runtime/text.ts";
import type { ConfigValue, KeySpec, NumberRange, RunConfig } from "./model.ts";

/** An integer ≥ 1 (steps, sizes, counts). */
export const COUNT: NumberRange = { int: true, min: 1 };
/** An integer ≥ 0 (seeds; 0 = the default where the help says so). */
export const COUNT0: NumberRange = { int: true, min: 0 };
/** A number > 0. */
export const POSITIVE: NumberRange = { above: 0 };
/** A number ≥ 0. */
export const NONNEG: NumberRange = { min: 0 };
/** A number in (0, 1): decays, fractions that cannot be 0 or 1. */
export const OPEN_UNIT: NumberRange = { above: 0, below: 1 };
/** UNet widths: GroupNorm's 8 groups must divide them. */
export const CHANNELS: NumberRange = { int: true, min: 8, multipleOf: 8 };

/** "an integer ≥ 1", "a number in (0, 1)", … for help and error messages. */
export function describeRange(r: NumberRange): string {
  const parts: string[] = [];
  const lo = r.above !== undefined ? `(${r.above}` : r.min !== undefined ? `[${r.min}` : undefined;
  const hi = r.below !== undefined ? `${r.below})` : r.max !== undefined ? `${r.max}]` : undefined;
  if (lo && hi) parts.push(`in ${lo}, ${hi}`);
  else if (lo) parts.push(r.above !== undefined ? `> ${r.above}` : `≥ ${r.min}`);
  else if (hi) parts.push(r.below !== undefined ? `< ${r.below}` : `≤ ${r.max}`);
  if (r.multipleOf) parts.push(`a multiple of ${r.multipleOf}`);
  return `${r.int ? "an integer" : "a number"}${parts.length ? " " + parts.join(", ") : ""}`;
}

/** Whether `v` is a finite number that `r` accepts. */
export function inRange(v: number, r: NumberRange = {}): boolean {
  return Number.isFinite(v) &&
    (!r.int || Number.isInteger(v)) &&
    (r.multipleOf === undefined || v % r.multipleOf === 0) &&
    (r.min === undefined || v >= r.min) &&
    (r.max === undefined || v <= r.max) &&
    (r.above === undefined || v > r.above) &&
    (r.below === undefined || v < r.below);
}

/** The trainer's configuration keys with their defaults. */
export const TRAINER_KEYS = {
  steps: { default: 2000, help: "training steps", range: COUNT },
  seed: { default: 0, help: "seed of initialisation, batches, timesteps and noise", range: COUNT0 },
  lr: {
    default: 1e-3,
    help: "peak learning rate (0 leaves the weights as initialised)",
    range: NONNEG,
  },
  optimizer: { default: "adam", help: "optimizer", choices: ["adam", "adamw"] },
  weight_decay: { default: 0.01, help: "AdamW's decoupled weight decay", range: NONNEG },
  warmup: { default: 0, help: "linear learning-rate warmup steps", range: COUNT0 },
  decay: {
    default: "none",
    help: "learning-rate decay after warmup",
    choices: ["none", "cosine", "linear"],
  },
  min_lr: { default: 0, help: "learning rate at the end of the decay", range: NONNEG },
  grad_clip: { default: 1, help: "clip the global gradient norm to this (0 = off)", range: NONNEG },
  ema: {
    default: [0.999],
    help: "EMA decays tracked in the run, e.g. [0.999,0.9999]",
    range: OPEN_UNIT,
  },
  ema_warmup: {
    default: true,
    help: "EMA warmup: decay = min(d, 1 - (1 + step/ema_gamma)^-ema_power)",
  },
  ema_gamma: { default: 1, help: "γ of the EMA warmup", range: POSITIVE },
  ema_power: { default: 2 / 3, help: "p of the EMA warmup", range: POSITIVE },
  log_every: { default: 50, help: "steps between loss reports", range: COUNT },
  bands: {
    default: 4,
    help: "timestep bands in the loss report",
    range: { int: true, min: 1, max: 20 },
  },
  checkpoint_every: { default: 500, help: "steps between checkpoints", range: COUNT },
  checkpoint_at: {
    default: [],
    help: "extra steps to checkpoint and keep, e.g. [1000,2000]",
    range: COUNT,
  },
  keep_checkpoints: {
    default: 2,
    help: "periodic checkpoints kept (checkpoint_at ones are always kept)",
    range: COUNT,
  },
} as const satisfies Record<string, KeySpec>;

/**
 * The value a key holds once resolved: one of its choices, else the type of
 * its default (widened: `1000` → number, `[0.999]` → number[]).
 */
export type ValueOf<S extends KeySpec> = S["choices"] extends readonly (infer C)[] ? C
  : S["default"] extends number ? number
  : S["default"] extends boolean ? boolean
  : S["default"] extends string ? string
  : S["default"] extends readonly number[] ? number[]
  : S["default"] extends readonly string[] ? string[]
  : ConfigValue;

/** The typed configuration a key record describes (as nanoGPT's `GPTConfig` does for its fields). */
export type ConfigOf<K extends Record<string, KeySpec>> = {
  readonly [k in keyof K]: ValueOf<K[k]>;
};

/** The trainer's keys, typed. */
export type TrainerConfig = ConfigOf<typeof TRAINER_KEYS>;

/**
 * A resolved configuration ({@link resolveConfig} checked every value
 * against its key's type, choices and range) read through its keys' types,
 * plus the run's model and data names.
 */
export type TypedConfig<K extends Record<string, KeySpec>> =
  & ConfigOf<K>
  & TrainerConfig
  & { readonly model: string; readonly data: string };

/**
 * Views a resolved configuration through its key records' types. Nothing is
 * copied or re-checked: {@link resolveConfig} has already done that, and
 * this is the one place the record's values are asserted to those types.
 */
export function typedConfig<K extends Record<string, KeySpec>>(
  _keys: K,
  config: RunConfig,
): TypedConfig<K> {
  return config as unknown as TypedConfig<K>;
}

/**
 * Parses a `--set` value: JSON when it parses (numbers, booleans, arrays),
 * otherwise the bare string.
 */
export function parseValue(text: string): ConfigValue {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Splits `key=value` pairs into a record, naming any malformed one. */
export function parseSets(sets: string[]): RunConfig {
  const out: RunConfig = {};
  for (const s of sets) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new Error(`--set ${s}: expected key=value`);
    out[s.slice(0, eq).trim()] = parseValue(s.slice(eq + 1).trim());
  }
  return out;
}

function typeName(v: ConfigValue): string {
  return Array.isArray(v) ? "array" : typeof v;
}

/** Each key's default value. */
export function defaultsOf(keys: Record<string, KeySpec>): RunConfig {
  return Object.fromEntries(Object.entries(keys).map(([k, spec]) => [k, spec.default]));
}

/**
 * Resolves a configuration: defaults of the trainer and the model, then the
 * given values, each checked. `where` prefixes messages (e.g. a file name).
 */
export function resolveConfig(
  modelKeys: Record<string, KeySpec>,
  given: RunConfig,
  where = "--set",
): RunConfig {
  const keys: Record<string, KeySpec> = { ...TRAINER_KEYS, ...modelKeys };
  const out = defaultsOf(keys);
  for (const [k, v] of Object.entries(given)) {
    const spec = keys[k];
    if (!spec) throw new Error(`${where}: unknown key "${k}"${didYouMean(k, Object.keys(keys))}`);
    const want = typeName(spec.default);
    let value = v;
    if (want === "array" && typeof v === "number") value = [v];
    if (want === "string" && typeof v === "number") value = String(v);
    if (typeName(value) !== want) {
      throw new Error(`${where}: ${k} must be a ${want} (${spec.help}), got ${JSON.stringify(v)}`);
    }
    if (spec.choices && !spec.choices.includes(value as string)) {
      throw new Error(
        `${where}: ${k} must be one of ${spec.choices.join(", ")}, got "${value}"${
          didYouMean(String(value), spec.choices)
        }`,
      );
    }
    const numbers = typeof value === "number" ? [value] : Array.isArray(value) ? value : [];
    const bad = numbers.find((n) => typeof n === "number" && !inRange(n, spec.range));
    if (bad !== undefined) {
      const what = describeRange(spec.range ?? {});
      throw new Error(
        `${where}: ${k} must be ${
          Array.isArray(value) ? `a list, each ${what}` : what
        } (${spec.help}), got ${JSON.stringify(v)}`,
      );
    }
    out[k] = value;
  }
  return out;
}
