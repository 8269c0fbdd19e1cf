/**
 * 2-D toy distributions drawn from a seeded RNG, in the conventions of the
 * FFJORD / TabDDPM toy code: points roughly within [−4, 4]².
 */
import type { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";

/** The toy datasets by name. */
export const TOY_DATASETS = ["8gaussians", "25gaussians", "swissroll", "moons", "checkerboard"] as const;

/** Whether a dataset name is a toy set. */
export function isToy(name: string): boolean {
  return (TOY_DATASETS as readonly string[]).includes(name);
}

/**
 * Draws `n` points: [n·2] (x, y) pairs. The sets:
 * - `8gaussians`: centres at angle kπ/4 on the circle of radius 2, std 0.1.
 * - `25gaussians`: centres on the grid {−2, −1, 0, 1, 2}², std 0.05.
 * - `swissroll`: the 2-D swiss roll (t ∈ [1.5π, 4.5π], (t cos t, t sin t)/5) plus N(0, 0.1²) noise.
 * - `moons`: two interleaving half circles (scikit-learn's), centred, ×1.5, plus N(0, 0.05²).
 * - `checkerboard`: uniform over the 8 black squares of a 4×4 board on [−2, 2]².
 */
export function sampleToy(name: string, n: number, rng: Rng): Float32Array {
  const out = new Float32Array(2 * n);
  const put = (i: number, x: number, y: number) => {
    out[2 * i] = x;
    out[2 * i + 1] = y;
  };
  switch (name) {
    case "8gaussians":
      for (let i = 0; i < n; i++) {
        const a = (rng.int(8) * Math.PI) / 4;
        put(i, 2 * Math.cos(a) + 0.1 * rng.normal(), 2 * Math.sin(a) + 0.1 * rng.normal());
      }
      break;
    case "25gaussians":
      for (let i = 0; i < n; i++) {
        put(i, rng.int(5) - 2 + 0.05 * rng.normal(), rng.int(5) - 2 + 0.05 * rng.normal());
      }
      break;
    case "swissroll":
      for (let i = 0; i < n; i++) {
        const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
        put(i, (t * Math.cos(t)) / 5 + 0.1 * rng.normal(), (t * Math.sin(t)) / 5 + 0.1 * rng.normal());
      }
      break;
    case "moons":
      for (let i = 0; i < n; i++) {
        const a = Math.PI * rng.uniform();
        const [x, y] = rng.uniform() < 0.5 ? [Math.cos(a), Math.sin(a)] : [1 - Math.cos(a), 0.5 - Math.sin(a)];
        put(i, 1.5 * (x - 0.5) + 0.05 * rng.normal(), 1.5 * (y - 0.25) + 0.05 * rng.normal());
      }
      break;
    case "checkerboard":
      for (let i = 0; i < n; i++) {
        const cx = rng.int(4);
        const cy = 2 * rng.int(2) + ((cx + 1) % 2);
        put(i, cx - 2 + rng.uniform(), cy - 2 + rng.uniform());
      }
      break;
    default:
      throw new Error(`unknown 2-D dataset "${name}"${didYouMean(name, TOY_DATASETS)}; choose from ${TOY_DATASETS.join(", ")}`);
  }
  return out;
}
