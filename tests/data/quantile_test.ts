import assert from "node:assert/strict";
import { QuantileTransformer } from "../../lib/data/quantile.ts";
import { normalCdf } from "../../lib/runtime/normal.ts";
import { Rng } from "../../lib/runtime/rng.ts";
import { assertClose, meanStd } from "../helpers.ts";

Deno.test("quantile transformer: forward is ~N(0, 1), inverse(forward(x)) ≈ x", () => {
  const rng = new Rng(11);
  const n = 5000;
  // A skewed, heavy-tailed column: exp of a normal.
  const x = Float64Array.from({ length: n }, () => Math.exp(1.5 * rng.normal()));
  const qt = QuantileTransformer.fit(x);
  assert.equal(qt.quantiles.length, 1000);
  const z = qt.transform(x);
  const { mean, std } = meanStd(z);
  assertClose(mean, 0, 0.02, 0, "mean");
  assertClose(std, 1, 0.03, 0, "std");
  // Tail fractions of N(0, 1).
  const frac = (t: number) => z.filter((v) => v > t).length / n;
  assertClose(frac(1), 1 - normalCdf(1), 0.01, 0, "P(z > 1)");
  assertClose(frac(-1.5), 1 - normalCdf(-1.5), 0.01, 0, "P(z > -1.5)");
  assert.ok(Math.max(...z) <= 5.2 && Math.min(...z) >= -5.2);
  const back = qt.inverse(z);
  for (let i = 0; i < n; i++) assertClose(back[i], x[i], 1e-6, 1e-6, `row ${i}`);
  // Fresh values inside the fitted range too, and monotonicity.
  const fresh = Float64Array.from({ length: 1000 }, () => Math.exp(1.5 * rng.normal()))
    .filter((v) => v > qt.quantiles[0] && v < qt.quantiles[999]);
  const round = qt.inverse(qt.transform(fresh));
  fresh.forEach((v, i) => assertClose(round[i], v, 1e-6, 1e-6));
  const sorted = Float64Array.from(fresh).sort();
  const zs = qt.transform(sorted);
  for (let i = 1; i < zs.length; i++) assert.ok(zs[i] >= zs[i - 1]);
  // Small columns use n quantiles; ties (integers) map to one value and back exactly.
  const ints = Float64Array.from({ length: 300 }, () => rng.int(5));
  const qi = QuantileTransformer.fit(ints);
  assert.equal(qi.quantiles.length, 300);
  const zi = qi.transform(ints);
  assert.deepEqual([...qi.inverse(zi)], [...ints]);
  const restored = QuantileTransformer.fromQuantiles(qt.quantiles);
  assert.deepEqual(restored.transform(x), z);
  assert.throws(() => QuantileTransformer.fit([1, NaN]), /finite/);
  assert.throws(() => QuantileTransformer.fit([]), /no values/);
});
