/**
 * One flat configuration for a run: the trainer's keys (below) and the
 * model's own keys, set with `--set key=value` or an experiment file. Values
 * are checked against the defaults' types, choices are checked, and an
 * unknown key is refused with the nearest valid one suggested.
 */
import { didYouMean } from "../runtime/text.ts";
import type { ConfigValue, KeySpec, RunConfig } from "./model.ts";

/** The trainer's configuration keys with their defaults. */
export const TRAINER_KEYS: Record<string, KeySpec> = {
  steps: { default: 2000, help: "training steps" },
  seed: { default: 0, help: "seed of initialisation, batches, timesteps and noise" },
  lr: { default: 1e-3, help: "peak learning rate" },
  optimizer: { default: "adam", help: "optimizer", choices: ["adam", "adamw"] },
  weight_decay: { default: 0.01, help: "AdamW's decoupled weight decay" },
  warmup: { default: 0, help: "linear learning-rate warmup steps" },
  decay: {
    default: "none",
    help: "learning-rate decay after warmup",
    choices: ["none", "cosine", "linear"],
  },
  min_lr: { default: 0, help: "learning rate at the end of the decay" },
  grad_clip: { default: 1, help: "clip the global gradient norm to this (0 = off)" },
  ema: { default: [0.999], help: "EMA decays tracked in the run, e.g. [0.999,0.9999]" },
  ema_warmup: {
    default: true,
    help: "EMA warmup: decay = min(d, 1 - (1 + step/ema_gamma)^-ema_power)",
  },
  ema_gamma: { default: 1, help: "γ of the EMA warmup" },
  ema_power: { default: 2 / 3, help: "p of the EMA warmup" },
  log_every: { default: 50, help: "steps between loss reports" },
  bands: { default: 4, help: "timestep bands in the loss report (1 to 20)" },
  checkpoint_every: { default: 500, help: "steps between checkpoints" },
  checkpoint_at: { default: [], help: "extra steps to checkpoint and keep, e.g. [1000,2000]" },
  keep_checkpoints: {
    default: 2,
    help: "periodic checkpoints kept (checkpoint_at ones are always kept)",
  },
};

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
  const out: RunConfig = {};
  for (const [k, spec] of Object.entries(keys)) out[k] = spec.default;
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
    out[k] = value;
  }
  const bands = out.bands as number;
  if (!Number.isInteger(bands) || bands < 1 || bands > 20) {
    throw new Error(`${where}: bands must be 1 to 20`);
  }
  return out;
}
