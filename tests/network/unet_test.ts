/**
 * The UNet's two choices (DDPM's self-attention, the score model's
 * transformer blocks): parameter names and counts against a hand count, the
 * label's ways in, every parameter reached by the gradient, attention maps.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { countParams, type Weights } from "../../lib/network/layers.ts";
import { UNet, type UNetConfig } from "../../lib/network/unet.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, useBackend } from "../helpers.ts";

await useBackend("cpu");

/** The score model's choices on an 8×8 image with small widths. */
const SMALL: UNetConfig = { ch: 8, mults: [1, 2], groups: 4, heads: 2, temb: 16, size: 8 };
const TRANSFORMER: UNetConfig = {
  ...SMALL,
  time: "fourier",
  attention: "transformer",
  numClasses: 3,
  contextTokens: 2,
};

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

Deno.test("unet: the score model's network has DDPM's parameters, label and context, transformers for self-attention", () => {
  const ddpm = new UNet().init(new Rng(0));
  const score = new UNet({
    time: "fourier",
    attention: "transformer",
    attnRes: [7],
    numClasses: 10,
    contextTokens: 4,
  }).init(new Rng(0));
  // By hand, temb 128, c = 64 at the 7×7 level: a Linear(i → o) has i·o + o.
  const linear = (i: number, o: number) => i * o + o;
  const selfAttention = 2 * 64 + linear(64, 192) + linear(64, 64); // norm, qkv, out (1×1 convs)
  const transformer = 3 * 2 * 64 + linear(64, 192) + linear(64, 64) + linear(64, 64) +
    linear(128, 128) + linear(64, 64) + linear(64, 128) + linear(128, 64);
  const label = 11 * 128 + linear(128, 4 * 128); // 10 classes and the null label; the context tokens
  // down2, up2 (7×7 in attn_res) and the middle get a transformer; DDPM's middle has self-attention.
  assert.equal(countParams(ddpm), 732_129);
  assert.equal(countParams(score), 732_129 - selfAttention + 3 * transformer + label);
  assert.deepEqual(score["mid.tf.kv.w"].shape, [128, 128]);
  assert.deepEqual(score["down2.tf.qkv.w"].shape, [64, 192]);
  assert.deepEqual(ddpm["mida.qkv.w"].shape, [1, 1, 64, 192]);
  assert.ok(!Object.keys(ddpm).some((k) => k.includes(".tf.") || k.startsWith("label")));
  assert.ok(!Object.keys(score).some((k) => k.startsWith("mida")));
  tf.dispose([...Object.values(ddpm), ...Object.values(score)]);
});

Deno.test("unet: a label the network cannot read is refused", () => {
  assert.throws(() => new UNet({ attention: "transformer" }), /numClasses must be > 0/);
  assert.throws(() => new UNet({ numClasses: 10 }), /only with labelInTime/);
});

for (
  const [what, config] of [
    ["self-attention, label in time", { ...SMALL, numClasses: 3, labelInTime: true }],
    ["transformer", TRANSFORMER],
    ["transformer at every level, label in time", {
      ...TRANSFORMER,
      attnRes: [8, 4],
      labelInTime: true,
    }],
  ] as [string, UNetConfig][]
) {
  Deno.test(`unet (${what}): no label is the null label, labels differ, every parameter has a gradient`, () => {
    const net = new UNet(config);
    const w = net.init(new Rng(1));
    const x = tf.randomNormal([3, 8, 8, 1], 0, 1, "float32", 2);
    const t = tf.tensor1d([0.1, 0.5, 0.9]);
    const r = tf.randomNormal([3, 8, 8, 1], 0, 1, "float32", 3); // a fixed weighting of the outputs
    const before = tf.memory().numTensors;
    const [none, nullLabel, labelled] = tf.tidy(() => [
      net.apply(w, x, t),
      net.apply(w, x, t, tf.tensor1d([3, 3, 3])),
      net.apply(w, x, t, tf.tensor1d([0, 1, 2])),
    ]);
    assert.deepEqual(none.shape, [3, 8, 8, 1]);
    assert.equal(maxAbsDiff(none, nullLabel), 0);
    assert.ok(maxAbsDiff(none, labelled) > 1e-4, "the label changes the output");

    const vars = Object.fromEntries(
      Object.entries(w).map(([k, v]) => [k, tf.variable(v, true, k)]),
    );
    const { value, grads } = tf.variableGrads(() =>
      tf.sum(tf.mul(net.apply(vars, x, t, tf.tensor1d([0, 1, 2])), r)) as tf.Scalar
    );
    for (const [k, g] of Object.entries(grads)) {
      const size = tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]);
      assert.ok(size > 0, `${k} gets no gradient`);
    }
    tf.dispose([none, nullLabel, labelled, value, ...Object.values(grads), ...Object.values(vars)]);
    assert.equal(tf.memory().numTensors, before, "apply and its gradient free what they make");
    tf.dispose([x, t, r, ...Object.values(w)]);
  });
}

Deno.test("unet: the Fourier frequencies come from fourierSeed, not from the parameters' seed", () => {
  const out = (fourierSeed: number) => {
    const net = new UNet({ ...TRANSFORMER, fourierSeed });
    const w: Weights = net.init(new Rng(5));
    const y = tf.tidy(() =>
      net.apply(w, tf.ones([1, 8, 8, 1]), tf.tensor1d([0.3]), tf.tensor1d([1]))
    );
    tf.dispose(Object.values(w));
    return y;
  };
  const [a, b, c] = [out(0), out(0), out(1)];
  assert.equal(maxAbsDiff(a, b), 0);
  assert.ok(maxAbsDiff(a, c) > 1e-4);
  tf.dispose([a, b, c]);
});

Deno.test("unet: attention maps of self-attention, rows summing to one, output as apply's", () => {
  const net = new UNet({ ...SMALL, attnRes: [8] });
  const w = net.init(new Rng(6));
  const x = tf.randomNormal([2, 8, 8, 1], 0, 1, "float32", 7) as tf.Tensor4D;
  const t = tf.tensor1d([10, 500]);
  const { out, attention } = net.applyWithAttention(w, x, t);
  assert.deepEqual(Object.keys(attention).sort(), ["down0.self", "mid.self", "up0.self"]);
  assert.deepEqual(attention["down0.self"].shape, [2, 2, 64, 64]); // 8×8 pixels, 2 heads
  assert.deepEqual(attention["mid.self"].shape, [2, 2, 16, 16]); // 4×4 in the middle
  tf.sum(attention["mid.self"], -1).dataSync().forEach((v) => assertClose(v, 1, 1e-5));
  const plain = net.apply(w, x, t);
  assert.equal(maxAbsDiff(out, plain), 0);
  tf.dispose([out, plain, x, t, ...Object.values(attention), ...Object.values(w)]);
});
