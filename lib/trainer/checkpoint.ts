/**
 * Checkpoints: a directory `ckpt/step-NNNNNNNN/` with `state.json` (step, RNG
 * state, optimizer count, anything else the trainer needs) and `tensors.bin`
 * (every named tensor as float32, offsets in state.json). Written to a
 * temporary directory and renamed into place, so a crash never leaves a
 * half-written checkpoint where a resume would read it.
 */
import type * as tf from "@tensorflow/tfjs-core";
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { processExists } from "../runtime/process.ts";
import {
  readTensors,
  syncDirectory,
  type TensorEntry,
  writeFileDurably,
  writeTensors,
} from "../runtime/tensorfile.ts";

/** What a checkpoint holds besides tensors. */
export type CheckpointState = Record<string, unknown> & { step: number };

/** The names of a checkpoint's tensors: parameters, Adam moments, and each EMA's averages. */
export const checkpointKey = {
  param: (name: string) => `param/${name}`,
  adam: (name: string) => `adam/${name}`,
  ema: (decay: number | string, name: string) => `ema/${decay}/${name}`,
  /** The prefix of the weights `ema` names: "raw" (the parameters) or a tracked decay. */
  weights: (ema: string) => (ema === "raw" ? "param/" : `ema/${ema}/`),
};

/** The checkpoint directory name of a step. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

/** Writes a checkpoint atomically; returns its path relative to the run directory. */
export async function saveCheckpoint(
  runDir: string,
  state: CheckpointState,
  tensors: Record<string, tf.Tensor>,
): Promise<string> {
  const rel = join("ckpt", checkpointName(state.step));
  const final = join(runDir, rel);
  const tmp = `${final}${TMP_MARK}${Deno.pid}`;
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    const entries = await writeTensors(join(tmp, "tensors.bin"), tensors);
    writeFileDurably(join(tmp, "state.json"), JSON.stringify({ ...state, tensors: entries }));
    syncDirectory(tmp);
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    syncDirectory(dirname(final));
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(
      `${final}: the checkpoint was not written (${(e as Error).message}); ` +
        "the earlier checkpoints are intact",
    );
  }
  return rel;
}

/** What marks a checkpoint being written: `step-NNNNNNNN.tmp-<pid>`. */
const TMP_MARK = ".tmp-";

/**
 * Removes checkpoints left half-written by a process that is gone (a crash or
 * a full disk): they hold space and a resume would never read them. Returns
 * the paths removed.
 */
export function removeStaleTemporaries(runDir: string): string[] {
  const dir = join(runDir, "ckpt");
  if (!fs.existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = /^step-\d{8}\.tmp-(\d+)$/.exec(name);
    // This process's own temporary is stale too: it is between checkpoints here.
    const pid = Number(m?.[1]);
    if (!m || (pid !== Deno.pid && processExists(pid))) continue;
    fs.rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/** The steps of the complete checkpoints in a run directory, ascending. */
export function listCheckpoints(runDir: string): number[] {
  const dir = join(runDir, "ckpt");
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((n) => /^step-(\d{8})$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .filter((m) => fs.existsSync(join(dir, m[0], "state.json")))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** Reads a checkpoint: its state and its tensors (the caller owns and frees them). */
export function loadCheckpoint(
  runDir: string,
  step: number,
): { state: CheckpointState; tensors: Record<string, tf.Tensor> } {
  const dir = join(runDir, "ckpt", checkpointName(step));
  if (!fs.existsSync(join(dir, "state.json"))) {
    throw new Error(
      `${dir}: no checkpoint at step ${step} (have: ${
        listCheckpoints(runDir).join(", ") || "none"
      })`,
    );
  }
  const state = readJson(join(dir, "state.json"), "a checkpoint state") as CheckpointState;
  const tensors = readTensors(join(dir, "tensors.bin"), state.tensors as TensorEntry[]);
  delete state.tensors;
  return { state, tensors };
}

/** Removes old checkpoints, keeping the newest `keep` and every step in `pinned`. */
export function pruneCheckpoints(runDir: string, keep: number, pinned: Set<number>): void {
  const steps = listCheckpoints(runDir);
  for (const s of steps.slice(0, Math.max(0, steps.length - keep))) {
    if (!pinned.has(s)) {
      fs.rmSync(join(runDir, "ckpt", checkpointName(s)), { recursive: true, force: true });
    }
  }
}

/** Parses a JSON file; errors name the file and what it should have been. */
export function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not ${what} (${(e as Error).message}); the file is damaged`);
  }
}
