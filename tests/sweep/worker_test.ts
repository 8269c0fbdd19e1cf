/**
 * The distributed worker (lib/sweep/worker.ts) on its own: the store it
 * needs, a database it waits for, and on a throwaway PostgreSQL cluster
 * (lib/store/throwaway.ts) one worker running the fake worker's jobs
 * (fixtures/fake_worker.ts) from the queue: a training job resumed from the
 * checkpoint in the store in its own attempt folder, its checkpoints stored
 * and its evaluation sent to the queue, the evaluation run in a scratch
 * folder that goes after it; a job settled meanwhile and a sweep not running
 * are left alone. Without PostgreSQL the cluster tests fail, naming the fix.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import type { PgBoss } from "pg-boss";
import { fileURLToPath } from "node:url";
import { type JobRow, openStore, type SqlExecutor, type Store } from "../../lib/store/store.ts";
import { enqueue, ensureQueue, openQueue, queueState } from "../../lib/sweep/queue.ts";
import {
  REACH_RETRY_MS,
  runWorker,
  workerCommand,
  type WorkerOptions,
} from "../../lib/sweep/worker.ts";
import type { EvalJob, TrainJob } from "../../lib/sweep/planner.ts";
import { withCluster } from "../../lib/store/throwaway.ts";
import { fakeWorker } from "./fixtures/fake_command.ts";
import { until } from "../until.ts";

const fake = fakeWorker("FAKE_SAMPLES=1");

Deno.test("workerCommand: an SQLite store is refused, naming what a worker needs", async () => {
  await assert.rejects(
    workerCommand({ storePath: "runs/store.sqlite", onEvent: () => {} }),
    (e: Error) => {
      assert.equal(
        e.message,
        "--store runs/store.sqlite: a worker needs the sweep's PostgreSQL store " +
          "(postgres://user@host:port/db); a sweep on an SQLite store runs its jobs itself",
      );
      return true;
    },
  );
});

Deno.test("deno task worker: --help teaches it; an SQLite store ends it with that message and exit 1", async () => {
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  const run = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), { args: ["run", "-A", main, "worker", ...args] }).output();
  const help = await run("--help");
  const text = new TextDecoder().decode(help.stdout);
  assert.equal(help.code, 0);
  for (const s of ["--store <url>", "--concurrency <n>", "--threads <n>", "--runs <dir>"]) {
    assert.ok(text.includes(s), s);
  }
  assert.match(text, /deno task worker --store postgres:\/\/dmw:PASSWORD@db-host\/dmw/);
  assert.match(text, /Ctrl-C kills the\s+running jobs and puts them back in the queue/);
  const sqlite = await run("--store", "runs/store.sqlite");
  assert.equal(sqlite.code, 1);
  assert.match(
    new TextDecoder().decode(sqlite.stderr),
    /--store runs\/store\.sqlite: a worker needs the sweep's PostgreSQL store/,
  );
});

Deno.test("workerCommand: a database not up yet is waited for with one line; aborting ends the wait", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const lines: string[] = [];
  const abort = new AbortController();
  const t0 = Date.now();
  const worker = workerCommand({
    storePath: `postgres://dmw@127.0.0.1:${port}/dmw`,
    onEvent: (line) => {
      lines.push(line);
      // Ctrl-C a moment later, while the worker waits.
      setTimeout(() => abort.abort(), 200);
    },
    signal: abort.signal,
  });
  await worker;
  assert.ok(Date.now() - t0 < REACH_RETRY_MS, "the abort ends the wait at once");
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0],
    new RegExp(
      `^\\d\\d:\\d\\d:\\d\\d worker on ${Deno.hostname()}: .*; trying again every 5 s \\(Ctrl-C stops\\)$`,
    ),
  );
});

/**
 * A throwaway database's store and queue for `fn`, which starts workers on them with `start`
 * (polling every 100 ms; the function it returns stops that one); every worker is stopped, and
 * the queue and store closed, after `fn`.
 */
async function withWorkers(
  fn: (
    store: Store & SqlExecutor,
    boss: PgBoss,
    dir: string,
    start: (o: Omit<WorkerOptions, "store" | "boss" | "signal">) => () => Promise<void>,
  ) => Promise<void>,
): Promise<void> {
  await withCluster("dmw-worker-", async (url, dir) => {
    const store = await openStore(url);
    const boss = await openQueue(store, () => {});
    const stops: (() => Promise<void>)[] = [];
    const start = (o: Omit<WorkerOptions, "store" | "boss" | "signal">) => {
      const stop = new AbortController();
      const worker = runWorker({ store, boss, pollMs: 100, ...o, signal: stop.signal });
      stops.push(async () => {
        stop.abort();
        await worker;
      });
      return stops.at(-1)!;
    };
    try {
      await fn(store, boss, dir, start);
    } finally {
      for (const stop of stops) await stop();
      await boss.stop({ timeout: 2000 });
      await store.close();
    }
  });
}

const TRAIN: TrainJob = {
  key: "ddpm-8gaussians-w",
  model: "ddpm",
  data: "8gaussians",
  config: { steps: 100, seed: 1 },
};
const EVAL: EvalJob = {
  key: "ev-w",
  train: TRAIN.key,
  checkpoint: 100,
  settings: { sample_steps: 20 },
  metrics: ["mmd"],
};

Deno.test("runWorker: a training job resumed from its stored checkpoint, then its evaluation", async () => {
  await withWorkers(async (store, boss, dir, start) => {
    const sweep = await store.upsertSweep("w", "exp.yaml", "h", "{}");
    await store.setSweepStatus(sweep.id, "running");
    await ensureQueue(boss, sweep.id, 2);
    const train = await store.ensureJob(sweep.id, TRAIN.key, "train", JSON.stringify(TRAIN), "r");
    const ev = await store.ensureJob(sweep.id, EVAL.key, "eval", JSON.stringify(EVAL), "r");
    // As a first attempt on another machine left it: its checkpoint at step 50 in the store.
    const elsewhere = join(dir, "elsewhere");
    fs.mkdirSync(join(elsewhere, "ckpt/step-00000050"), { recursive: true });
    fs.writeFileSync(join(elsewhere, "ckpt/step-00000050/state.json"), '{"step":50}');
    fs.writeFileSync(join(elsewhere, "config.json"), "{}");
    await store.putFile(
      train.id,
      "ckpt/step-00000050/state.json",
      join(elsewhere, "ckpt/step-00000050/state.json"),
    );
    await store.putFile(train.id, "config.json", join(elsewhere, "config.json"));
    await store.putArtifact(train.id, "checkpoint", "ckpt/step-00000050");
    await store.updateJob(train.id, { attempts: 1, error: "its machine died" });
    await enqueue(boss, store, (await store.job(train.id))!);

    const runs = join(dir, "runs");
    const updates: string[] = [];
    const problems: string[] = [];
    start({
      runsDir: runs,
      workerCommand: fake,
      concurrency: 1,
      onUpdate: (u) => u.type !== "train" && updates.push(u.message),
      onProblem: (l) => problems.push(l),
    });
    const state = (j: JobRow) => async () => {
      const now = (await store.job(j.id))!;
      return now.state === "done" || now.state === "failed" ? now : undefined;
    };
    const t = await until("the training job", state(train));
    assert.equal(t.state, "done", `${t.error}\n${updates.join("\n")}\n${problems.join("\n")}`);
    assert.deepEqual([t.attempts, t.host, t.pid], [2, Deno.hostname(), null]);
    const attempt = join(runs, "w", TRAIN.key, "a2");
    assert.equal(
      fs.readFileSync(join(attempt, "invocations.log"), "utf8"),
      "train from 50\n",
      "resumed from the stored checkpoint in its own attempt folder",
    );
    assert.deepEqual((await store.metricsSince(t.id, 0)).map((p) => p.step), [
      60,
      70,
      80,
      90,
      100,
    ]);
    assert.deepEqual(await store.files(t.id, "ckpt/"), [
      "ckpt/step-00000050/state.json",
      "ckpt/step-00000100/state.json",
    ]);
    assert.deepEqual((await store.artifacts(t.id)).map((a) => a.path).sort(), [
      "ckpt/step-00000050",
      "ckpt/step-00000100",
    ]);
    assert.equal(await queueState(boss, t), "completed");

    // The checkpoint at step 100 sent the evaluation to the queue; the worker ran it.
    const e = await until("the evaluation", state(ev));
    assert.equal(e.state, "done", `${e.error}\n${updates.join("\n")}`);
    assert.equal(e.attempts, 1);
    const evals = await store.evalsForSweep(sweep.id);
    assert.deepEqual(evals.map((v) => [v.metric, v.value]), [["mmd", 1 / 100 + 20 / 1000]]);
    assert.deepEqual(await store.files(e.id, "samples/"), [`samples/${EVAL.key}.csv`]);
    assert.ok(
      !fs.existsSync(join(runs, "w", TRAIN.key, `eval-${EVAL.key}-a1`)),
      "the evaluation's scratch folder is removed",
    );
    assert.ok(
      updates.includes(
        `start eval ${EVAL.key} on ${Deno.hostname()} (step 100 sample_steps=20)`,
      ),
      updates.join("\n"),
    );
    assert.ok(updates.includes(`done train ${TRAIN.key}`), updates.join("\n"));
    assert.deepEqual(problems, []);
  });
});

Deno.test("runWorker: a job settled meanwhile is completed unrun; a sweep not running is not served", async () => {
  await withWorkers(async (store, boss, dir, start) => {
    const running = await store.upsertSweep("on", "a.yaml", "h", "{}");
    const finished = await store.upsertSweep("off", "b.yaml", "h", "{}");
    await store.setSweepStatus(running.id, "running");
    await store.setSweepStatus(finished.id, "stopped");
    const jobs: JobRow[] = [];
    for (const sweep of [running, finished]) {
      await ensureQueue(boss, sweep.id, 2);
      const j = await store.ensureJob(sweep.id, TRAIN.key, "train", JSON.stringify(TRAIN), "r");
      await enqueue(boss, store, j);
      jobs.push(j);
    }
    // Cancelled from the dashboard after it was sent to the queue.
    await store.updateJob(jobs[0].id, { state: "cancelled", cancelRequested: 1 });
    const runs = join(dir, "runs");
    start({ runsDir: runs, workerCommand: fake });
    await until(
      "the cancelled job's queue job",
      async () => await queueState(boss, jobs[0]) === "completed" ? true : undefined,
    );
    // A few more polls: the stopped sweep's job stays in its queue.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await queueState(boss, jobs[1]), "created");
    assert.deepEqual(
      (await Promise.all(jobs.map((j) => store.job(j.id)))).map((j) => [j!.state, j!.attempts]),
      [["cancelled", 0], ["queued", 0]],
    );
    assert.ok(!fs.existsSync(runs), "nothing ran");
  });
});

Deno.test("runWorker: stopped mid-job, the job goes back to the queue and the next worker resumes it", async () => {
  await withWorkers(async (store, boss, dir, start) => {
    const sweep = await store.upsertSweep("w", "exp.yaml", "h", "{}");
    await store.setSweepStatus(sweep.id, "running");
    await ensureQueue(boss, sweep.id, 2);
    const train = await store.ensureJob(sweep.id, TRAIN.key, "train", JSON.stringify(TRAIN), "r");
    await enqueue(boss, store, train);
    const hold = join(dir, "never");
    const updates: string[] = [];
    const machine = (i: number, command: string[]) =>
      start({
        runsDir: join(dir, `m${i}`),
        workerCommand: command,
        concurrency: 1,
        onUpdate: (u) => u.type !== "train" && updates.push(u.message),
      });
    // The first machine holds the run after its step-50 checkpoint; then it is stopped (Ctrl-C).
    const stopFirst = machine(0, fakeWorker(`FAKE_HOLD=50:${hold}`));
    await until(
      "the stored step-50 checkpoint",
      async () => (await store.artifacts(train.id)).length > 0 ? true : undefined,
    );
    await stopFirst();
    const back = (await store.job(train.id))!;
    assert.deepEqual([back.state, back.attempts, back.pid], ["queued", 1, null]);
    assert.equal(await queueState(boss, back), "retry", "failed in the queue, to be handed out");
    assert.ok(
      updates.includes(
        `stopped train ${TRAIN.key} with the worker on ${Deno.hostname()}; queued again`,
      ),
      updates.join("\n"),
    );

    machine(1, fake);
    const done = await until("the training job", async () => {
      const now = (await store.job(train.id))!;
      return now.state === "done" || now.state === "failed" ? now : undefined;
    });
    assert.deepEqual([done.state, done.attempts], ["done", 2], updates.join("\n"));
    assert.equal(
      fs.readFileSync(join(dir, "m1", "w", TRAIN.key, "a2", "invocations.log"), "utf8"),
      "train from 50\n",
      "the next machine resumed from the stored checkpoint",
    );
    assert.deepEqual(
      (await store.metricsSince(train.id, 0)).map((p) => p.step),
      [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    );
    assert.equal(await queueState(boss, done), "completed");
  });
});
