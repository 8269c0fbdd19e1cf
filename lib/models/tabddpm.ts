/**
 * TabDDPM (Kotelnikov et al. 2023): one denoiser over a table's rows, with
 * Gaussian diffusion for the numeric columns and multinomial diffusion for
 * the categorical ones. Numeric columns go through a quantile transform to
 * N(0, 1) (inverted on output; integer columns rounded and clipped to their
 * observed range); categorical and boolean columns become one-hot slices.
 *
 * The network (MLPDiffusion or ResNetDiffusion) sees [x_num,t ‖ onehot_t]
 * and returns [ε̂ ‖ logits]; the loss is L_gauss + L_multi / F, where F is the
 * number of categorical features. TabDDPM feeds the log one-hot to the
 * network; here it is the one-hot itself (an affine map of it, better
 * scaled).
 *
 * A categorical `target` conditions the model on its class (the network's
 * label embedding), and sampling draws the classes from their training
 * frequencies. A numeric (regression) target stays an ordinary numeric
 * column, diffused with the rest and unconditioned, as TabDDPM does for
 * regression.
 *
 * A seeded share of the rows (`holdout`, `split_seed`) is held out of
 * training, so that evaluation can score models fitted on synthetic rows on
 * real rows the diffusion model never saw ({@link runTables}).
 */
import { COUNT, COUNT0, type TypedConfig, typedConfig } from "./config.ts";
import * as tf from "@tensorflow/tfjs-core";
import {
  type BlankReport,
  BUILTIN_TABLES,
  loadTable,
  MISSING,
  NON_NUMERIC_POLICIES,
  selectRows,
  splitRows,
  type Table,
} from "../data/tabular.ts";
import { QuantileTransformer } from "../data/quantile.ts";
import { GaussianDiffusion } from "../diffusion/gaussian.ts";
import { MultinomialDiffusion } from "../diffusion/multinomial.ts";
import type { NetFn, ReverseProcess } from "../diffusion/reverse.ts";
import { runReverse } from "../diffusion/reverse.ts";
import { makeSampler, spacedTimesteps } from "../diffusion/samplers.ts";
import { makeSchedule } from "../diffusion/schedules.ts";
import type { Network, Weights } from "../network/layers.ts";
import { MLPDiffusion, ResNetDiffusion } from "../network/mlp.ts";
import type { Rng } from "../runtime/rng.ts";
import type {
  BatchLoss,
  KeySpec,
  ModelEntry,
  RunConfig,
  SampleOutput,
  SampleRequest,
  SamplingSupport,
  ZooModel,
} from "./model.ts";
import { gaussianSampling } from "./model.ts";

/** The samplers of TabDDPM: those on the schedule's own timesteps, which the multinomial part shares. */
const TABLE_SAMPLERS = ["ddpm", "ddim", "dpmpp2m"];

/** Configuration keys of the TabDDPM model (besides the trainer's). */
export const TABDDPM_KEYS = {
  T: { default: 1000, help: "diffusion steps (Gaussian and multinomial)", range: COUNT },
  schedule: { default: "linear", help: "noise schedule", choices: ["linear", "cosine", "sigmoid"] },
  batch: { default: 256, help: "batch size (rows drawn with replacement)", range: COUNT },
  network: { default: "mlp", help: "denoiser", choices: ["mlp", "resnet"] },
  d_layers: {
    default: [256, 256],
    help:
      "mlp: hidden widths; resnet: one block per entry, width d_layers[0], inner width twice that",
    range: COUNT,
  },
  d_emb: {
    default: 128,
    help: "width of the input projection and the time embedding",
    range: { int: true, min: 2, multipleOf: 2 },
  },
  target: {
    default: "",
    help: "target column: a categorical one conditions the model, a numeric one stays a feature",
  },
  blanks: {
    default: "drop-row",
    help:
      "blank numeric cells: drop their rows or fill the column mean (blank labels become a category)",
    choices: ["drop-row", "mean"],
  },
  non_numeric: {
    default: "error",
    help:
      "a few non-numeric cells in a numeric column: an error naming them, blank cells, or the column categorical",
    choices: NON_NUMERIC_POLICIES,
  },
  drop: { default: [] as string[], help: 'columns to leave out, e.g. ["Name"]' },
  holdout: {
    default: 0.2,
    help: "fraction of rows held out of training (seeded by split_seed), for evaluation",
    range: { min: 0, below: 1 },
  },
  split_seed: { default: 0, help: "seed of the train / held-out split", range: COUNT0 },
  sampler: {
    default: "ddpm",
    help: "default sampler of the numeric part (the categorical part walks the same timesteps)",
    choices: TABLE_SAMPLERS,
  },
  sample_steps: { default: 0, help: "default sampling steps (0 = T)", range: COUNT0 },
  spacing: { default: "leading", help: "timestep spacing for fewer steps" },
} as const satisfies Record<string, KeySpec>;

/** The resolved configuration of the model, typed by its keys. */
export type TabDdpmConfig = TypedConfig<typeof TABDDPM_KEYS>;

/** A numeric column as the model encodes it. */
export interface NumericFeature {
  /** Column name. */
  name: string;
  /** Whether values are integers (rounded on output). */
  integer: boolean;
  /** Observed minimum (integer columns are clipped to it on output). */
  min: number;
  /** Observed maximum. */
  max: number;
}

/** A categorical (or boolean) column: category index i stands for `categories[i]`. */
export interface CategoricalFeature {
  /** Column name. */
  name: string;
  /** The labels, as the table writes them. */
  categories: string[];
}

/** A table as model features: numeric columns quantile-normal, categorical ones as indices. */
export interface TableFeatures {
  /** Every column name, in the table's order. */
  header: string[];
  /** Number of rows. */
  n: number;
  /** Numeric feature columns (a regression target among them). */
  numeric: NumericFeature[];
  /** Transformed numeric values [n, numeric.length], row-major, ~N(0, 1) per column. */
  xNum: Float32Array;
  /** Categorical feature columns (not the conditioning target). */
  categorical: CategoricalFeature[];
  /** Category indices [n, categorical.length], row-major. */
  xCat: Int32Array;
  /** What the loader did with blank cells. */
  blanks?: BlankReport;
  /** The classification target the model is conditioned on, with each row's class. */
  target?: { feature: CategoricalFeature; y: Int32Array };
  /** Rows in the table's column order from model-space values of `m` rows (inverse transforms, labels). */
  decode(
    xNum: Float32Array,
    xCat: Int32Array,
    y: Int32Array | undefined,
    m: number,
  ): (string | number)[][];
}

/** A TabDDPM over one table. */
export class TabDdpm implements ZooModel {
  readonly name = "tabddpm";
  /** The resolved configuration. */
  readonly config: TabDdpmConfig;
  get sampling(): SamplingSupport {
    return gaussianSampling(
      this.config.sampler,
      this.features.target?.feature.categories.length ?? 0,
      TABLE_SAMPLERS,
    );
  }
  /** The table's features. */
  readonly features: TableFeatures;
  /** The Gaussian process of the numeric columns. */
  readonly gauss: GaussianDiffusion;
  /** The multinomial process of the categorical columns (absent when there are none). */
  readonly multi?: MultinomialDiffusion;
  /** The denoiser over [numeric ‖ one-hot]. */
  readonly network: Network;
  readonly batchSize: number;
  /** Number of numeric features. */
  readonly dNum: number;
  /** Width of the one-hot part (ΣK_i). */
  readonly dCat: number;
  #xNum: tf.Tensor2D;
  #xCat: tf.Tensor2D;
  #y?: tf.Tensor1D;

  /** Builds the model for a resolved configuration over already loaded features. */
  constructor(raw: RunConfig, features: TableFeatures) {
    const config = (this.config = typedConfig(TABDDPM_KEYS, raw));
    this.features = features;
    const schedule = makeSchedule({ kind: config.schedule, T: config.T });
    this.gauss = new GaussianDiffusion(schedule, "eps");
    const K = features.categorical.map((c) => c.categories.length);
    if (K.length > 0) this.multi = new MultinomialDiffusion(schedule, K);
    this.dNum = features.numeric.length;
    this.dCat = this.multi?.dim ?? 0;
    const dIn = this.dNum + this.dCat;
    if (dIn === 0) throw new Error(`tabddpm: ${config.data} has no feature columns left to model`);
    const numClasses = features.target?.feature.categories.length ?? 0;
    const layers = config.d_layers;
    const dEmb = config.d_emb;
    this.network = config.network === "resnet"
      ? new ResNetDiffusion({
        dIn,
        dMain: layers[0],
        dHidden: 2 * layers[0],
        blocks: layers.length,
        dEmb,
        numClasses,
      })
      : new MLPDiffusion({ dIn, dEmb, layers, numClasses });
    this.batchSize = config.batch;
    const n = features.n;
    this.#xNum = tf.tensor2d(features.xNum, [n, this.dNum]);
    this.#xCat = tf.tensor2d(features.xCat, [n, K.length], "int32");
    if (features.target) this.#y = tf.tensor1d(features.target.y, "int32");
  }

  /** Fresh network parameters. */
  init(rng: Rng): Weights {
    return this.network.init(rng);
  }

  /** The network on [x_num ‖ one-hot]: ε̂ [B, dNum] and logits [B, dCat]. */
  #denoise(
    w: Weights,
    xNum: tf.Tensor,
    logXCat: tf.Tensor | undefined,
    t: tf.Tensor1D,
    cond?: tf.Tensor1D,
  ) {
    const B = xNum.shape[0];
    const x = logXCat ? tf.concat([xNum, tf.exp(logXCat)], 1) : xNum; // [B, dNum + dCat]
    const out = this.network.apply(w, x, t, cond);
    return {
      eps: tf.slice(out, [0, 0], [B, this.dNum]), // [B, dNum]
      logits: tf.slice(out, [0, this.dNum], [B, this.dCat]), // [B, dCat]
    };
  }

  /** L_gauss + L_multi / F on one batch of rows drawn with replacement. */
  loss(w: Weights, rng: Rng, _step: number): BatchLoss {
    const B = this.batchSize;
    const T = this.gauss.T;
    const t = new Int32Array(B);
    const rows = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      rows[i] = rng.int(this.features.n);
      t[i] = rng.int(T);
    }
    const idx = tf.tensor1d(rows, "int32");
    const xNum = tf.gather(this.#xNum, idx); // [B, dNum]
    const noise = tf.randomNormal([B, this.dNum], 0, 1, "float32", rng.seed());
    const xNumT = this.gauss.qSample(xNum, t, noise);
    const multi = this.multi;
    const logX0 = multi
      ? multi.indexToLogOneHot(tf.gather(this.#xCat, idx) as tf.Tensor2D)
      : undefined; // [B, dCat]
    const logXt = multi && logX0 ? multi.qSample(logX0, t, rng) : undefined;
    const cond = this.#y ? tf.cast(tf.gather(this.#y, idx), "float32") as tf.Tensor1D : undefined;
    const { eps, logits } = this.#denoise(w, xNumT, logXt, tf.tensor1d(Float32Array.from(t)), cond);
    let perSample = tf.zeros([B]) as tf.Tensor1D;
    if (this.dNum > 0) perSample = tf.add(perSample, tf.mean(tf.squaredDifference(eps, noise), 1));
    if (multi && logX0 && logXt) {
      const lMulti = multi.perSampleLoss(logits, logX0, logXt, t); // [B]
      perSample = tf.add(perSample, tf.div(lMulti, multi.numClasses.length));
    }
    const loss = tf.mean(perSample) as tf.Scalar;
    const position = Float32Array.from(t, (v) => v / T);
    return { loss, perSample, position };
  }

  /**
   * Draws rows: numeric columns with any Gaussian sampler, categorical ones
   * with multinomial ancestral steps on the same (possibly respaced) chain,
   * then decodes them to the table's own labels, types and column order.
   */
  async sample(w: Weights, req: SampleRequest, rng: Rng): Promise<SampleOutput> {
    const T = this.gauss.T;
    const name = req.sampler ?? (this.config.sampler);
    const steps = req.steps ?? ((this.config.sample_steps) || T);
    const spacing = this.config.spacing;
    const gaussian = makeSampler(
      name,
      { kind: "discrete", schedule: this.gauss.schedule, objective: "eps" },
      { eta: req.eta, spacing },
    );
    const process = new TabularReverse(
      gaussian,
      this.multi,
      this.dNum,
      () => spacedTimesteps(T, steps, spacing).map((i) => this.gauss.schedule.alphasCumprod[i]),
    );
    const F = this.multi?.numClasses.length ?? 0;
    const n = req.n;
    const num = new Float32Array(n * this.dNum);
    const cat = new Int32Array(n * F);
    const y = this.features.target ? this.#labels(req, rng) : undefined;
    const chunk = 4096;
    let nfe = 0;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const cond = y ? tf.tensor1d(y.subarray(start, start + m), "float32") : undefined;
      const net: NetFn = (x, t) =>
        tf.tidy(() => {
          const xNum = tf.slice(x, [0, 0], [m, this.dNum]);
          const input = this.multi
            ? tf.concat([xNum, tf.exp(tf.slice(x, [0, this.dNum], [m, this.dCat]))], 1)
            : xNum;
          return this.network.apply(w, input, tf.fill([m], t) as tf.Tensor1D, cond);
        });
      const r = await runReverse(process, net, steps, [m, this.dNum + this.dCat], rng, {
        onStep: (i, total) => req.onProgress?.(start * total + i * m, n * total),
      });
      nfe = r.nfe;
      const [xNum, logX] = tf.split(r.x, [this.dNum, this.dCat], 1);
      num.set(await xNum.data() as Float32Array, start * this.dNum);
      if (this.multi) {
        const idx = this.multi.argmaxIndices(logX);
        cat.set(await idx.data() as Int32Array, start * F);
        idx.dispose();
      }
      tf.dispose([r.x, xNum, logX, ...(cond ? [cond] : [])]);
    }
    return {
      kind: "table",
      header: this.features.header,
      rows: this.features.decode(num, cat, y, n),
      nfe,
    };
  }

  /** The class of each sample: the request's labels, or draws from the training frequencies. */
  #labels(req: SampleRequest, rng: Rng): Int32Array {
    const target = this.features.target!;
    const out = new Int32Array(req.n);
    const K = target.feature.categories.length;
    for (let i = 0; i < req.n; i++) {
      const label = req.labels
        ? req.labels[req.labels.length === 1 ? 0 : i]
        : target.y[rng.int(target.y.length)];
      if (!Number.isInteger(label) || label < 0 || label >= K) {
        throw new Error(
          `tabddpm: label ${label} is not a class of ${target.feature.name} (0 to ${K - 1})`,
        );
      }
      out[i] = label;
    }
    return out;
  }

  /** Frees the table held on the backend. */
  dispose(): void {
    tf.dispose([this.#xNum, this.#xCat, ...(this.#y ? [this.#y] : [])]);
  }
}

/**
 * A loaded table as model features: numeric and integer columns through a
 * quantile transform fitted on the table; categorical and boolean columns as
 * codes. A categorical or boolean `target` becomes the conditioning class; a
 * numeric one stays a feature. Decoding inverts the transform, rounds and
 * clips integer columns to their observed range, and writes labels
 * ({@link MISSING} as a blank cell).
 */
export function tableFeatures(table: Table, target = ""): TableFeatures {
  const spec = target ? table.columns.find((c) => c.name === target) : undefined;
  if (target && !spec) {
    throw new Error(
      `tabddpm: target "${target}" is not a column of ${table.name} (${
        table.columns.map((c) => c.name).join(", ")
      })`,
    );
  }
  const conditioned = spec?.categories ? spec : undefined;
  const numCols = table.columns.filter((c) => !c.categories);
  const catCols = table.columns.filter((c) => c.categories && c !== conditioned);
  const n = table.rows;
  const transforms = numCols.map((c) => QuantileTransformer.fit(table.numeric[c.name]));
  const xNum = new Float32Array(n * numCols.length);
  numCols.forEach((c, j) => {
    const z = transforms[j].transform(table.numeric[c.name]);
    for (let i = 0; i < n; i++) xNum[i * numCols.length + j] = z[i];
  });
  const xCat = new Int32Array(n * catCols.length);
  catCols.forEach((c, j) => {
    const codes = table.categorical[c.name];
    for (let i = 0; i < n; i++) xCat[i * catCols.length + j] = codes[i];
  });
  const numeric = numCols.map((c) => ({
    name: c.name,
    integer: c.integer,
    min: c.min!,
    max: c.max!,
  }));
  const categorical = catCols.map((c) => ({ name: c.name, categories: c.categories! }));
  const label = (
    categories: string[],
    code: number,
  ) => (categories[code] === MISSING ? "" : categories[code]);
  const decode = (num: Float32Array, cat: Int32Array, y: Int32Array | undefined, m: number) => {
    const dNum = numeric.length;
    const cols = table.columns.map((c): (i: number) => string | number => {
      if (c === conditioned) return (i) => label(c.categories!, y![i]);
      const j = numCols.indexOf(c);
      if (j >= 0) {
        const x = transforms[j].inverse(Array.from({ length: m }, (_, i) => num[i * dNum + j]));
        return c.integer
          ? (i) => Math.min(c.max!, Math.max(c.min!, Math.round(x[i])))
          : (i) => x[i];
      }
      const k = catCols.indexOf(c);
      return (i) => label(c.categories!, cat[i * catCols.length + k]);
    });
    return Array.from({ length: m }, (_, i) => cols.map((f) => f(i)));
  };
  return {
    header: table.columns.map((c) => c.name),
    n,
    numeric,
    xNum,
    categorical,
    xCat,
    blanks: table.blanks,
    target: conditioned
      ? {
        feature: { name: conditioned.name, categories: conditioned.categories! },
        y: table.categorical[conditioned.name],
      }
      : undefined,
    decode,
  };
}

/** A run's table split as the run saw it. */
export interface RunTables {
  /** The rows the model trains on. */
  train: Table;
  /** The rows held out of training (no rows when `holdout` is 0). */
  holdout: Table;
}

/**
 * The table of a TabDDPM configuration, loaded with its blank and drop
 * settings and split by `holdout` and `split_seed` into the rows the model
 * trains on and the rows it never sees. Both parts keep the whole table's
 * categories. A configuration without `holdout` (a run from before the
 * split existed) trained on every row.
 */
export function runTables(raw: RunConfig): RunTables {
  // Keys newer than the run are absent: the loader's defaults, and no held-out rows.
  const config: Partial<TypedConfig<typeof TABDDPM_KEYS>> = typedConfig(TABDDPM_KEYS, raw);
  const table = loadTable(String(raw.data), {
    blanks: config.blanks,
    nonNumeric: config.non_numeric,
    drop: config.drop,
    constantColumns: "drop",
  });
  let split;
  try {
    split = splitRows(table.rows, config.holdout ?? 0, config.split_seed ?? 0);
  } catch (e) {
    throw new Error(`tabddpm: ${table.name}: holdout: ${(e as Error).message}`);
  }
  return { train: selectRows(table, split.train), holdout: selectRows(table, split.holdout) };
}

/** The registry entry of the TabDDPM model. */
export const TABDDPM_ENTRY: ModelEntry = {
  description:
    "TabDDPM: Gaussian + multinomial diffusion over a table's rows, optionally conditioned on a target",
  keys: TABDDPM_KEYS,
  data: `a .csv file, ${BUILTIN_TABLES.join(", ")}`,
  create: (config) => {
    const { train } = runTables(config);
    return Promise.resolve(new TabDdpm(config, tableFeatures(train, String(config.target))));
  },
};

/**
 * TabDDPM's reverse process on rows [m, dNum + dCat], numeric values then
 * the categorical columns' log one-hot: from one network call per step, the
 * numeric block takes the Gaussian sampler's step and the categorical block a
 * multinomial step on the same (respaced) chain.
 */
class TabularReverse implements ReverseProcess {
  readonly name: string;
  #abar: number[] = [];

  constructor(
    private readonly gaussian: ReverseProcess,
    private readonly multi: MultinomialDiffusion | undefined,
    private readonly dNum: number,
    /** ᾱ at the used timesteps, ascending, for the step count set. */
    private readonly alphaBars: () => number[],
  ) {
    this.name = gaussian.name;
  }

  setSteps(steps: number): number {
    const n = this.gaussian.setSteps(steps);
    this.#abar = this.alphaBars();
    return n;
  }

  prior(shape: number[], rng: Rng): tf.Tensor {
    const [m] = shape;
    const xNum = tf.randomNormal([m, this.dNum], 0, 1, "float32", rng.seed());
    if (!this.multi) return xNum;
    const logX = this.multi.noise(m, rng);
    const x = tf.concat([xNum, logX], 1);
    tf.dispose([xNum, logX]);
    return x;
  }

  step(i: number, x: tf.Tensor, net: NetFn, rng: Rng): tf.Tensor {
    return tf.tidy(() => {
      const [m, d] = x.shape;
      const xNum = tf.slice(x, [0, 0], [m, this.dNum]);
      const logX = tf.slice(x, [0, this.dNum], [m, d - this.dNum]);
      let logits: tf.Tensor | undefined;
      const numericNet: NetFn = (xn, t) => {
        const out = net(this.multi ? tf.concat([xn, logX], 1) : xn, t);
        // Kept past the Gaussian step's own tidy; this step's tidy frees it.
        logits = tf.keep(tf.slice(out, [0, this.dNum], [m, out.shape[1]! - this.dNum]));
        return tf.slice(out, [0, 0], [m, this.dNum]);
      };
      const nextNum = this.gaussian.step(i, xNum, numericNet, rng) as tf.Tensor;
      if (!this.multi) {
        logits?.dispose();
        return nextNum;
      }
      const k = this.#abar.length - 1 - i;
      const nextCat = this.multi.step(
        logits!,
        logX,
        this.#abar[k],
        k === 0 ? 1 : this.#abar[k - 1],
        rng,
      );
      logits!.dispose();
      return tf.concat([nextNum, nextCat], 1);
    });
  }

  reset(): void {
    this.gaussian.reset();
  }
}
