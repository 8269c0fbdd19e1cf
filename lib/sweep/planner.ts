/**
 * The planner: trains once, evaluates many.
 *
 * - Keys that only affect sampling or evaluation ({@link EVAL_KEYS}: sampler,
 *   sampling steps, which EMA samples, clipping, guidance, …) never cause
 *   another training run: configurations equal in every training key share
 *   one training job, which tracks every EMA decay any of them samples with.
 * - Configurations that differ only in `steps` share the training job with
 *   the most steps, which checkpoints at each requested step; each is
 *   evaluated from the checkpoint at its own step.
 */
import type { ConfigValue, RunConfig } from "../models/model.ts";
import { TRAINER_KEYS, type TypedConfig, typedConfig } from "../models/config.ts";
import { MODELS } from "../models/registry.ts";
import { EVAL_KEYS, expandConfigs, type Experiment } from "./experiment.ts";

/** A training job: one run directory. */
export interface TrainJob {
  /** Stable key (model-data-hash of the training keys), also the run directory's name. */
  key: string;
  /** Model of the zoo. */
  model: string;
  /** Dataset. */
  data: string;
  /** Everything passed as `--set` (steps and checkpoint_at included). */
  config: RunConfig;
}

/** An evaluation job: metrics of one checkpoint under one sampling setting. */
export interface EvalJob {
  /** Stable key (hash of the training job, step, settings and metrics). */
  key: string;
  /** Key of the training job it evaluates. */
  train: string;
  /** Checkpoint step. */
  checkpoint: number;
  /** Evaluation settings (the {@link EVAL_KEYS} that are set). */
  settings: RunConfig;
  /** Metrics to compute. */
  metrics: string[];
}

/** One configuration of the sweep and the jobs it maps to. */
export interface PlannedConfig {
  /** Position in the expansion. */
  idx: number;
  /** The full configuration. */
  params: RunConfig;
  /** Only the parameters that vary across the sweep. */
  varying: RunConfig;
  /** Key of the training job it uses. */
  trainKey: string;
  /** Key of its evaluation job. */
  evalKey: string;
}

/** A sweep's plan. */
export interface Plan {
  /** Every configuration. */
  configs: PlannedConfig[];
  /** The deduplicated training jobs. */
  train: TrainJob[];
  /** The evaluation jobs, one per distinct (training job, step, settings). */
  eval: EvalJob[];
  /** Training jobs a naive grid (one per configuration) would run. */
  naiveTrain: number;
  /** Grid points the model refuses (a sampler its objective does not take, …), with why. */
  skipped: { params: RunConfig; reason: string }[];
}

/** A stable short hash of a JSON-able value (keys sorted). */
export function stableKey(value: unknown): string {
  const text = JSON.stringify(sortKeys(value));
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 16777619) >>> 0;
    h2 = Math.imul(h2 ^ c, 2246822519) >>> 0;
  }
  return h1.toString(16).padStart(8, "0") + h2.toString(16).padStart(8, "0").slice(0, 4);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

/** Plans an experiment's jobs. */
export function planSweep(e: Experiment): Plan {
  const skipped: Plan["skipped"] = [];
  const configs = expandConfigs(e).filter((params) => {
    const reason = MODELS[e.model].applies?.(params);
    if (reason) skipped.push({ params, reason });
    return !reason;
  });
  if (configs.length === 0) {
    throw new Error(
      `${e.file}: model ${e.model} refuses every configuration: ${skipped[0].reason}`,
    );
  }
  const varyingKeys = Object.keys(e.parameters).filter((k) => {
    const seen = new Set(configs.map((c) => JSON.stringify(c[k])));
    return seen.size > 1;
  });
  const groups = new Map<string, { base: RunConfig; steps: Set<number>; ema: Set<number> }>();
  const planned: PlannedConfig[] = [];
  const evals = new Map<string, EvalJob>();
  configs.forEach((c, idx) => {
    const training: RunConfig = {};
    const settings: RunConfig = {};
    for (const [k, v] of Object.entries(c)) {
      if (k in EVAL_KEYS) settings[k] = v;
      else if (k !== "steps" && k !== "ema" && k !== "checkpoint_at") training[k] = v;
    }
    const given: Partial<TypedConfig<typeof EVAL_KEYS>> = typedConfig(EVAL_KEYS, c); // unset keys absent
    const steps = given.steps ?? TRAINER_KEYS.steps.default;
    const groupKey = `${e.model}-${e.data.replace(/[^\w.-]+/g, "_")}-${stableKey(training)}`;
    const g = groups.get(groupKey) ?? { base: training, steps: new Set(), ema: new Set() };
    g.steps.add(steps);
    for (const d of given.ema ?? TRAINER_KEYS.ema.default) g.ema.add(d);
    const emaEval = given.ema_eval;
    if (emaEval && emaEval !== "raw") g.ema.add(Number(emaEval));
    groups.set(groupKey, g);
    const metrics = [
      ...new Set([
        ...(e.metric.name ? [e.metric.name] : []),
        ...(given.metrics ?? []),
      ]),
    ];
    const evalSettings = Object.fromEntries(
      Object.entries(settings).filter(([k]) => k !== "metrics"),
    );
    const evalKey = `eval-${stableKey({ train: groupKey, steps, evalSettings, metrics })}`;
    if (!evals.has(evalKey)) {
      evals.set(evalKey, {
        key: evalKey,
        train: groupKey,
        checkpoint: steps,
        settings: evalSettings,
        metrics,
      });
    }
    const varying: RunConfig = {};
    for (const k of varyingKeys) varying[k] = c[k];
    planned.push({ idx, params: c, varying, trainKey: groupKey, evalKey });
  });
  const train: TrainJob[] = [...groups].map(([key, g]) => {
    const steps = [...g.steps].sort((a, b) => a - b);
    const max = steps.at(-1)!;
    const config: RunConfig = {
      ...g.base,
      steps: max,
      ema: [...g.ema].sort((a, b) => a - b),
    };
    if (steps.length > 1) config.checkpoint_at = steps.slice(0, -1);
    return { key, model: e.model, data: e.data, config };
  });
  return {
    configs: planned,
    train,
    eval: [...evals.values()],
    naiveTrain: configs.length,
    skipped,
  };
}

/** Rows as text columns padded to their widest cell. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => "  " + r.map((v, c) => v.padEnd(widths[c])).join("  ").trimEnd());
}

function show(v: ConfigValue | undefined): string {
  return v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
}

/** The `--dry-run` report: the counts, then a table of the training and of the evaluation jobs. */
export function describePlan(plan: Plan): string {
  const trainCols = [...new Set(plan.train.flatMap((t) => Object.keys(t.config)))];
  const evalCols = [...new Set(plan.eval.flatMap((e) => Object.keys(e.settings)))];
  return [
    `${plan.configs.length} configurations → ${plan.train.length} training jobs + ` +
    `${plan.eval.length} evaluation jobs (a naive grid would train ${plan.naiveTrain})`,
    "",
    "training jobs:",
    ...table([
      ["key", ...trainCols],
      ...plan.train.map((t) => [t.key, ...trainCols.map((k) => show(t.config[k]))]),
    ]),
    "",
    "evaluation jobs:",
    ...table([
      ["key", "training job", "step", ...evalCols, "metrics"],
      ...plan.eval.map((e) => [
        e.key,
        e.train,
        String(e.checkpoint),
        ...evalCols.map((k) => show(e.settings[k])),
        e.metrics.join(",") || "(default)",
      ]),
    ]),
    ...(plan.skipped.length ? ["", ...describeSkipped(plan)] : []),
  ].join("\n");
}

/** The grid points left out, grouped by reason: "left out 12 configurations: sampler=ddim does not apply …". */
export function describeSkipped(plan: Plan): string[] {
  const byReason = new Map<string, number>();
  for (const s of plan.skipped) byReason.set(s.reason, (byReason.get(s.reason) ?? 0) + 1);
  return [...byReason].map(([reason, n]) =>
    `left out ${n} configuration${n === 1 ? "" : "s"}: ${reason}`
  );
}

/** The plan's configurations as the store keeps them (see `Store.setConfigs`). */
export function configRows(
  plan: Plan,
): { idx: number; params: string; trainKey: string; evalKey: string }[] {
  return plan.configs.map((c) => ({
    idx: c.idx,
    params: JSON.stringify(c.params),
    trainKey: c.trainKey,
    evalKey: c.evalKey,
  }));
}
