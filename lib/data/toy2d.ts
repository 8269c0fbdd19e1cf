/**
 * 2-D toy distributions drawn from the project's seeded {@link Rng}, in the
 * conventions of the FFJORD toy code (`toy_data.py`; 25gaussians from
 * WGAN-GP's): every set has per-coordinate standard deviation between about
 * 0.7 and 2.3, with points within roughly [−4, 4]².
 */
import type { Rng } from "../runtime/rng.ts";
import { didYouMean } from "../runtime/text.ts";

/** The toy datasets by name. */
export const TOY_DATASETS = [
  "8gaussians",
  "25gaussians",
  "swissroll",
  "moons",
  "checkerboard",
] as const;

/** A toy dataset name. */
export type ToyName = (typeof TOY_DATASETS)[number];

/** Whether a dataset name is a toy set. */
export function isToy(name: string): name is ToyName {
  return (TOY_DATASETS as readonly string[]).includes(name);
}

/** Radius of the 8gaussians circle: FFJORD's scale 4 divided by 1.414. */
const RING_RADIUS = 4 / 1.414;

/**
 * Draws `n` points as [n·2] interleaved (x, y) pairs, deterministically from
 * `rng`. The sets (FFJORD's constants):
 * - `8gaussians`: centres at angles kπ/4 on the circle of radius 4/1.414 ≈ 2.83,
 *   each an isotropic Gaussian of std 0.5/1.414 ≈ 0.354; modes equally likely.
 * - `25gaussians`: centres on the grid {−2, −1, 0, 1, 2}² × 2/2.828 (spacing ≈ 0.707),
 *   std 0.05/2.828 ≈ 0.0177 (WGAN-GP's).
 * - `swissroll`: scikit-learn's swiss roll with noise 1, (x, z) over 5:
 *   t ~ U[1.5π, 4.5π], ((t cos t, t sin t) + N(0, I)) / 5; radius 0.94–2.83, noise std 0.2.
 * - `moons`: scikit-learn's two moons with noise 0.1 (angle uniform on [0, π], moon
 *   chosen with probability ½), then ×2 and shifted by (−1, −0.2).
 * - `checkerboard`: uniform over the 8 squares of side 2 of a 4×4 board on [−4, 4]²
 *   where ⌊x/2⌋ + ⌊y/2⌋ is even.
 */
export function sampleToy(name: string, n: number, rng: Rng): Float32Array {
  if (!Number.isInteger(n) || n < 0) throw new Error(`sampleToy: n must be a count ≥ 0, got ${n}`);
  const out = new Float32Array(2 * n);
  const put = (i: number, x: number, y: number) => {
    out[2 * i] = x;
    out[2 * i + 1] = y;
  };
  switch (name) {
    case "8gaussians":
      for (let i = 0; i < n; i++) {
        const a = (rng.int(8) * Math.PI) / 4;
        const s = 0.5 / 1.414;
        put(
          i,
          RING_RADIUS * Math.cos(a) + s * rng.normal(),
          RING_RADIUS * Math.sin(a) + s * rng.normal(),
        );
      }
      break;
    case "25gaussians":
      for (let i = 0; i < n; i++) {
        const x = 2 * (rng.int(5) - 2) + 0.05 * rng.normal();
        const y = 2 * (rng.int(5) - 2) + 0.05 * rng.normal();
        put(i, x / 2.828, y / 2.828);
      }
      break;
    case "swissroll":
      for (let i = 0; i < n; i++) {
        const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
        put(i, (t * Math.cos(t) + rng.normal()) / 5, (t * Math.sin(t) + rng.normal()) / 5);
      }
      break;
    case "moons":
      for (let i = 0; i < n; i++) {
        const a = Math.PI * rng.uniform();
        const outer = rng.uniform() < 0.5;
        const x = (outer ? Math.cos(a) : 1 - Math.cos(a)) + 0.1 * rng.normal();
        const y = (outer ? Math.sin(a) : 0.5 - Math.sin(a)) + 0.1 * rng.normal();
        put(i, 2 * x - 1, 2 * y - 0.2);
      }
      break;
    case "checkerboard":
      for (let i = 0; i < n; i++) {
        const x1 = 4 * rng.uniform() - 2;
        const x2 = rng.uniform() - 2 * rng.int(2) + (((Math.floor(x1) % 2) + 2) % 2);
        put(i, 2 * x1, 2 * x2);
      }
      break;
    default:
      throw new Error(
        `unknown 2-D dataset "${name}"${didYouMean(name, TOY_DATASETS)}; choose from ${
          TOY_DATASETS.join(", ")
        }`,
      );
  }
  return out;
}
