/**
 * The reverse loop on a toy process whose steps can be followed by hand:
 * the order of its calls, NFE, progress, the start, and every intermediate
 * freed (also when a step throws).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type NetFn, type ReverseProcess, runReverse } from "../../lib/diffusion/reverse.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { useBackend } from "../helpers.ts";

await useBackend("cpu");

/**
 * x ← x/2 + net(x, t_i) once per step (twice, Heun-like, with `calls: 2`),
 * on the grid t_i = 10·(total − i); the prior is all ones. Its grid has one
 * step more than asked for, as a process whose grid ends with a final step
 * may.
 */
class Halving implements ReverseProcess {
  readonly name = "halving";
  total = 0;
  resets = 0;
  priors = 0;
  constructor(readonly calls = 1, readonly failAt = -1) {}
  setSteps(steps: number): number {
    return this.total = steps + 1;
  }
  prior(shape: number[], _rng: Rng): tf.Tensor {
    this.priors++;
    return tf.ones(shape);
  }
  async step(i: number, x: tf.Tensor, net: NetFn): Promise<tf.Tensor> {
    await Promise.resolve();
    if (i === this.failAt) throw new Error(`step ${i} fails`);
    return tf.tidy(() => {
      let d = net(x, 10 * (this.total - i));
      for (let k = 1; k < this.calls; k++) d = tf.add(d, net(x, 0));
      return tf.add(tf.mul(x, 0.5), d);
    });
  }
  reset(): void {
    this.resets++;
  }
}

/** The network: the time value, everywhere. */
const timeNet: NetFn = (x, t) => tf.fill(x.shape, t);

Deno.test("runReverse: the steps in order from the prior, NFE per sample, progress after each step", async () => {
  const before = tf.memory().numTensors;
  const process = new Halving();
  const seen: [number, number, number][] = [];
  const { x, nfe } = await runReverse(process, timeNet, 3, [2, 2], new Rng(0), {
    onStep: (done, total, x) => {
      seen.push([done, total, x.dataSync()[0]]);
    },
  });
  // By hand: 4 steps (3 + 1) on t = 40, 30, 20, 10 from x = 1.
  const byHand = [1];
  for (const t of [40, 30, 20, 10]) byHand.push(byHand.at(-1)! / 2 + t);
  assert.deepEqual(Array.from(x.dataSync()), new Array(4).fill(byHand[4]));
  assert.deepEqual(seen, [1, 2, 3, 4].map((done) => [done, 4, byHand[done]]));
  assert.equal(nfe, 4);
  assert.deepEqual([process.priors, process.resets], [1, 1]);
  x.dispose();
  assert.equal(tf.memory().numTensors, before, "only the result was left, and it is freed");
});

Deno.test("runReverse: NFE counts every network call, times costPerCall", async () => {
  const heunLike = await runReverse(new Halving(2), timeNet, 5, [1], new Rng(0));
  assert.equal(heunLike.nfe, 2 * 6);
  const guided = await runReverse(new Halving(1), timeNet, 5, [1], new Rng(0), { costPerCall: 2 });
  assert.equal(guided.nfe, 2 * 6);
  tf.dispose([heunLike.x, guided.x]);
});

Deno.test("runReverse: a start replaces the prior, and the loop frees it", async () => {
  const process = new Halving();
  const start = tf.fill([3], 8);
  const before = tf.memory().numTensors;
  const { x } = await runReverse(process, timeNet, 0, [3], new Rng(0), { start });
  assert.equal(process.priors, 0);
  assert.deepEqual(Array.from(x.dataSync()), [14, 14, 14], "8/2 + 10, one step");
  assert.ok(start.isDisposed);
  assert.equal(tf.memory().numTensors, before, "the start was replaced by the result");
  x.dispose();
});

Deno.test("runReverse: a failing step frees the current x, resets the process, and throws", async () => {
  const before = tf.memory().numTensors;
  const process = new Halving(1, 2);
  await assert.rejects(runReverse(process, timeNet, 4, [2], new Rng(0)), /step 2 fails/);
  assert.equal(process.resets, 1);
  assert.equal(tf.memory().numTensors, before);
});
