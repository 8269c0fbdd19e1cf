/**
 * The sweep lock: one holder at a time, a live other process refused by
 * name, a dead or torn one taken over, and release only of one's own lock.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { acquireSweepLock, lockHolder } from "../../lib/sweep/lock.ts";

/** A live process that is not this one (killed by the caller). */
function otherProcess(): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" }).spawn();
}

Deno.test("acquireSweepLock: the file holds this pid, release removes it; the folder is made", () => {
  const path = join(Deno.makeTempDirSync({ prefix: "dmw-lock-" }), "runs", "s", "sweep.lock");
  const release = acquireSweepLock(path, "s");
  const held = JSON.parse(fs.readFileSync(path, "utf8"));
  assert.equal(held.pid, Deno.pid);
  assert.ok(!Number.isNaN(Date.parse(held.started)));
  assert.equal(lockHolder(path), undefined, "this process does not count as another holder");
  release();
  assert.ok(!fs.existsSync(path));
  release(); // already gone: nothing happens
});

Deno.test("acquireSweepLock: a live other holder is refused by pid; once it is gone the lock is taken over", async () => {
  const path = join(Deno.makeTempDirSync({ prefix: "dmw-lock-" }), "sweep.lock");
  const other = otherProcess();
  try {
    fs.writeFileSync(path, JSON.stringify({ pid: other.pid, started: "2025-01-01T00:00:00Z" }));
    assert.equal(lockHolder(path), other.pid);
    assert.throws(
      () => acquireSweepLock(path, "default"),
      new RegExp(
        `sweep default is already running in process ${other.pid} \\(since 2025-01-01T00:00:00Z\\); ` +
          "`deno task watch default` shows it",
      ),
    );
    assert.equal(JSON.parse(fs.readFileSync(path, "utf8")).pid, other.pid, "left as it was");
  } finally {
    other.kill("SIGKILL");
    await other.status;
  }
  assert.equal(lockHolder(path), undefined);
  const release = acquireSweepLock(path, "default");
  assert.equal(JSON.parse(fs.readFileSync(path, "utf8")).pid, Deno.pid);
  release();
});

Deno.test("acquireSweepLock: a torn lock file is taken over; release leaves a lock another took", () => {
  const path = join(Deno.makeTempDirSync({ prefix: "dmw-lock-" }), "sweep.lock");
  fs.writeFileSync(path, '{"pid": 12');
  assert.equal(lockHolder(path), undefined);
  const release = acquireSweepLock(path, "s");
  const theirs = JSON.stringify({ pid: 1, started: "later" });
  fs.writeFileSync(path, theirs);
  release();
  assert.equal(fs.readFileSync(path, "utf8"), theirs);
});
