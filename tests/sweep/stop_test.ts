/**
 * Stopping a sweep and running it twice (SQLite store, the fake worker):
 * Ctrl-C marks the sweep stopped and puts its killed jobs back in the queue;
 * a second sweep process of the same experiment with its runs in another
 * folder refuses to start instead of stopping the first one's live jobs.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { watchPlain } from "../../lib/sweep/status.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";

const EXPERIMENT = `name: stoppable
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
steps: 200
parameters:
  schedule: {values: [linear, cosine]}
`;

const fake = fakeWorker();

/** A sweep process (fixtures/run_sweep.ts) with slow fake training steps. */
function sweepProcess(file: string, storePath: string, runsDir: string): Deno.ChildProcess {
  const script = fileURLToPath(new URL("./fixtures/run_sweep.ts", import.meta.url));
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, file, storePath, runsDir],
    env: { FAKE_SLEEP_MS: "200" },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

async function untilRunning(storePath: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (fs.existsSync(storePath)) {
      const store = await openStore(storePath, { readOnly: true });
      try {
        const s = await store.sweep("stoppable");
        const jobs = s ? await store.jobs(s.id) : [];
        if (jobs.some((j) => j.state === "running" && j.pid)) return;
      } catch {
        // the sweep process is still creating the tables
      } finally {
        await store.close();
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no job started within 30 s");
}

function setup() {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-stop-" });
  const file = join(dir, "exp.yaml");
  fs.writeFileSync(file, EXPERIMENT);
  return { dir, file, storePath: join(dir, "store.sqlite") };
}

Deno.test("Ctrl-C marks the sweep stopped and its running jobs queued; a rerun finishes it", async () => {
  const { dir, file, storePath } = setup();
  try {
    const p = sweepProcess(file, storePath, join(dir, "runs"));
    await untilRunning(storePath);
    p.kill("SIGINT");
    const status = await p.status;
    assert.equal(status.code, 0, "the sweep ends normally on Ctrl-C");
    const store = await openStore(storePath, { readOnly: true });
    try {
      const sweep = (await store.sweep("stoppable"))!;
      assert.equal(sweep.status, "stopped");
      const jobs = await store.jobs(sweep.id);
      assert.ok(jobs.every((j) => j.state !== "running"), JSON.stringify(jobs.map((j) => j.state)));
      assert.ok(jobs.some((j) => j.state === "queued"));
    } finally {
      await store.close();
    }
    assert.match(
      await watchPlain({ storePath, sweep: "stoppable" }),
      /sweep stoppable \(stopped\)/,
    );
    const r = await runSweep({
      file,
      storePath,
      runsDir: join(dir, "runs"),
      workerCommand: fake,
      onEvent: () => {},
    });
    assert.deepEqual(r, { name: "stoppable", done: 4, failed: 0 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("a second sweep process with its runs elsewhere leaves the first one's live jobs alone", async () => {
  const { dir, file, storePath } = setup();
  try {
    const first = sweepProcess(file, storePath, join(dir, "runs-1"));
    await untilRunning(storePath);
    await assert.rejects(
      runSweep({
        file,
        storePath,
        runsDir: join(dir, "runs-2"),
        workerCommand: fake,
        onEvent: () => {},
      }),
      /is running under sweep process \d+/,
    );
    assert.ok((await first.status).success);
    const store = await openStore(storePath, { readOnly: true });
    try {
      const sweep = (await store.sweep("stoppable"))!;
      assert.equal(sweep.status, "done");
      const jobs = await store.jobs(sweep.id);
      assert.deepEqual(jobs.map((j) => [j.state, j.attempts]), Array(4).fill(["done", 1]));
    } finally {
      await store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
