/**
 * Checkpoint faults: a write that fails leaves no half-written directory and
 * the earlier checkpoints intact; one left by a dead process is removed when
 * training starts; damaged files are named in the error.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { resolveConfig } from "../../lib/models/config.ts";
import { DDPM_ENTRY } from "../../lib/models/ddpm.ts";
import { writeTensors } from "../../lib/runtime/tensorfile.ts";
import { openStore } from "../../lib/store/store.ts";
import {
  listCheckpoints,
  loadCheckpoint,
  removeStaleTemporaries,
  saveCheckpoint,
} from "../../lib/trainer/checkpoint.ts";
import { train } from "../../lib/trainer/trainer.ts";
import { useBackend } from "../helpers.ts";

await useBackend("wasm");

const tmp = () => Deno.makeTempDirSync({ prefix: "dmw-ckpt-" });

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

Deno.test("a full disk fails the write, naming the path and the cause", async () => {
  const t = tf.ones([4]);
  await assert.rejects(
    () => writeTensors("/dev/full", { t }),
    /\/dev\/full: (ENOSPC|No space left on device)/,
  );
  t.dispose();
});

Deno.test("a checkpoint that fails midway leaves no temporary and the earlier one loads", async () => {
  const dir = tmp();
  const good = tf.ones([3]);
  await saveCheckpoint(dir, { step: 10 }, { good });
  const bad = tf.ones([3]);
  bad.dispose(); // reading it throws once the temporary directory exists
  await assert.rejects(
    () => saveCheckpoint(dir, { step: 20 }, { good, bad }),
    /ckpt\/step-00000020: the checkpoint was not written \(.*\); the earlier checkpoints are intact/,
  );
  assert.deepEqual(fs.readdirSync(join(dir, "ckpt")), ["step-00000010"]);
  const { state, tensors } = loadCheckpoint(dir, 10);
  assert.equal(state.step, 10);
  assert.deepEqual([...(await tensors.good.data())], [1, 1, 1]);
  tf.dispose([good, ...Object.values(tensors)]);
});

Deno.test("half-written checkpoints of dead processes are removed, a live writer's kept", async () => {
  const dir = tmp();
  const dead = join(dir, "ckpt", `step-00000030.tmp-${await deadPid()}`);
  const live = join(dir, "ckpt", `step-00000030.tmp-${Deno.ppid}`);
  for (const d of [dead, live]) {
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(join(d, "tensors.bin"), new Uint8Array(64));
  }
  assert.deepEqual(removeStaleTemporaries(dir), [dead]);
  assert.equal(fs.existsSync(live), true);
});

function tinyConfig(steps: number) {
  return {
    model: "ddpm",
    data: "8gaussians",
    ...resolveConfig(DDPM_ENTRY.keys, { steps, batch: 16, T: 50, ema: [], checkpoint_every: 10 }),
  };
}

Deno.test("training resumes past a checkpoint a crashed process left half-written", async () => {
  const dir = tmp();
  await train({ runDir: dir, entry: DDPM_ENTRY, config: tinyConfig(10) });
  const stale = join(dir, "ckpt", `step-00000020.tmp-${await deadPid()}`);
  fs.mkdirSync(stale);
  fs.writeFileSync(join(stale, "tensors.bin"), new Uint8Array(1024));
  const r = await train({ runDir: dir, entry: DDPM_ENTRY, config: tinyConfig(20) });
  assert.equal(r.resumedFrom, 10);
  assert.equal(fs.existsSync(stale), false);
  assert.deepEqual(listCheckpoints(dir), [10, 20]);
});

Deno.test("a truncated state.json or a damaged config.json is named in the error", async () => {
  const dir = tmp();
  await train({ runDir: dir, entry: DDPM_ENTRY, config: tinyConfig(10) });
  const state = join(dir, "ckpt", "step-00000010", "state.json");
  const text = fs.readFileSync(state, "utf8");
  fs.writeFileSync(state, text.slice(0, text.length / 2));
  assert.throws(
    () => loadCheckpoint(dir, 10),
    /step-00000010\/state\.json: not a checkpoint state \(.*\); the file is damaged/,
  );
  fs.writeFileSync(state, text);
  fs.writeFileSync(join(dir, "config.json"), "{ garbage");
  await assert.rejects(
    () => train({ runDir: dir, entry: DDPM_ENTRY, config: tinyConfig(20) }),
    /config\.json: not a run configuration/,
  );
});

Deno.test("a store file that is not a database is named, with what to do", async () => {
  const path = join(tmp(), "store.sqlite");
  fs.writeFileSync(path, "this is not SQLite, just text long enough to be read as a header....");
  await assert.rejects(
    openStore(path),
    /store\.sqlite: cannot open the store \(.*\); move the file away/,
  );
});

Deno.test("a run's files are not world-writable, whatever the umask", async () => {
  const old = process.umask(0);
  try {
    const dir = tmp();
    await train({ runDir: dir, entry: DDPM_ENTRY, config: tinyConfig(10) });
    for (const f of ["events.jsonl", "config.json", "ckpt/step-00000010/state.json"]) {
      const mode = fs.statSync(join(dir, f)).mode & 0o777;
      assert.equal(mode & 0o022, 0, `${f}: mode ${mode.toString(8)}`);
    }
  } finally {
    process.umask(old);
  }
});
