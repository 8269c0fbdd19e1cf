/** The run's event log: what is written is read back, timed, and a line cut short is skipped. */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { EventLog, readEvents } from "../../lib/trainer/events.ts";

Deno.test("EventLog: events read back in order with their time; the folder is made", () => {
  const dir = join(Deno.makeTempDirSync({ prefix: "dmw-events-" }), "run");
  const log = new EventLog(dir);
  assert.equal(log.path, join(dir, "events.jsonl"));
  const t0 = Date.now();
  log.write({ type: "start", step: 0, backend: "cpu", params: 12 });
  log.write({ type: "checkpoint", step: 5, path: "ckpt-5" });
  log.write({ type: "done", step: 5 });
  const events = readEvents(dir);
  assert.deepEqual(events.map(({ time: _, ...e }) => e), [
    { type: "start", step: 0, backend: "cpu", params: 12 },
    { type: "checkpoint", step: 5, path: "ckpt-5" },
    { type: "done", step: 5 },
  ]);
  for (const e of events) {
    const t = Date.parse(e.time);
    assert.ok(t >= t0 - 1000 && t <= Date.now() + 1000, e.time);
    assert.equal(new Date(t).toISOString(), e.time);
  }
  fs.rmSync(dir, { recursive: true });
});

Deno.test("readEvents: no log is no events; a line cut short by a crash is skipped, the rest stand", () => {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-events-" });
  assert.deepEqual(readEvents(dir), []);
  const log = new EventLog(dir);
  log.write({ type: "done", step: 3 });
  fs.appendFileSync(log.path, '{"type":"train","step":4,"lo');
  const events = readEvents(dir);
  assert.deepEqual(events.map((e) => [e.type, e.step]), [["done", 3]]);
  fs.rmSync(dir, { recursive: true });
});
