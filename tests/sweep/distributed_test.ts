/**
 * A distributed sweep on a throwaway PostgreSQL cluster (tests/store/postgres.ts):
 * a coordinator that runs no jobs itself and two workers, each in its own runs
 * folder as if on its own machine, running the fake worker
 * (fixtures/run_worker.ts). Faults: a worker killed with kill -9 (its whole
 * process group, the training child with it) mid-training, and the database
 * restarted mid-sweep. Without PostgreSQL this fails, naming the fix.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PgBoss } from "pg-boss";
import { openStore, type Store } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { recordedCheckpoints } from "../../lib/sweep/executor.ts";
import { queueName } from "../../lib/sweep/queue.ts";
import { startPostgres, type TestPostgres } from "../store/postgres.ts";

const EXPERIMENT = `name: dist
model: ddpm
data: 8gaussians
metric: {name: mmd, goal: minimize}
max_failures: 1
parameters:
  schedule: {values: [linear, cosine]}
  steps: {values: [100, 200]}
  sample_steps: {values: [10, 20]}
`;

/** A worker process in its own process group (a "machine"), writing its lines to `log`. */
function startWorker(url: string, runsDir: string, log: string): Deno.ChildProcess {
  const script = fileURLToPath(new URL("./fixtures/run_worker.ts", import.meta.url));
  return new Deno.Command("sh", {
    args: [
      "-c",
      'exec "$@" >"$LOG" 2>&1',
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      script,
      url,
      runsDir,
    ],
    env: { LOG: log, FAKE_SLEEP_MS: "250" },
    stdin: "null",
    detached: true,
  }).spawn();
}

/** Kills a worker's process group: the worker and the job it runs, as a dying machine would. */
function killMachine(worker: Deno.ChildProcess): void {
  try {
    Deno.kill(-worker.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

async function until<T>(
  what: string,
  f: () => T | undefined | Promise<T | undefined>,
  ms = 60000,
): Promise<T> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Every queue job of the sweep, completed ones included, as pg-boss keeps them. */
async function queueJobs(url: string, sweepId: number) {
  const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
  boss.on("error", () => {});
  await boss.start();
  try {
    return await boss.findJobs<{ job: number }>(queueName(sweepId));
  } finally {
    await boss.stop({ timeout: 2000 });
  }
}

/** The checks every finished distributed sweep must pass; returns the store's jobs. */
async function checkFinished(store: Store, url: string) {
  const sweep = (await store.sweep("dist"))!;
  assert.equal(sweep.status, "done");
  const jobs = await store.jobs(sweep.id);
  assert.equal(jobs.length, 10, "2 training jobs and 8 evaluations");
  for (const j of jobs) assert.equal(j.state, "done", `${j.kind} ${j.key}: ${j.error}`);
  for (const t of jobs.filter((j) => j.kind === "train")) {
    const points = await store.metricsSince(t.id, 0);
    const steps = points.map((p) => p.step);
    assert.deepEqual(
      steps,
      Array.from({ length: 20 }, (_, i) => 10 * (i + 1)),
      "no gap, no repeat",
    );
    // The fake trainer's loss is c / step: one curve, whichever attempt logged a point.
    for (const p of points) assert.ok(Math.abs(p.loss * p.step - points[0].loss * 10) < 1e-9);
  }
  const evals = await store.evalsForSweep(sweep.id);
  assert.equal(evals.length, 8, "every evaluation present");
  // None completed twice: one completed queue job per store job.
  const completed = (await queueJobs(url, sweep.id)).filter((q) => q.state === "completed");
  const perJob = new Map<number, number>();
  for (const q of completed) perJob.set(q.data.job, (perJob.get(q.data.job) ?? 0) + 1);
  assert.deepEqual(
    [...perJob.entries()].sort((a, b) => a[0] - b[0]),
    jobs.map((j) => [j.id, 1]),
  );
  return jobs;
}

async function withCluster(fn: (pg: TestPostgres, url: string, dir: string) => Promise<void>) {
  const pg = await startPostgres();
  const dir = Deno.makeTempDirSync({ prefix: "dmw-dist-" });
  try {
    await fn(pg, await pg.newDatabase(), dir);
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("a worker killed mid-training: its job resumes on the other from the stored checkpoint", async () => {
  await withCluster(async (_pg, url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    const machines = ["a", "b"].map((m) => join(dir, m));
    const workers = machines.map((m) => startWorker(url, join(m, "runs"), `${m}.log`));
    const lines: string[] = [];
    const sweep = runSweep({
      file,
      storePath: url,
      runsDir: join(dir, "coordinator"),
      localWorker: false,
      onEvent: (l) => lines.push(l),
    });
    const store = await openStore(url);
    try {
      // A training job with a checkpoint in the store, still training: kill its machine.
      const victim = await until("a training job past its first checkpoint", async () => {
        const s = await store.sweep("dist");
        if (!s) return undefined;
        for (const j of await store.jobs(s.id)) {
          if (j.kind !== "train" || j.state !== "running") continue;
          const steps = (await store.metricsSince(j.id, 0)).map((m) => m.step);
          if ((await recordedCheckpoints(store, j.id)).size && steps.at(-1)! < 150) return j;
        }
        return undefined;
      });
      const machine = machines.findIndex((m) =>
        fs.existsSync(join(m, "runs", "dist", victim.key, `a${victim.attempts}`))
      );
      assert.ok(machine >= 0, "the job's attempt folder is on one of the machines");
      killMachine(workers[machine]);
      await workers[machine].status;

      const r = await sweep;
      assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, lines.join("\n"));
      const jobs = await checkFinished(store, url);
      const resumed = jobs.find((j) => j.id === victim.id)!;
      assert.equal(resumed.attempts, victim.attempts + 1, "one more attempt, on the other machine");
      const survivor = machines[1 - machine];
      const log = fs.readFileSync(
        join(survivor, "runs", "dist", victim.key, `a${resumed.attempts}`, "invocations.log"),
        "utf8",
      );
      const from = Number(log.match(/^train from (\d+)$/m)?.[1]);
      assert.ok(from >= 50, `resumed from a stored checkpoint, not 0: ${log}`);
      assert.ok(
        !fs.existsSync(join(machines[machine], "runs", "dist", victim.key, `a${resumed.attempts}`)),
        "the retry ran in its own folder on the surviving machine",
      );
    } finally {
      await store.close();
      for (const w of workers) killMachine(w);
      await Promise.all(workers.map((w) => w.status));
    }
  });
});

Deno.test("a frozen worker's job goes to the other; woken, it kills its child and records nothing", async () => {
  await withCluster(async (_pg, url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    const machines = ["a", "b"].map((m) => join(dir, m));
    const workers = machines.map((m) => startWorker(url, join(m, "runs"), `${m}.log`));
    const lines: string[] = [];
    const sweep = runSweep({
      file,
      storePath: url,
      runsDir: join(dir, "coordinator"),
      localWorker: false,
      onEvent: (l) => lines.push(l),
    });
    const store = await openStore(url);
    try {
      const victim = await until("a training job past its first checkpoint", async () => {
        const s = await store.sweep("dist");
        for (const j of s ? await store.jobs(s.id) : []) {
          if (j.kind !== "train" || j.state !== "running" || !j.pid) continue;
          if ((await recordedCheckpoints(store, j.id)).size) return j;
        }
        return undefined;
      });
      const machine = machines.findIndex((m) =>
        fs.existsSync(join(m, "runs", "dist", victim.key, `a${victim.attempts}`))
      );
      // The worker process alone stops (its training child goes on, unheard); SIGCONT wakes it.
      Deno.kill(workers[machine].pid, "SIGSTOP");
      const r = await sweep;
      assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, lines.join("\n"));
      const before = await store.metricsSince(victim.id, 0);
      Deno.kill(workers[machine].pid, "SIGCONT");
      const log = `${machines[machine]}.log`;
      await until(
        "the woken worker to give the job up",
        () => /lost train/.test(fs.readFileSync(log, "utf8")) ? true : undefined,
        30000,
      );
      await until("its training child to be gone", () => {
        try {
          Deno.kill(victim.pid!, "SIGCONT");
          return undefined;
        } catch {
          return true;
        }
      }, 10000);
      await new Promise((r) => setTimeout(r, 1000));
      const after = await store.job(victim.id);
      assert.equal(after!.state, "done");
      assert.equal(after!.attempts, victim.attempts + 1, "the other worker's attempt stands");
      assert.deepEqual(await store.metricsSince(victim.id, 0), before, "nothing more recorded");
      await checkFinished(store, url);
    } finally {
      await store.close();
      for (const w of workers) killMachine(w);
      await Promise.all(workers.map((w) => w.status));
    }
  });
});

Deno.test("PostgreSQL restarted mid-sweep: the coordinator and the workers reconnect and finish", async () => {
  await withCluster(async (pg, url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    const workers = ["a", "b"].map((m) =>
      startWorker(url, join(dir, m, "runs"), join(dir, `${m}.log`))
    );
    const lines: string[] = [];
    const sweep = runSweep({
      file,
      storePath: url,
      runsDir: join(dir, "coordinator"),
      localWorker: false,
      onEvent: (l) => lines.push(l),
    });
    try {
      const store = await openStore(url);
      try {
        await until("a training step in the store", async () => {
          const s = await store.sweep("dist");
          const jobs = s ? await store.jobs(s.id) : [];
          for (const j of jobs.filter((j) => j.kind === "train")) {
            if ((await store.metricsSince(j.id, 0)).length >= 3) return true;
          }
          return undefined;
        });
      } finally {
        await store.close();
      }
      await pg.halt();
      await new Promise((r) => setTimeout(r, 3000));
      await pg.start();
      const r = await sweep;
      assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, lines.join("\n"));
      assert.ok(
        lines.some((l) => /coordinator: .*trying again/.test(l)),
        `the coordinator saw the database go away:\n${lines.join("\n")}`,
      );
      for (const [i, w] of workers.entries()) {
        const exited = await Promise.race([
          w.status.then(() => true),
          new Promise((r) => setTimeout(() => r(false), 200)),
        ]);
        const log = join(dir, `${"ab"[i]}.log`);
        assert.ok(
          !exited,
          `worker ${"ab"[i]} survived the restart:\n${fs.readFileSync(log, "utf8")}`,
        );
      }
      const store2 = await openStore(url);
      try {
        await checkFinished(store2, url);
      } finally {
        await store2.close();
      }
    } finally {
      for (const w of workers) killMachine(w);
      await Promise.all(workers.map((w) => w.status));
    }
  });
});
