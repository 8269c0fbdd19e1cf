/** Shared test helpers: numeric closeness and a fresh backend. */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, initBackend } from "../lib/runtime/backend.ts";

/** Asserts |a − b| ≤ atol + rtol·|b|. */
export function assertClose(a: number, b: number, atol: number, rtol = 0, msg = ""): void {
  assert.ok(
    Math.abs(a - b) <= atol + rtol * Math.abs(b),
    `${msg ? msg + ": " : ""}${a} is not within ${atol} (+${rtol} rel) of ${b}`,
  );
}

/** Initialises a backend quietly and switches to it. */
export async function useBackend(name: BackendName): Promise<void> {
  await initBackend(name, null);
  const tfName = name === "onednn" ? "wasm" : name;
  if (tf.getBackend() !== tfName && name !== "auto") await tf.setBackend(tfName);
}

/** Mean and standard deviation of an array. */
export function meanStd(v: ArrayLike<number>): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  const mean = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i] - mean) ** 2;
  return { mean, std: Math.sqrt(q / (v.length - 1)) };
}
