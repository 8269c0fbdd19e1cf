/**
 * The vector denoisers: parameter counts by hand, the widths in and out, the
 * label's way in, and a gradient for every parameter.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { countParams, type Network } from "../../lib/network/layers.ts";
import { MLPDiffusion, ResNetDiffusion } from "../../lib/network/mlp.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { useBackend } from "../helpers.ts";

await useBackend("cpu");

/** A Linear(i → o) layer's parameters. */
const linear = (i: number, o: number) => i * o + o;

Deno.test("ResNetDiffusion: its parameters by hand, with the defaults on 2-D data", () => {
  const w = new ResNetDiffusion({ dIn: 2 }).init(new Rng(0));
  const block = 2 * 256 + linear(256, 512) + linear(512, 256); // norm, lin1, lin2
  const expected = linear(128, 128) + linear(128, 256) + linear(2, 256) + 3 * block + 2 * 256 +
    linear(256, 2);
  assert.equal(countParams(w), expected);
  tf.dispose(Object.values(w));
});

for (
  const [name, make] of [
    ["MLPDiffusion", (o: object) => new MLPDiffusion({ dIn: 3, dEmb: 16, layers: [32, 32], ...o })],
    [
      "ResNetDiffusion",
      (o: object) =>
        new ResNetDiffusion({ dIn: 3, dMain: 16, dHidden: 32, blocks: 2, dEmb: 8, ...o }),
    ],
  ] as [string, (o: object) => Network][]
) {
  Deno.test(`${name}: data and x0 estimate in, data out; a label only with a label table; every parameter has a gradient`, () => {
    const x = tf.randomNormal([4, 6], 0, 1, "float32", 1); // 3 data + 3 extra features
    const t = tf.tensor1d([1, 10, 100, 900]);
    const labels = tf.tensor1d([0, 1, 2, 1]);
    const plain = make({ extraIn: 3 });
    const w = plain.init(new Rng(2));
    const [y, yLabelled] = tf.tidy(() => [plain.apply(w, x, t), plain.apply(w, x, t, labels)]);
    assert.deepEqual(y.shape, [4, 3]);
    assert.deepEqual(
      Array.from(yLabelled.dataSync()),
      Array.from(y.dataSync()),
      "no table: ignored",
    );

    const conditional = make({ extraIn: 3, numClasses: 3 });
    const wc = conditional.init(new Rng(2));
    const diff = tf.tidy(() =>
      tf.max(tf.abs(tf.sub(conditional.apply(wc, x, t), conditional.apply(wc, x, t, labels))))
        .dataSync()[0]
    );
    assert.ok(diff > 1e-4, "the label changes the output");

    const vars = Object.fromEntries(
      Object.entries(wc).map(([k, v]) => [k, tf.variable(v, true, k)]),
    );
    const { value, grads } = tf.variableGrads(() =>
      tf.sum(tf.square(conditional.apply(vars, x, t, labels))) as tf.Scalar
    );
    for (const [k, g] of Object.entries(grads)) {
      assert.ok(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) > 0, `${k} gets no gradient`);
    }
    tf.dispose([
      x,
      t,
      labels,
      y,
      yLabelled,
      value,
      ...Object.values(grads),
      ...Object.values(vars),
    ]);
    tf.dispose([...Object.values(w), ...Object.values(wc)]);
  });
}
