import assert from "node:assert/strict";
import { recordedNfe } from "../../lib/sweep/results.ts";

Deno.test("recordedNfe reads a positive nfe from an evaluation's extra JSON, else nothing", () => {
  assert.equal(recordedNfe(JSON.stringify({ step: 400, nfe: 49 })), 49);
  for (const extra of [null, undefined, "", "{}", '{"nfe": null}', '{"nfe": 0}', "not json"]) {
    assert.equal(recordedNfe(extra), undefined, String(extra));
  }
});
