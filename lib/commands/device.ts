/**
 * What a run computes on, in a few words, for the store and the dashboard's
 * machine view: the GPU adapter on WebGPU, else the CPU's model and the
 * threads the backend uses ("AMD EPYC 7B13, 2 threads").
 */
import * as fs from "node:fs";
import type { BackendInfo } from "../runtime/backend.ts";

/** The CPU's model from /proc/cpuinfo's text (its first `model name`), or undefined. */
export function cpuModel(cpuinfo: string): string | undefined {
  return cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1].replace(/\s+/g, " ").trim() || undefined;
}

/**
 * The device a backend computes on. `cpuinfo` is /proc/cpuinfo's text
 * (read here when not given; "CPU" where it cannot be read).
 * @example describeDevice({ name: "wasm", threads: 2, reason: "" }) // "AMD EPYC 7B13, 2 threads"
 */
export function describeDevice(info: BackendInfo, cpuinfo?: string): string {
  if (info.name === "webgpu") return info.adapter ?? "GPU";
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      text = "";
    }
  }
  const threads = info.threads ?? 1;
  return `${cpuModel(text) ?? "CPU"}, ${threads} thread${threads === 1 ? "" : "s"}`;
}
