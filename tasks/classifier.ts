/**
 * Retrains the MNIST feature network from its seed (ignoring every cache),
 * prints its test accuracy and writes its weights into `lib/metrics/weights/`,
 * the copy that ships with the project. Run it after changing
 * `CLASSIFIER_CONFIG` or the classifier's VERSION:
 * `deno run -A tasks/classifier.ts`.
 */
import { BUNDLED_DIR, saveClassifier, trainClassifier } from "../lib/metrics/classifier.ts";
import { initBackend } from "../lib/runtime/backend.ts";

await initBackend("auto");
const started = performance.now();
const clf = await trainClassifier();
const seconds = (performance.now() - started) / 1000;
const accuracy = clf.testAccuracy();
if (accuracy < 0.99) {
  console.error(`test accuracy ${accuracy} is below 0.99; weights not written`);
  Deno.exit(1);
}
const file = await saveClassifier(clf, BUNDLED_DIR);
console.log(JSON.stringify({ file, accuracy, trainSeconds: Math.round(seconds) }));
