/**
 * The coordinator of a distributed sweep (lib/sweep/coordinator.ts) on a
 * throwaway PostgreSQL cluster (lib/store/throwaway.ts), with no worker:
 * the tests change the store as workers would and watch what it does. It
 * sends queued training jobs, and an evaluation once its checkpoint is
 * recorded; it ends a cancelled queued job, the evaluations of a training
 * job that ended without their checkpoint, and a running job whose worker
 * died with no retry left in the queue; it stops a run by ASHA through the
 * store; it puts evaluations back when their training job is queued again;
 * it sends a queued job again whose queue job ended meanwhile;
 * and it returns the counts once every planned job has ended. Without
 * PostgreSQL this fails, naming the fix.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import type { PgBoss } from "pg-boss";
import { type JobRow, openStore, type SqlExecutor, type Store } from "../../lib/store/store.ts";
import { coordinate, type CoordinateOptions } from "../../lib/sweep/coordinator.ts";
import { loadExperiment } from "../../lib/sweep/experiment.ts";
import { STOP_REQUESTED } from "../../lib/sweep/jobrun.ts";
import { configRows, type Plan, planSweep } from "../../lib/sweep/planner.ts";
import {
  enqueue,
  ensureQueue,
  openQueue,
  queueJobId,
  queueName,
  queueState,
} from "../../lib/sweep/queue.ts";
import { withCluster } from "../../lib/store/throwaway.ts";
import { until } from "../until.ts";

/**
 * A sweep of two training jobs (schedule linear, cosine) and two evaluations of each
 * (sample_steps 10, 20) recorded in a fresh database, and the plan; `fn` gets the stored jobs.
 */
async function withSweep(
  prefix: string,
  fn: (
    store: Store & SqlExecutor,
    sweepId: number,
    plan: Plan,
    train: JobRow[],
    evals: JobRow[][],
  ) => Promise<void>,
): Promise<void> {
  await withCluster(prefix, async (url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(
      file,
      `name: co
model: ddpm
data: 8gaussians
steps: 100
parameters:
  schedule: {values: [linear, cosine]}
  sample_steps: {values: [10, 20]}
`,
    );
    const { experiment } = loadExperiment(file);
    const plan = planSweep(experiment);
    const store = await openStore(url);
    try {
      const sweep = await store.upsertSweep("co", file, "h", JSON.stringify(experiment));
      await store.setConfigs(sweep.id, configRows(plan));
      await store.setSweepStatus(sweep.id, "running");
      const train: JobRow[] = [];
      const evals: JobRow[][] = [];
      for (const t of plan.train) {
        train.push(await store.ensureJob(sweep.id, t.key, "train", JSON.stringify(t), "r"));
        const mine: JobRow[] = [];
        for (const e of plan.eval.filter((e) => e.train === t.key)) {
          mine.push(await store.ensureJob(sweep.id, e.key, "eval", JSON.stringify(e), "r"));
        }
        evals.push(mine);
      }
      assert.deepEqual(evals.map((e) => e.length), [2, 2]);
      await fn(store, sweep.id, plan, train, evals);
    } finally {
      await store.close();
    }
  });
}

/**
 * A queue on `store` for `fn`, which starts the coordinator on it with `start` (polling every
 * 50 ms unless told; `lines` gets its updates, `run` is its result); the coordinator is stopped
 * (an error it ended in is thrown) and the queue closed after `fn`.
 */
async function withCoordinator(
  store: Store & SqlExecutor,
  fn: (
    boss: PgBoss,
    start: (o: Omit<CoordinateOptions, "store" | "boss" | "onUpdate" | "signal">) => {
      run: ReturnType<typeof coordinate>;
      lines: string[];
    },
  ) => Promise<void>,
): Promise<void> {
  const boss = await openQueue(store, () => {});
  const stop = new AbortController();
  const runs: Promise<unknown>[] = [];
  try {
    await fn(boss, (o) => {
      const lines: string[] = [];
      const run = coordinate({
        store,
        boss,
        pollMs: 50,
        ...o,
        onUpdate: (u) => lines.push(u.message),
        signal: stop.signal,
      });
      runs.push(run);
      return { run, lines };
    });
  } finally {
    stop.abort();
    try {
      await Promise.all(runs);
    } finally {
      await boss.stop({ timeout: 2000 });
    }
  }
}

Deno.test("coordinate: sends, ends what can never run, fails a dead worker's job, counts at the end", async () => {
  await withSweep("dmw-coord-", async (store, sweepId, plan, [a, b], [evalsA, evalsB]) => {
    // b's worker died: running at attempt 1 with no queue job (the queue has nothing to retry).
    await store.updateJob(b.id, { state: "running", attempts: 1, host: "m1" });
    // One of a's evaluations cancelled from the dashboard while queued.
    await store.requestCancel(evalsA[0].id);
    const now = async (j: JobRow) => (await store.job(j.id))!;
    await withCoordinator(store, async (boss, start) => {
      const { run, lines } = start({ sweepId, plan });
      await until(
        "the first passes",
        async () =>
          (await now(evalsB[1])).state === "failed" &&
          (await now(evalsA[0])).state === "cancelled" &&
          await queueState(boss, a) === "created",
      );
      const dead = await now(b);
      assert.deepEqual([dead.state, dead.error], [
        "failed",
        "its worker (m1) stopped answering and the queue has no retries left (1 attempts)",
      ]);
      for (const e of evalsB) {
        assert.deepEqual(
          [(await now(e)).state, (await now(e)).error],
          ["failed", `its training job ${b.key} is failed (no checkpoint at step 100)`],
        );
      }
      assert.equal((await now(evalsA[0])).error, "cancel requested");
      assert.equal(await queueState(boss, evalsA[0]), undefined, "a cancelled job is never sent");
      assert.equal(await queueState(boss, evalsA[1]), undefined, "no checkpoint yet: not sent");
      assert.equal((await now(evalsA[1])).state, "queued");

      // a's worker records its checkpoint at step 100: the evaluation goes to the queue.
      await store.putArtifact(a.id, "checkpoint", "ckpt/step-00000100");
      await until(
        "the evaluation sent",
        async () => await queueState(boss, evalsA[1]) === "created",
      );

      for (const j of [a, evalsA[1]]) await store.updateJob(j.id, { state: "done" });
      assert.deepEqual(await run, { done: 2, failed: 3 });
      for (
        const l of [
          `start (attempt 1) on m1 train ${b.key}`,
          `failed train ${b.key}: its worker (m1) stopped answering and the queue has no ` +
          `retries left (1 attempts)`,
          `cancelled eval ${evalsA[0].key}: cancel requested`,
          `failed eval ${
            evalsB[0].key
          }: its training job ${b.key} is failed (no checkpoint at step 100)`,
          `done train ${a.key}`,
          `done eval ${evalsA[1].key}`,
        ]
      ) {
        assert.ok(lines.includes(l), `${l}\nnot in:\n${lines.join("\n")}`);
      }
    });
  });
});

Deno.test("coordinate: ASHA asks the worst running run to stop through the store", async () => {
  await withSweep("dmw-coord-", async (store, sweepId, plan, [a, b]) => {
    await withCoordinator(store, async (boss, start) => {
      await ensureQueue(boss, sweepId, 3);
      // Both runs taken by a live worker (their queue jobs active), both past step 10.
      for (const j of [a, b]) {
        await enqueue(boss, store, j);
        await store.updateJob(j.id, { state: "running", attempts: 1 });
      }
      assert.equal((await boss.fetch(queueName(sweepId), { batchSize: 2 })).length, 2);
      const point = { bands: "[]", lr: 0.001, stepsPerSec: 1 };
      await store.putMetrics([
        { job: a.id, step: 10, loss: 0.1, ...point },
        { job: b.id, step: 10, loss: 0.5, ...point },
      ]);
      const { lines } = start({ sweepId, plan, earlyTerminate: { minIter: 10, eta: 2 } });
      await until("a stop request", async () => (await store.job(b.id))!.cancelRequested !== 0);
      assert.equal((await store.job(b.id))!.cancelRequested, STOP_REQUESTED);
      assert.equal((await store.job(a.id))!.cancelRequested, 0, "the best run goes on");
      assert.deepEqual(
        (await Promise.all([a, b].map((j) => store.job(j.id)))).map((j) => j!.state),
        [
          "running",
          "running",
        ],
        "the worker stops it, not the coordinator",
      );
      assert.ok(
        lines.includes(
          `asha: stop ${b.key} at step 10 (loss 0.5000 not in the best 1/2 at rung 10)`,
        ),
        lines.join("\n"),
      );
    });
  });
});

Deno.test("the coordinator puts evaluations back in the queue when their training job is queued again", async () => {
  await withCluster("dmw-pgback-", async (url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(
      file,
      `name: back
model: ddpm
data: 8gaussians
steps: 100
parameters:
  sample_steps: {values: [10, 20, 50]}
`,
    );
    const { experiment } = loadExperiment(file);
    const plan = planSweep(experiment);
    const store = await openStore(url);
    try {
      const sweep = await store.upsertSweep("back", file, "h", JSON.stringify(experiment));
      await store.setConfigs(sweep.id, configRows(plan));
      const t = plan.train[0];
      const train = await store.ensureJob(sweep.id, t.key, "train", JSON.stringify(t), "r");
      const evals: JobRow[] = [];
      for (const e of plan.eval) {
        evals.push(await store.ensureJob(sweep.id, e.key, "eval", JSON.stringify(e), "r"));
      }
      // As a sweep left them: the training failed, its evaluations ended with it (never run),
      // one of them cancelled by hand before that.
      await store.updateJob(train.id, { state: "failed", attempts: 2, error: "crash" });
      const why = `its training job ${t.key} is failed`;
      await store.updateJob(evals[0].id, { state: "failed", error: why });
      await store.updateJob(evals[1].id, { state: "failed", error: why });
      await store.updateJob(evals[2].id, { state: "cancelled", cancelRequested: 1 });
      // `r` on the training job in the dashboard, while the coordinator runs.
      await store.requeue(train.id);
      await store.setSweepStatus(sweep.id, "running");
      await withCoordinator(store, async (boss, start) => {
        const { lines } = start({ sweepId: sweep.id, plan, pollMs: 100 });
        await until("both evaluations queued again", async () => {
          const [a, b] = [await store.job(evals[0].id), await store.job(evals[1].id)];
          return a!.state === "queued" && b!.state === "queued";
        });
        for (const e of evals.slice(0, 2)) {
          const now = (await store.job(e.id))!;
          assert.deepEqual(
            [now.state, now.round, now.error],
            ["queued", 1, null],
            lines.join("\n"),
          );
        }
        assert.equal((await store.job(evals[2].id))!.state, "cancelled", "cancelled by hand stays");
        assert.equal(await queueState(boss, (await store.job(train.id))!), "created");
      });
    } finally {
      await store.close();
    }
  });
});

Deno.test("coordinate: a queued job whose queue job ended meanwhile is sent again under a new round", async () => {
  await withSweep("dmw-coord-", async (store, sweepId, plan, [a]) => {
    await withCoordinator(store, async (boss, start) => {
      start({ sweepId, plan });
      // (The queue itself exists once the coordinator has started.)
      await until("a sent", async () => await queueState(boss, a).catch(() => {}) === "created");
      // Its queue job ends while the store still has it queued (workers that stopped with it
      // spent its retries): left alone, nobody would ever run it.
      const first = queueJobId(a);
      await boss.cancel(queueName(sweepId), first);
      assert.equal(await queueState(boss, a), "cancelled");
      await until("a sent again", async () => (await store.job(a.id))!.round === 1);
      const again = (await store.job(a.id))!;
      assert.notEqual(queueJobId(again), first);
      assert.equal(await queueState(boss, again), "created");
      assert.equal(again.state, "queued");
    });
  });
});
