/**
 * The configuration keys' ranges: declared once with each key, checked the
 * same way for `--set` and experiment files, named in messages and --help.
 */
import assert from "node:assert/strict";
import type { KeySpec } from "../../lib/models/model.ts";
import {
  CHANNELS,
  COUNT,
  defaultsOf,
  describeRange,
  inRange,
  OPEN_UNIT,
  resolveConfig,
  TRAINER_KEYS,
} from "../../lib/models/config.ts";
import { MODELS } from "../../lib/models/registry.ts";

Deno.test("ranges read as a user would write them", () => {
  assert.equal(describeRange(COUNT), "an integer ≥ 1");
  assert.equal(describeRange(OPEN_UNIT), "a number in (0, 1)");
  assert.equal(describeRange({ min: 0, below: 1 }), "a number in [0, 1)");
  assert.equal(describeRange({ above: 0 }), "a number > 0");
  assert.equal(describeRange(CHANNELS), "an integer ≥ 8, a multiple of 8");
});

Deno.test("inRange refuses non-finite numbers and each bound", () => {
  for (const v of [NaN, Infinity, -Infinity]) assert.equal(inRange(v), false, String(v));
  assert.equal(inRange(3, COUNT), true);
  assert.equal(inRange(0, COUNT), false);
  assert.equal(inRange(2.5, COUNT), false);
  assert.equal(inRange(0.5, OPEN_UNIT), true);
  assert.equal(inRange(1, OPEN_UNIT), false);
  assert.equal(inRange(0, OPEN_UNIT), false);
  assert.equal(inRange(16, CHANNELS), true);
  assert.equal(inRange(12, CHANNELS), false);
});

Deno.test("a value out of its key's range fails with the key, the range and the help", () => {
  const cases: [Record<string, number | number[]>, RegExp][] = [
    [{ steps: -10 }, /--set: steps must be an integer ≥ 1 \(training steps\), got -10$/],
    [{ steps: 50.5 }, /steps must be an integer ≥ 1/],
    [{ steps: 0 }, /steps must be an integer ≥ 1/],
    [{ batch: 0.5 }, /batch must be an integer ≥ 0 \(batch size/],
    [{ batch: -3 }, /batch must be an integer ≥ 0/],
    [{ lr: -1 }, /lr must be a number ≥ 0 \(peak learning rate/],
    [{ lr: NaN }, /lr must be a number ≥ 0 .*got null/],
    [{ ema: [0.999, 1.5] }, /ema must be a list, each a number in \(0, 1\) .*got \[0\.999,1\.5\]/],
    [{ ch: 12 }, /ch must be an integer ≥ 8, a multiple of 8/],
    [{ bands: 21 }, /bands must be an integer in \[1, 20\]/],
  ];
  for (const [given, want] of cases) {
    assert.throws(() => resolveConfig(MODELS.ddpm.keys, given), want, JSON.stringify(given));
  }
  assert.throws(
    () => resolveConfig(MODELS.tabddpm.keys, { holdout: 1 }, "exp.yaml: holdout"),
    /exp\.yaml: holdout: holdout must be a number in \[0, 1\)/,
  );
});

Deno.test("every numeric key of the trainer and the zoo declares a range its default meets", () => {
  for (
    const [owner, keys] of [
      ["trainer", TRAINER_KEYS as Record<string, KeySpec>],
      ...Object.entries(MODELS).map(([n, e]) => [n, e.keys] as const),
    ] as const
  ) {
    for (const [k, spec] of Object.entries(keys)) {
      const nums = typeof spec.default === "number"
        ? [spec.default]
        : Array.isArray(spec.default) && spec.default.every((v) => typeof v === "number")
        ? (spec.default as number[])
        : null;
      const numeric = typeof spec.default === "number" ||
        (Array.isArray(spec.default) && spec.range !== undefined);
      if (!numeric) continue;
      assert.ok(spec.range, `${owner}.${k} has no range`);
      for (const v of nums ?? []) assert.ok(inRange(v, spec.range), `${owner}.${k} default ${v}`);
    }
  }
});

Deno.test("defaultsOf: each key's default; resolving nothing gives the trainer's and the model's", () => {
  const keys = { a: { default: 3, help: "a" }, b: { default: ["x"], help: "b" } };
  assert.deepEqual(defaultsOf(keys), { a: 3, b: ["x"] });
  const resolved = resolveConfig(keys, {});
  assert.equal(resolved.steps, TRAINER_KEYS.steps.default);
  assert.deepEqual(resolved.ema, TRAINER_KEYS.ema.default);
  assert.deepEqual([resolved.a, resolved.b], [3, ["x"]]);
  assert.equal(resolveConfig(keys, { a: 5 }).a, 5);
});
