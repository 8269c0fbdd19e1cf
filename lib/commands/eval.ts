/**
 * `deno task eval`: evaluates a run's checkpoint. Model-specific metrics (such
 * as D3PM's bits per dimension) come from the model; the rest are computed on
 * samples, drawn once per invocation and shared by every metric asked for.
 * Prints one JSON line per metric, with the backend and the device it ran on,
 * and appends it to `<run>/evals.jsonl`.
 */
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import {
  checkSampleRequest,
  type MetricResult,
  pickSamplingOptions,
  type SampleRequest,
  type SamplingOptions,
} from "../models/model.ts";
import { describeDataset } from "../data/registry.ts";
import { didYouMean } from "../runtime/text.ts";
import { parseSets } from "../models/config.ts";
import { computeMetric, defaultMetrics, defaultSampleCount, METRICS } from "../metrics/suite.ts";
import { type BackendName, checkBackend, initBackend } from "../runtime/backend.ts";
import { Progress } from "../runtime/progress.ts";
import { Rng } from "../runtime/rng.ts";
import { describeDevice } from "./device.ts";
import { openRun } from "./run.ts";
import { prepareOutput, writeSamples } from "./sample.ts";

/** Options of {@link evalCommand}. */
export interface EvalCommandOptions extends SamplingOptions {
  run: string;
  metric: string[];
  n?: number;
  ema?: string;
  checkpoint?: number;
  clip?: "none" | "static" | "dynamic";
  /** Also write the samples there (PNG grid, or CSV + scatter). */
  samplesOut?: string;
  /** Append progress events there as JSON lines: a start line (backend, device), then sampling progress. */
  events?: string;
  seed: number;
  set: string[];
  backend: BackendName;
}

/** Evaluates and prints; returns the results. */
export async function evalCommand(opts: EvalCommandOptions): Promise<MetricResult[]> {
  const backend = await initBackend(opts.backend);
  const where = { backend: backend.name, device: describeDevice(backend) };
  const events = eventWriter(opts.events);
  events.start(where);
  const run = await openRun(opts.run, { checkpoint: opts.checkpoint, ema: opts.ema });
  const extra = parseSets(opts.set);
  try {
    const data = String(run.config.data);
    const metrics = opts.metric.length ? opts.metric : defaultMetrics(data, run.config);
    const n = opts.n ?? defaultSampleCount(data);
    const kind = describeDataset(data).kind;
    const support = run.model.sampling;
    const known = [...support.ownMetrics, ...METRICS[kind]];
    for (const m of metrics) {
      if (!known.includes(m)) {
        throw new Error(
          `--metric ${m}: does not apply to ${run.config.model} on ${data}${
            Object.values(METRICS).some((l) => (l as readonly string[]).includes(m))
              ? ""
              : didYouMean(m, known)
          } (metrics: ${known.join(", ")})`,
        );
      }
    }
    if (metrics.some((m) => !support.ownMetrics.includes(m))) {
      checkSampleRequest(String(run.config.model), support, { n, ...pickSamplingOptions(opts) });
      if (opts.samplesOut) prepareOutput(kind, opts.samplesOut, "--samples-out");
    }
    const log = join(opts.run, "evals.jsonl");
    fs.appendFileSync(log, "", { mode: 0o644 });
    const rng = new Rng(opts.seed);
    const settings = {
      step: run.step,
      ema: run.ema,
      sampler: opts.sampler ?? support.defaultSampler,
      steps: opts.steps ?? null,
      eta: opts.eta ?? null,
      guidance: opts.guidance ?? null,
      guidance_rescale: opts.guidanceRescale ?? null,
      churn: opts.churn ?? null,
    };
    const results: MetricResult[] = [];
    const needSamples: string[] = [];
    for (const m of metrics) {
      const own = await run.model.evaluate?.(run.weights, m, n, rng);
      if (own) results.push({ ...own, ...settings });
      else needSamples.push(m);
    }
    if (needSamples.length > 0) {
      const progress = new Progress(`sampling ${n} for ${needSamples.join(", ")}`, 1);
      const req: SampleRequest = {
        n,
        ...pickSamplingOptions(opts),
        clip: opts.clip,
        onProgress: (done, total) => {
          progress.total = total;
          progress.update(done);
          events.progress(done, total);
        },
      };
      const samples = await run.model.sample(run.weights, req, rng);
      await checkBackend(true);
      if (opts.samplesOut) writeSamples(samples, opts.samplesOut, data, opts.seed);
      for (const m of needSamples) {
        results.push({
          ...(await computeMetric(m, samples, {
            data,
            seed: opts.seed,
            extra,
            config: run.config,
          })),
          ...settings,
          nfe: samples.nfe ?? null,
        });
      }
    }
    for (const r of results) {
      console.log(JSON.stringify({ ...r, ...where }));
      fs.appendFileSync(
        log,
        JSON.stringify({ ...r, ...where, time: new Date().toISOString() }) + "\n",
      );
    }
    return results;
  } finally {
    run.close();
  }
}

/** How often `--events` gets a progress line, ms. */
const EVENT_EVERY_MS = 1000;

/**
 * `--events FILE`: JSON lines appended for whoever follows the evaluation (a
 * sweep's job runner): a start line with the backend and the device, then
 * sampling progress, at most every {@link EVENT_EVERY_MS} and at the end.
 * Nothing without a file.
 */
function eventWriter(file: string | undefined) {
  let last = -Infinity;
  if (file) fs.mkdirSync(dirname(file), { recursive: true });
  const write = (e: Record<string, unknown>) => {
    if (!file) return;
    fs.appendFileSync(file, JSON.stringify({ ...e, time: new Date().toISOString() }) + "\n");
  };
  return {
    start: (where: { backend: string; device: string }) => write({ type: "start", ...where }),
    progress: (done: number, total: number) => {
      if (done < total && performance.now() - last < EVENT_EVERY_MS) return;
      last = performance.now();
      write({ type: "progress", done, total });
    },
  };
}
