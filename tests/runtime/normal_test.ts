import assert from "node:assert/strict";
import { normalCdf, normalPpf } from "../../lib/runtime/normal.ts";
import { assertClose } from "../helpers.ts";

Deno.test("normal CDF and quantile function: known values and mutual inverses", () => {
  assertClose(normalCdf(1.96), 0.9750021048517795, 1e-15);
  assertClose(normalCdf(-5), 2.866515718791939e-7, 0, 1e-12);
  assertClose(normalCdf(-10), 7.61985302416047e-24, 0, 1e-12);
  assertClose(normalPpf(0.975), 1.959963984540054, 1e-13);
  assertClose(normalPpf(1e-7), -5.199337582605575, 1e-9);
  assert.equal(normalPpf(0.5), 0);
  for (const p of [1e-12, 1e-4, 0.02, 0.3, 0.7, 0.99, 1 - 1e-9]) {
    assertClose(normalCdf(normalPpf(p)), p, 0, 1e-9);
  }
});
