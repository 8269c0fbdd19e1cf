/**
 * The store's suite, run on both engines: an SQLite file and a throwaway
 * PostgreSQL cluster (lib/store/throwaway.ts; without PostgreSQL the
 * PostgreSQL half fails, naming the fix). Then what only one engine has:
 * SQLite's read-only opening and migration, PostgreSQL's redacted URL.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { openStore, redactUrl, retryConnection, type Store } from "../../lib/store/store.ts";
import { startPostgres } from "../../lib/store/throwaway.ts";

const cluster = await startPostgres().catch((e: Error) => e);

const engines: Record<string, () => Promise<string>> = {
  sqlite: () => Promise.resolve(join(Deno.makeTempDirSync(), "s.sqlite")),
  postgres: () => {
    if (cluster instanceof Error) throw cluster;
    return cluster.newDatabase();
  },
};

function suite(name: string, fn: (location: string) => Promise<void>): void {
  for (const [engine, fresh] of Object.entries(engines)) {
    Deno.test(`${engine}: ${name}`, async () => await fn(await fresh()));
  }
}

async function withStore<T>(location: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const store = await openStore(location);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

suite(
  "metric points are unique per (job, step): a repeated step replaces, never duplicates",
  (loc) =>
    withStore(loc, async (store) => {
      const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
      const job = await store.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
      assert.equal(
        (await store.ensureJob(sweep.id, "k", "train", "{}", "runs/k")).id,
        job.id,
        "jobs are unique per key",
      );
      const row = (step: number, loss: number) => ({
        job: job.id,
        step,
        loss,
        bands: "[]",
        lr: 0.1,
        stepsPerSec: 1,
      });
      await store.putMetrics([row(10, 1), row(20, 2)]);
      await store.putMetrics([row(20, 2.5), row(30, 3)]);
      assert.deepEqual((await store.metricsSince(job.id, 0)).map((m) => [m.step, m.loss]), [
        [10, 1],
        [20, 2.5],
        [30, 3],
      ]);
      assert.deepEqual((await store.metricsSince(job.id, 10)).map((m) => m.step), [20, 30]);
    }),
);

suite(
  "numbers read back as written: doubles, NaN, ±Infinity, integers as numbers",
  (loc) =>
    withStore(loc, async (store) => {
      const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
      const job = await store.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
      const losses = [0.1 + 1e-12, NaN, Infinity, -Infinity, 1e-300, 123456789.123456789];
      await store.putMetrics(losses.map((loss, i) => ({
        job: job.id,
        step: 2_000_000_000 + i,
        loss,
        bands: "[]",
        lr: NaN,
        stepsPerSec: 3.25,
      })));
      const back = await store.metricsSince(job.id, 0);
      assert.equal(back.length, losses.length);
      back.forEach((m, i) => {
        assert.ok(Object.is(m.loss, losses[i]), `loss ${i}: ${m.loss} !== ${losses[i]}`);
        assert.ok(Number.isNaN(m.lr));
        assert.equal(typeof m.step, "number");
        assert.equal(m.step, 2_000_000_000 + i);
      });
      await store.putEval({
        job: job.id,
        metric: "fid",
        value: NaN,
        n: 7,
        spread: 0.5,
        extra: "{}",
      });
      const [e] = await store.evalsForSweep(sweep.id);
      assert.ok(Number.isNaN(e.value));
      assert.equal(e.n, 7);
      const j = (await store.job(job.id))!;
      assert.equal(typeof j.id, "number");
      assert.equal(j.progress, 0);
      assert.equal(j.round, 0);
    }),
);

suite("a reader sees the writer's progress while the writer keeps the store open", async (loc) => {
  const writer = await openStore(loc);
  const sweep = await writer.upsertSweep("s", "f.yaml", "h", "{}");
  const job = await writer.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
  const reader = await openStore(loc, { readOnly: true });
  try {
    for (let s = 1; s <= 5; s++) {
      await writer.putMetrics([{
        job: job.id,
        step: s,
        loss: s,
        bands: "[]",
        lr: 0,
        stepsPerSec: 0,
      }]);
      assert.equal((await reader.metricsSince(job.id, 0)).length, s);
    }
    await writer.updateJob(job.id, { state: "running", progress: 0.5, backend: "wasm" });
    const seen = (await reader.job(job.id))!;
    assert.equal(seen.state, "running");
    assert.equal(seen.backend, "wasm");
  } finally {
    await reader.close();
    await writer.close();
  }
});

suite(
  "configurations no longer in the file are kept, flagged removed; cancel and requeue",
  (loc) =>
    withStore(loc, async (store) => {
      const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
      await store.setConfigs(sweep.id, [
        { idx: 0, params: "a", trainKey: "t", evalKey: "e" },
        { idx: 1, params: "b", trainKey: "t", evalKey: "e2" },
      ]);
      await store.setConfigs(sweep.id, [
        { idx: 0, params: "a", trainKey: "t", evalKey: "e" },
        { idx: 1, params: "c", trainKey: "t", evalKey: "e3" },
      ]);
      assert.deepEqual((await store.configs(sweep.id)).map((c) => [c.params, c.removed]), [
        ["a", 0],
        ["c", 0],
        ["b", 1],
      ]);
      const job = await store.ensureJob(sweep.id, "k", "eval", "{}", "r");
      await store.requestCancel(job.id);
      assert.equal((await store.job(job.id))!.cancelRequested, 1);
      await store.updateJob(job.id, { state: "failed", error: "x" });
      await store.requeue(job.id);
      const back = (await store.job(job.id))!;
      assert.equal(back.state, "queued");
      assert.equal(back.error, null);
      assert.equal(back.cancelRequested, 0);
      assert.equal(back.round, 1, "each requeue is a new round of the job");
      await store.requeue(job.id);
      assert.equal((await store.job(job.id))!.round, 1, "a queued job is not requeued");
    }),
);

suite(
  "two processes racing for one job: exactly one moves it out of its state",
  (loc) =>
    withStore(loc, async (store) => {
      const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
      const job = await store.ensureJob(sweep.id, "k", "train", "{}", "r");
      const other = await openStore(loc);
      try {
        const wins = await Promise.all([store, other, store, other].map((s, i) =>
          s.updateJobIf(job.id, { state: "queued", attempts: 0 }, {
            state: "running",
            attempts: 1,
            host: `h${i}`,
          })
        ));
        assert.equal(wins.filter(Boolean).length, 1);
        assert.equal(
          await store.updateJobIf(job.id, { state: "running", attempts: 0 }, { state: "done" }),
          false,
          "the attempt must match too",
        );
        assert.equal((await store.job(job.id))!.state, "running");
      } finally {
        await other.close();
      }
    }),
);

suite("a failed transaction leaves nothing behind", (loc) =>
  withStore(loc, async (store) => {
    const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
    const job = await store.ensureJob(sweep.id, "k", "train", "{}", "r");
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.putArtifact(job.id, "checkpoint", "ckpt/step-1");
        await tx.updateJob(job.id, { state: "done" });
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.deepEqual(await store.artifacts(job.id), []);
    assert.equal((await store.job(job.id))!.state, "queued");
    await store.transaction(async (tx) => {
      await tx.putArtifact(job.id, "checkpoint", "ckpt/step-1");
    });
    assert.deepEqual(await store.artifacts(job.id), [{ kind: "checkpoint", path: "ckpt/step-1" }]);
  }));

suite("files travel through the store in chunks, byte for byte; a new version replaces the old", (
  loc,
) =>
  withStore(loc, async (store) => {
    const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
    const job = await store.ensureJob(sweep.id, "k", "train", "{}", "r");
    const dir = Deno.makeTempDirSync();
    const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 251);
    fs.writeFileSync(join(dir, "a.bin"), bytes);
    fs.writeFileSync(join(dir, "empty"), new Uint8Array(0));
    await store.putFile(job.id, "ckpt/step-1/a.bin", join(dir, "a.bin"), 4096);
    await store.putFile(job.id, "ckpt/step-1/empty", join(dir, "empty"), 4096);
    await store.putFile(job.id, "config.json", join(dir, "empty"));
    assert.deepEqual(await store.files(job.id, "ckpt/"), [
      "ckpt/step-1/a.bin",
      "ckpt/step-1/empty",
    ]);
    assert.ok(await store.getFile(job.id, "ckpt/step-1/a.bin", join(dir, "out", "a.bin")));
    assert.deepEqual(new Uint8Array(fs.readFileSync(join(dir, "out", "a.bin"))), bytes);
    assert.ok(await store.getFile(job.id, "ckpt/step-1/empty", join(dir, "out", "empty")));
    assert.equal(fs.statSync(join(dir, "out", "empty")).size, 0);
    fs.writeFileSync(join(dir, "a.bin"), bytes.subarray(0, 10));
    await store.putFile(job.id, "ckpt/step-1/a.bin", join(dir, "a.bin"), 4096);
    assert.ok(await store.getFile(job.id, "ckpt/step-1/a.bin", join(dir, "out", "a.bin")));
    assert.deepEqual(
      new Uint8Array(fs.readFileSync(join(dir, "out", "a.bin"))),
      bytes.subarray(0, 10),
    );
    assert.equal(await store.getFile(job.id, "nothing", join(dir, "out", "x")), false);
    assert.equal(fs.existsSync(join(dir, "out", "x")), false);
    assert.deepEqual(fs.readdirSync(join(dir, "out")).sort(), ["a.bin", "empty"], "no temporaries");
  }));

suite("small files whole: readFile joins a chunked file, putBytes replaces a file of that name", (
  loc,
) =>
  withStore(loc, async (store) => {
    const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
    const job = await store.ensureJob(sweep.id, "k", "eval", "{}", "r");
    const dir = Deno.makeTempDirSync();
    const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) % 253);
    fs.writeFileSync(join(dir, "s.csv"), bytes);
    await store.putFile(job.id, "samples/k.csv", join(dir, "s.csv"), 4096);
    assert.deepEqual(
      await store.readFile(job.id, "samples/k.csv"),
      bytes,
      "three chunks, in order",
    );
    assert.equal(await store.readFile(job.id, "samples/none.csv"), undefined);
    const text = (s: string) => new TextEncoder().encode(s);
    await store.putBytes(job.id, "log", text("first attempt\n"));
    await store.putBytes(job.id, "log", text("second\n"));
    assert.equal(new TextDecoder().decode(await store.readFile(job.id, "log")), "second\n");
    assert.deepEqual(await store.files(job.id), ["log", "samples/k.csv"]);
  }));

suite(
  "a job's device is recorded beside its backend and host",
  (loc) =>
    withStore(loc, async (store) => {
      const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
      const job = await store.ensureJob(sweep.id, "k", "train", "{}", "r");
      assert.equal(job.device, null);
      await store.updateJob(job.id, { backend: "webgpu", device: "nvidia hopper", host: "box-2" });
      const seen = (await store.job(job.id))!;
      assert.deepEqual([seen.backend, seen.device, seen.host], [
        "webgpu",
        "nvidia hopper",
        "box-2",
      ]);
    }),
);

suite(
  "a reader in this process follows a writer in another process, incrementally, without duplicates",
  async (
    loc,
  ) => {
    const store = await openStore(loc);
    const sweep = await store.upsertSweep("w", "f.yaml", "h", "{}");
    const job = await store.ensureJob(sweep.id, "k", "train", "{}", "runs/k");
    const storeUrl = new URL("../../lib/store/store.ts", import.meta.url).href;
    const script = join(Deno.makeTempDirSync(), "writer.ts");
    Deno.writeTextFileSync(
      script,
      `import { openStore } from ${JSON.stringify(storeUrl)};
const s = await openStore(${JSON.stringify(loc)});
for (let i = 1; i <= 400; i++) {
  // Every step twice, as a resumed trainer would log it again.
  const row = { job: ${job.id}, step: i, loss: 1 / i, bands: "[]", lr: 0, stepsPerSec: 0 };
  await s.putMetrics([row]);
  if (i > 1) await s.putMetrics([{ ...row, step: i - 1 }]);
  if (i % 50 === 0) await s.putEval({ job: ${job.id}, metric: "mmd", value: i, n: 1, spread: 0, extra: "{}" });
}
await s.setSweepStatus(${sweep.id}, "done");
await s.close();`,
    );
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script],
    }).spawn();
    let exited = false;
    child.status.then(() => exited = true);
    const reader = await openStore(loc, { readOnly: true });
    try {
      const seen: number[] = [];
      let last = 0;
      let status = "";
      while (status !== "done") {
        const ended = exited;
        status = (await reader.latestSweep())!.status;
        assert.ok(
          status === "done" || !ended,
          "the writer process ended before the sweep was done",
        );
        for (const m of await reader.metricsSince(job.id, last)) {
          seen.push(m.step);
          last = m.step;
        }
        await reader.evalsForSweep(sweep.id);
        await new Promise((r) => setTimeout(r, 5));
      }
      for (const m of await reader.metricsSince(job.id, last)) seen.push(m.step);
      assert.equal((await child.status).code, 0);
      assert.deepEqual(seen, Array.from({ length: 400 }, (_, i) => i + 1));
      const evals = await reader.evalsForSweep(sweep.id);
      assert.equal(evals.length, 1, "one row per (job, metric)");
      assert.equal(evals[0].value, 400);
    } finally {
      await reader.close();
      await store.close();
    }
  },
);

Deno.test("sqlite: a missing store opened read-only is an error naming it", async () => {
  const path = join(Deno.makeTempDirSync(), "none.sqlite");
  await assert.rejects(openStore(path, { readOnly: true }), /none\.sqlite: no store yet/);
});

Deno.test("sqlite: a store from before the cancel_requested, backend, host, device and round columns is migrated on open", async () => {
  const path = join(Deno.makeTempDirSync(), "old.sqlite");
  const db = new DatabaseSync(path);
  db.exec(`CREATE TABLE jobs (id INTEGER PRIMARY KEY, sweep INTEGER NOT NULL, key TEXT NOT NULL,
    kind TEXT NOT NULL, spec TEXT NOT NULL, run_dir TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, started TEXT, finished TEXT, pid INTEGER,
    cancel INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0, UNIQUE (sweep, key))`);
  db.exec(
    `INSERT INTO jobs (sweep, key, kind, spec, run_dir, state) VALUES (1, 'old', 'train', '{}', 'r', 'done')`,
  );
  db.close();
  await withStore(path, async (store) => {
    const sweep = await store.upsertSweep("s", "f.yaml", "h", "{}");
    const job = await store.ensureJob(sweep.id, "k", "train", "{}", "r");
    await store.requestCancel(job.id);
    assert.equal((await store.job(job.id))!.cancelRequested, 1);
    assert.equal((await store.latestSweep())!.name, "s");
    const old = (await store.jobs(1)).find((j) => j.key === "old")!;
    assert.equal(old.round, 0);
    assert.equal(old.backend, null);
    assert.equal(old.device, null);
  });
});

Deno.test("postgres: an unreachable database is named without its password", async () => {
  const url = "postgres://dmw:s3cret@127.0.0.1:1/nowhere";
  assert.equal(redactUrl(url), "postgres://dmw:***@127.0.0.1:1/nowhere");
  const err = await openStore(url).then(() => undefined, (e: Error) => e);
  assert.ok(err, "opening must fail");
  assert.match(
    err.message,
    /^postgres:\/\/dmw:\*\*\*@127\.0\.0\.1:1\/nowhere: cannot open the store/,
  );
  assert.ok(!err.message.includes("s3cret"), err.message);
});

Deno.test("postgres: the throwaway cluster stops", async () => {
  if (cluster instanceof Error) throw cluster;
  await cluster.stop();
});

Deno.test("retryConnection: waits out an unreachable database, throws other errors at once, gives up, stops on abort", async () => {
  const refused = () =>
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), {
      code: "ECONNREFUSED",
    });
  const heard: string[] = [];
  let calls = 0;
  const value = await retryConnection(() => {
    if (++calls < 3) throw refused();
    return Promise.resolve("rows");
  }, {
    intervalMs: 5,
    onWait: (e) => heard.push(`wait: ${e.message}`),
    onBack: () => heard.push("back"),
  });
  assert.equal(value, "rows");
  assert.equal(calls, 3);
  assert.deepEqual(heard, ["wait: connect ECONNREFUSED 127.0.0.1:5432", "back"], "one line each");

  const lines: string[] = [];
  calls = 0;
  await assert.rejects(
    retryConnection(() => {
      calls++;
      throw new Error('relation "jobs" does not exist');
    }, (l) => lines.push(l)),
    /relation "jobs" does not exist/,
  );
  assert.deepEqual([calls, lines], [1, []], "a query's own fault is not retried");

  calls = 0;
  await assert.rejects(
    retryConnection(() => {
      calls++;
      throw refused();
    }, { intervalMs: 5, maxMs: 30 }),
    /ECONNREFUSED/,
  );
  assert.ok(calls >= 2 && calls < 20, `gave up after ${calls} tries`);

  // Aborting ends the wait at once.
  const stop = new AbortController();
  const t0 = Date.now();
  const waiting = retryConnection(() => {
    throw refused();
  }, { intervalMs: 60_000, maxMs: Infinity, signal: stop.signal, onWait: () => stop.abort() });
  await assert.rejects(waiting, (e) => e === stop.signal.reason);
  assert.ok(Date.now() - t0 < 5000, "no 60 s wait after the abort");

  // A line sink in place of the options hears the first failure in words (one 1 s wait here).
  calls = 0;
  await retryConnection(
    () => ++calls < 2 ? Promise.reject(refused()) : Promise.resolve(),
    (l) => lines.push(l),
  );
  assert.deepEqual(lines, [
    "the store is unreachable (connect ECONNREFUSED 127.0.0.1:5432); retrying",
  ]);
});
