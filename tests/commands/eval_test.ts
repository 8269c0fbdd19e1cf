/**
 * `deno task eval` (lib/commands/eval.ts): its JSON lines on stdout and the
 * `--events` file a sweep's job runner follows.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { evalCommand } from "../../lib/commands/eval.ts";
import { useBackend } from "../helpers.ts";
import { tinyToyRun } from "./runs.ts";

await useBackend("wasm");

Deno.test("eval --events: a start line with backend and device, then progress up to done = total", async () => {
  const run = await tinyToyRun();
  const events = join(run, "ev", "events.jsonl");
  try {
    const results = await evalCommand({
      run,
      metric: ["mmd"],
      n: 64,
      sampler: "ddim",
      steps: 5,
      seed: 0,
      set: [],
      backend: "wasm",
      events,
    });
    assert.equal(results.length, 1);
    const lines = fs.readFileSync(events, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const [start, ...progress] = lines;
    assert.equal(start.type, "start");
    assert.equal(start.backend, "wasm");
    assert.match(start.device, /\d+ threads?$/);
    assert.ok(progress.length >= 1, "at least the final progress line");
    for (const p of progress) {
      assert.equal(p.type, "progress");
      assert.ok(p.done <= p.total && p.total > 0);
      assert.ok(Date.parse(p.time) >= Date.parse(start.time));
    }
    const last = progress.at(-1);
    assert.equal(last.done, last.total, "the last line says it finished");
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].done > progress[i - 1].done);
  } finally {
    fs.rmSync(run, { recursive: true, force: true });
  }
});
