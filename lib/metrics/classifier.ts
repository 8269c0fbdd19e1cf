/**
 * The in-project MNIST feature network for FID, KID, precision/recall and
 * class accuracy: a small CNN trained on the MNIST training set (≥ 99% test
 * accuracy), deterministic from its seed, cached on disk under a key derived
 * from its configuration and code version so it trains once per machine.
 * Its 128-wide penultimate layer gives the features.
 *
 * Trained weights for the current configuration ship in `lib/metrics/weights/`
 * (1.7 MB; `deno run -A tasks/classifier.ts` retrains and rewrites them), so a
 * fresh clone needs no 10-minute training; without them (a changed config or
 * VERSION) the classifier trains on first use and is cached per machine.
 *
 * These FIDs compare runs of this project with each other; they are not
 * comparable with Inception-based FIDs from papers.
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMnist, mnistToFloat } from "../data/mnist.ts";
import { conv, dense, initConv, initDense, type Weights } from "../network/layers.ts";
import { Progress } from "../runtime/progress.ts";
import { Rng } from "../runtime/rng.ts";
import { readTensors, writeTensors } from "../runtime/tensorfile.ts";
import { Adam } from "../trainer/optim.ts";

/** The classifier's configuration; changing it (or VERSION) retrains. */
export const CLASSIFIER_CONFIG = {
  seed: 1234,
  epochs: 3,
  batch: 128,
  lr: 1e-3,
  width: 32,
  features: 128,
};
const VERSION = 1;

/** Width of the feature vector. */
export const FEATURE_DIM = CLASSIFIER_CONFIG.features;

/** The per-machine cache folder: `$DMW_CACHE`, else `$XDG_CACHE_HOME/dmw`, else `~/.cache/dmw`. */
export function cacheDir(): string {
  const base = Deno.env.get("DMW_CACHE") ??
    join(Deno.env.get("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "dmw");
  return join(base, "mnist-classifier");
}

/** Folder of the weights that ship with the project. */
export const BUNDLED_DIR = fileURLToPath(new URL("./weights/", import.meta.url));

/** The cache key of the current configuration and code version, e.g. `v1-8c3e5a1f`. */
export function cacheKey(): string {
  const text = JSON.stringify({ ...CLASSIFIER_CONFIG, VERSION });
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return `v${VERSION}-${h.toString(16)}`;
}

function initClassifier(rng: Rng): Weights {
  const c = CLASSIFIER_CONFIG.width;
  const w: Weights = {};
  initConv(w, "c1", 3, 1, c, rng);
  initConv(w, "c2", 3, c, c, rng);
  initConv(w, "c3", 3, c, 2 * c, rng);
  initConv(w, "c4", 3, 2 * c, 2 * c, rng);
  initDense(w, "fc", 7 * 7 * 2 * c, CLASSIFIER_CONFIG.features, rng);
  initDense(w, "out", CLASSIFIER_CONFIG.features, 10, rng);
  return w;
}

/** Forward pass: x [B, 28, 28, 1] in [−1, 1] → features [B, 128] and logits [B, 10]. */
function forward(w: Weights, x: tf.Tensor4D): { features: tf.Tensor2D; logits: tf.Tensor2D } {
  let h = tf.relu(conv(w, "c1", x)); // [B, 28, 28, c]
  h = tf.relu(conv(w, "c2", h, 2)); // [B, 14, 14, c]
  h = tf.relu(conv(w, "c3", h)); // [B, 14, 14, 2c]
  h = tf.relu(conv(w, "c4", h, 2)); // [B, 7, 7, 2c]
  const features = dense(w, "fc", tf.reshape(h, [x.shape[0], -1]), "relu") as tf.Tensor2D; // [B, 128]
  return { features, logits: dense(w, "out", features) as tf.Tensor2D };
}

/** The trained MNIST classifier. */
export class MnistClassifier {
  /** Wraps trained weights (use {@link loadClassifier}). */
  constructor(readonly weights: Weights) {}

  /** Runs images [n·784] in [−1, 1] through the network in batches. */
  #run(images: Float32Array, n: number, pick: "features" | "logits"): Float32Array {
    const width = pick === "features" ? FEATURE_DIM : 10;
    const out = new Float32Array(n * width);
    const B = 500;
    for (let s = 0; s < n; s += B) {
      const m = Math.min(B, n - s);
      const y = tf.tidy(() =>
        forward(
          this.weights,
          tf.tensor4d(images.subarray(s * 784, (s + m) * 784), [m, 28, 28, 1]),
        )[pick]
      );
      out.set(y.dataSync(), s * width);
      y.dispose();
    }
    return out;
  }

  /** Penultimate-layer features [n·128]. */
  features(images: Float32Array, n: number): Float32Array {
    return this.#run(images, n, "features");
  }

  /** Class probabilities [n·10]. */
  probabilities(images: Float32Array, n: number): Float32Array {
    const logits = this.#run(images, n, "logits");
    for (let i = 0; i < n; i++) {
      const row = logits.subarray(i * 10, i * 10 + 10);
      const mx = Math.max(...row);
      let s = 0;
      for (let k = 0; k < 10; k++) s += row[k] = Math.exp(row[k] - mx);
      for (let k = 0; k < 10; k++) row[k] /= s;
    }
    return logits;
  }

  /** Predicted labels. */
  predict(images: Float32Array, n: number): Int32Array {
    const p = this.probabilities(images, n);
    return Int32Array.from({ length: n }, (_, i) => {
      let best = 0;
      for (let k = 1; k < 10; k++) if (p[i * 10 + k] > p[i * 10 + best]) best = k;
      return best;
    });
  }

  /** Accuracy on the MNIST test set. */
  testAccuracy(): number {
    const { images, labels, n } = loadMnist("test");
    const pred = this.predict(mnistToFloat(images, Int32Array.from({ length: n }, (_, i) => i)), n);
    let right = 0;
    for (let i = 0; i < n; i++) right += pred[i] === labels[i] ? 1 : 0;
    return right / n;
  }

  /** Frees the weights. */
  dispose(): void {
    tf.dispose(Object.values(this.weights));
  }
}

/**
 * Trains the classifier from its seed (progress on stderr). `maxSteps` stops
 * early (tests use it to check determinism).
 * @default maxSteps all epochs
 */
export async function trainClassifier(maxSteps = Infinity): Promise<MnistClassifier> {
  const { seed, epochs, batch, lr } = CLASSIFIER_CONFIG;
  const rng = new Rng(seed);
  const init = initClassifier(rng);
  const params: Record<string, tf.Variable> = {};
  for (const [k, t] of Object.entries(init)) params[k] = tf.variable(t, true, `classifier/${k}`);
  tf.dispose(Object.values(init));
  const adam = new Adam(params);
  const { images, labels, n } = loadMnist("train");
  const perEpoch = Math.floor(n / batch);
  const progress = new Progress(
    "training the MNIST feature network (once per machine)",
    epochs * perEpoch,
  );
  for (let e = 0; e < epochs && e * perEpoch < maxSteps; e++) {
    const order = rng.permutation(n);
    for (let b = 0; b < perEpoch && e * perEpoch + b < maxSteps; b++) {
      const idx = order.subarray(b * batch, (b + 1) * batch);
      const x = tf.tensor4d(mnistToFloat(images, idx), [batch, 28, 28, 1]);
      const y = tf.tidy(() =>
        tf.cast(
          tf.oneHot(tf.tensor1d(Int32Array.from(idx, (i) => labels[i]), "int32"), 10),
          "float32",
        )
      );
      const { value, grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(y, forward(params, x).logits) as tf.Scalar,
        Object.values(params),
      );
      const named: Weights = {};
      for (const [k, v] of Object.entries(params)) named[k] = grads[v.name];
      adam.apply(params, named, e === epochs - 1 ? lr / 10 : lr);
      const loss = b % 50 === 0 ? (await value.data())[0] : NaN;
      tf.dispose([x, y, value, ...Object.values(grads)]);
      progress.update(e * perEpoch + b + 1, Number.isFinite(loss) ? `loss ${loss.toFixed(4)}` : "");
    }
  }
  adam.dispose();
  const weights: Weights = {};
  for (const [k, v] of Object.entries(params)) {
    weights[k] = tf.clone(v);
    v.dispose();
  }
  return new MnistClassifier(weights);
}

let cached: MnistClassifier | undefined;

/** Reads weights saved by {@link saveClassifier}, or returns undefined when absent. */
function readSaved(dir: string): MnistClassifier | undefined {
  const file = join(dir, `${cacheKey()}.bin`);
  const meta = join(dir, `${cacheKey()}.json`);
  if (!fs.existsSync(file) || !fs.existsSync(meta)) return undefined;
  return new MnistClassifier(readTensors(file, JSON.parse(fs.readFileSync(meta, "utf8"))));
}

/** Writes the classifier's weights into `dir` under the current cache key (atomically). */
export async function saveClassifier(clf: MnistClassifier, dir: string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const file = join(dir, `${cacheKey()}.bin`);
  const tmp = `${file}.tmp-${Deno.pid}`;
  const entries = await writeTensors(tmp, clf.weights);
  fs.renameSync(tmp, file);
  fs.writeFileSync(join(dir, `${cacheKey()}.json`), JSON.stringify(entries));
  return file;
}

/** Where the classifier came from, after {@link loadClassifier}. */
export let classifierSource: "bundled" | "cache" | "trained" | undefined;

/** The classifier: the shipped weights, else the disk cache, else trained now and cached. */
export async function loadClassifier(): Promise<MnistClassifier> {
  if (cached) return cached;
  const bundled = readSaved(BUNDLED_DIR);
  if (bundled) {
    classifierSource = "bundled";
    return cached = bundled;
  }
  const saved = readSaved(cacheDir());
  if (saved) {
    classifierSource = "cache";
    return cached = saved;
  }
  const clf = await trainClassifier();
  await saveClassifier(clf, cacheDir());
  classifierSource = "trained";
  return cached = clf;
}
