/**
 * A distributed sweep on a throwaway PostgreSQL cluster (lib/store/throwaway.ts):
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
import { type JobRow, openStore, type Store } from "../../lib/store/store.ts";
import { runSweep } from "../../lib/sweep/commands.ts";
import { recordedCheckpoints } from "../../lib/sweep/executor.ts";
import { queueName } from "../../lib/sweep/queue.ts";
import { withCluster } from "../../lib/store/throwaway.ts";
import { until as waitFor } from "../until.ts";

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

/**
 * A worker process in its own process group (a "machine"), writing its lines to `log`; with
 * `hold`, its training runs wait after step 100 (checkpoint written) until that file exists.
 */
function startWorker(url: string, runsDir: string, log: string, hold?: string): Deno.ChildProcess {
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
    env: { LOG: log, FAKE_SLEEP_MS: "250", ...(hold ? { FAKE_HOLD: `100:${hold}` } : {}) },
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

/**
 * Waits for `f` to give a value: a generous deadline, as every wait here is on a condition and
 * a loaded machine starts Deno slowly.
 */
const until = <T>(what: string, f: () => T | undefined | Promise<T | undefined>) =>
  waitFor(what, f, 180_000, 200);

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

/**
 * A sweep of `file` coordinated from this process (no local worker); `stop` aborts it and waits
 * for it, so that a failing test never leaves it running into the next one.
 */
function coordinator(url: string, file: string, dir: string) {
  const lines: string[] = [];
  const abort = new AbortController();
  const result = runSweep({
    file,
    storePath: url,
    runsDir: join(dir, "coordinator"),
    localWorker: false,
    onEvent: (l) => lines.push(l),
    signal: abort.signal,
  });
  // Awaited by the test or by stop(); never an unhandled rejection between the two.
  result.catch(() => {});
  const stop = async () => {
    abort.abort();
    await result.catch(() => {});
  };
  return { lines, result, stop };
}

/** The running training job that has recorded its checkpoint at step 100 (where it is held). */
async function heldTraining(store: Store): Promise<JobRow | undefined> {
  const s = await store.sweep("dist");
  for (const j of s ? await store.jobs(s.id) : []) {
    if (j.kind !== "train" || j.state !== "running" || !j.pid) continue;
    if ((await recordedCheckpoints(store, j.id)).has(100)) return j;
  }
  return undefined;
}

/** What {@link withHeldJob} hands its body. */
interface HeldJob {
  url: string;
  machines: string[];
  workers: Deno.ChildProcess[];
  sweep: ReturnType<typeof coordinator>;
  store: Store;
  /** Written to let held training jobs go on. */
  release: string;
  /** A training job held past its step-100 checkpoint, and the machine running it. */
  victim: JobRow;
  machine: number;
}

/**
 * Two worker machines and a coordinator on EXPERIMENT, in a throwaway
 * cluster, with a training job held at its stored checkpoint; `body` does
 * something to that job's machine. Everything is stopped after.
 */
async function withHeldJob(body: (h: HeldJob) => Promise<void>): Promise<void> {
  await withCluster("dmw-dist-", async (url, dir) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    const release = join(dir, "release");
    const machines = ["a", "b"].map((m) => join(dir, m));
    const workers = machines.map((m) => startWorker(url, join(m, "runs"), `${m}.log`, release));
    const sweep = coordinator(url, file, dir);
    const store = await openStore(url);
    try {
      const victim = await until(
        "a training job held past its checkpoint",
        () => heldTraining(store),
      );
      const machine = machines.findIndex((m) =>
        fs.existsSync(join(m, "runs", "dist", victim.key, `a${victim.attempts}`))
      );
      assert.ok(machine >= 0, "the job's attempt folder is on one of the machines");
      await body({ url, machines, workers, sweep, store, release, victim, machine });
    } finally {
      await sweep.stop();
      await store.close();
      for (const w of workers) killMachine(w);
      await Promise.all(workers.map((w) => w.status));
    }
  });
}

Deno.test("a worker killed mid-training: its job resumes on the other from the stored checkpoint", async () => {
  await withHeldJob(async ({ url, machines, workers, sweep, store, release, victim, machine }) => {
    killMachine(workers[machine]);
    await workers[machine].status;
    fs.writeFileSync(release, "");

    const r = await sweep.result;
    assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, sweep.lines.join("\n"));
    const jobs = await checkFinished(store, url);
    const resumed = jobs.find((j) => j.id === victim.id)!;
    assert.equal(resumed.attempts, victim.attempts + 1, "one more attempt, on the other machine");
    const survivor = machines[1 - machine];
    const log = fs.readFileSync(
      join(survivor, "runs", "dist", victim.key, `a${resumed.attempts}`, "invocations.log"),
      "utf8",
    );
    assert.match(log, /^train from 100$/m, "resumed from the stored checkpoint, not 0");
    assert.ok(
      !fs.existsSync(join(machines[machine], "runs", "dist", victim.key, `a${resumed.attempts}`)),
      "the retry ran in its own folder on the surviving machine",
    );
  });
});

Deno.test("a frozen worker's job goes to the other; woken, it kills its child and records nothing", async () => {
  await withHeldJob(async ({ url, machines, workers, sweep, store, release, victim, machine }) => {
    // The worker process alone stops (its training child goes on, unheard); SIGCONT wakes it.
    Deno.kill(workers[machine].pid, "SIGSTOP");
    fs.writeFileSync(release, "");
    const r = await sweep.result;
    assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, sweep.lines.join("\n"));
    const before = await store.metricsSince(victim.id, 0);
    Deno.kill(workers[machine].pid, "SIGCONT");
    const log = `${machines[machine]}.log`;
    await until(
      "the woken worker to give the job up",
      () => /lost train/.test(fs.readFileSync(log, "utf8")) ? true : undefined,
    );
    await until("its training child to be gone", () => {
      try {
        Deno.kill(victim.pid!, "SIGCONT");
        return undefined;
      } catch {
        return true;
      }
    });
    const after = await store.job(victim.id);
    assert.equal(after!.state, "done");
    assert.equal(after!.attempts, victim.attempts + 1, "the other worker's attempt stands");
    assert.deepEqual(await store.metricsSince(victim.id, 0), before, "nothing more recorded");
    await checkFinished(store, url);
  });
});

Deno.test("PostgreSQL restarted mid-sweep: the coordinator and the workers reconnect and finish", async () => {
  await withCluster("dmw-dist-", async (url, dir, pg) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    const release = join(dir, "release");
    const workers = ["a", "b"].map((m) =>
      startWorker(url, join(dir, m, "runs"), join(dir, `${m}.log`), release)
    );
    const sweep = coordinator(url, file, dir);
    try {
      const store = await openStore(url);
      try {
        await until("a training job held past its checkpoint", () => heldTraining(store));
      } finally {
        await store.close();
      }
      // Down until the coordinator has seen it (not for a fixed time), then up again.
      await pg.halt();
      await until(
        "the coordinator to see the database gone",
        () => sweep.lines.some((l) => /coordinator: .*trying again/.test(l)) || undefined,
      );
      await pg.start();
      fs.writeFileSync(release, "");
      const r = await sweep.result;
      assert.deepEqual(r, { name: "dist", done: 10, failed: 0 }, sweep.lines.join("\n"));
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
      await sweep.stop();
      for (const w of workers) killMachine(w);
      await Promise.all(workers.map((w) => w.status));
    }
  });
});

Deno.test("a worker started while the database is down waits, says so in one line, and joins once it is up", async () => {
  await withCluster("dmw-dist-", async (url, dir, pg) => {
    const file = join(dir, "exp.yaml");
    fs.writeFileSync(file, EXPERIMENT);
    await pg.halt();
    const log = join(dir, "a.log");
    const worker = startWorker(url, join(dir, "a", "runs"), log);
    let stopSweep = () => Promise.resolve();
    try {
      const text = () => fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "";
      await until(
        "the worker to say it waits",
        () => /trying again every/.test(text()) || undefined,
      );
      const waiting = text().trim().split("\n");
      assert.equal(waiting.length, 1, `one line, no stack trace:\n${text()}`);
      assert.match(
        waiting[0],
        /^\d\d:\d\d:\d\d worker on .*: postgres:\/\/.*: cannot open the store \(.*ECONNREFUSED.*\); trying again every 5 s \(Ctrl-C stops\)$/,
      );
      const exited = await Promise.race([
        worker.status.then(() => true),
        new Promise((r) => setTimeout(() => r(false), 200)),
      ]);
      assert.ok(!exited, "it waits, it does not exit");
      await pg.start();
      await until(
        "the worker to start",
        () => /the database answers; starting/.test(text()) || undefined,
      );
      const c = coordinator(url, file, dir);
      stopSweep = c.stop;
      const r = await c.result;
      assert.deepEqual(
        r,
        { name: "dist", done: 10, failed: 0 },
        `${c.lines.join("\n")}\n${text()}`,
      );
    } finally {
      await stopSweep();
      killMachine(worker);
      await worker.status;
    }
  });
});
