/**
 * Backend selection: `auto` takes Deno's WebGPU when it offers a hardware
 * adapter, otherwise the wasm backend (SIMD). Software adapters such as Mesa
 * llvmpipe report `isFallbackAdapter` and are slower than wasm, so `auto`
 * passes them over; `--backend webgpu` still uses them on request.
 *
 * wasm runs XNNPACK on `$DMW_THREADS` threads (default: every core) through
 * the threaded SIMD build (see wasm_threads.ts); 1 thread uses the plain
 * SIMD build. The sweep executor gives each of its jobs cores / concurrency.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { installKernels } from "./kernels/install.ts";
import { registerProjectKernels } from "./kernels/mod.ts";
import { setThreadedWasmBackend } from "./wasm_threads.ts";
import { assertGpuHealthy, describeAdapter, settleGpu, startWebgpu } from "./webgpu.ts";
import { loadOnednn, type Onednn } from "./onednn.ts";

/** The backends a command can ask for. */
export type BackendName = "auto" | "webgpu" | "onednn" | "wasm" | "cpu";

/** What {@link initBackend} chose and why. */
export interface BackendInfo {
  /**
   * The backend in use: a tfjs backend, or `onednn`, the wasm backend with
   * its matrix products and convolutions on oneDNN (tfjs's backend is then `wasm`).
   */
  name: "webgpu" | "onednn" | "wasm" | "cpu";
  /** The GPU adapter's description, when one was found. */
  adapter?: string;
  /** XNNPACK threads of the wasm backend. */
  threads?: number;
  /** One sentence: why this backend. */
  reason: string;
}

let current: BackendInfo | undefined;

/** Describes a WebGPU adapter, or returns undefined when Deno offers none. */
async function probeAdapter(): Promise<
  { adapter: GPUAdapter; text: string; fallback: boolean } | undefined
> {
  const gpu = (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) return undefined;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return undefined;
  const info = (adapter as any).info ?? {};
  const fallback = Boolean((adapter as any).isFallbackAdapter ?? info.isFallbackAdapter);
  return { adapter, text: describeAdapter(adapter), fallback };
}

function wasmDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("@tensorflow/tfjs-backend-wasm"));
}

/**
 * The wasm backend's thread count: `$DMW_THREADS`, else every core.
 * Throws on a value that is not a positive integer.
 */
export function wasmThreads(): number {
  const given = Deno.env.get("DMW_THREADS");
  if (given === undefined || given === "") return navigator.hardwareConcurrency || 1;
  const n = Number(given);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`DMW_THREADS (--threads) must be a positive integer, not "${given}"`);
  }
  return n;
}

/** Initialises the wasm backend on `threads` threads; returns the count XNNPACK took. */
async function useWasm(threads: number): Promise<number> {
  const dir = wasmDir();
  setWasmPaths({
    "tfjs-backend-wasm.wasm": join(dir, "tfjs-backend-wasm.wasm"),
    "tfjs-backend-wasm-simd.wasm": join(dir, "tfjs-backend-wasm-simd.wasm"),
    "tfjs-backend-wasm-threaded-simd.wasm": join(dir, "tfjs-backend-wasm-threaded-simd.wasm"),
  });
  if (threads > 1) {
    try {
      return await setThreadedWasmBackend(dir, threads);
    } catch (e) {
      throw new Error(
        `the threaded wasm backend failed to start (${(e as Error).message}); ` +
          "--threads 1 uses the single-threaded build",
      );
    }
  }
  if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend failed to initialise");
  return 1;
}

/** What the wasm path says about the native one. */
const ONEDNN_HINT = "`apt-get install libdnnl2` (or DMW_DNNL=/path/to/libdnnl.so.2) adds " +
  "oneDNN's matrix products, convolutions and activations: training 3.4–3.8× faster (--backend onednn)";

/**
 * The wasm backend with oneDNN's matrix products and convolutions. The wasm
 * threads (everything else) and oneDNN's OpenMP pool both get the cores: they
 * take turns, and OpenMP waits passively (loadOnednn), so neither spins while
 * the other works. Measured when only the matrix products were oneDNN's, wasm
 * on one thread made the UNet step 1.3–1.6× slower than on the cores.
 */
async function useOnednn(dnnl: Onednn, reason: string): Promise<BackendInfo> {
  await useWasm(dnnl.threads);
  const { onednnMatMulMakers } = await import("./kernels/onednn_mat_mul.ts");
  const { onednnConvMakers } = await import("./kernels/onednn_conv.ts");
  const { onednnSiluMakers } = await import("./kernels/onednn_silu.ts");
  const { onednnReluBiasGradMakers } = await import("./kernels/dense_relu.ts");
  const { onednnReductionMakers } = await import("./kernels/onednn_reduce.ts");
  installKernels("wasm", "onednn", {
    ...onednnMatMulMakers(dnnl),
    ...onednnConvMakers(dnnl),
    ...onednnSiluMakers(dnnl),
    ...onednnReluBiasGradMakers(dnnl),
    ...onednnReductionMakers(dnnl),
  });
  const v = dnnl.version;
  return {
    name: "onednn",
    threads: dnnl.threads,
    reason: `${reason} (oneDNN ${v.major}.${v.minor}.${v.patch}, ${dnnl.path}: ` +
      "matrix products and convolutions)",
  };
}

async function useWebgpu(adapter: GPUAdapter): Promise<void> {
  await startWebgpu(adapter);
  const { WEBGPU_FIXES } = await import("./kernels/webgpu.ts");
  const { WEBGPU_GROUP_NORM } = await import("./kernels/group_norm_webgpu.ts");
  const { WEBGPU_ADAM } = await import("./kernels/adam.ts");
  installKernels("webgpu", "project", { ...WEBGPU_FIXES, ...WEBGPU_GROUP_NORM, ...WEBGPU_ADAM });
}

/**
 * Selects and initialises a backend, registering the project's kernels.
 * Calling it again with the same name is a no-op.
 *
 * @param name `auto` (default) picks WebGPU on a hardware adapter, else wasm.
 * @param log where the one-line choice is printed; pass `null` for silence.
 */
export async function initBackend(
  name: BackendName = "auto",
  log: ((line: string) => void) | null = (l) => console.error(l),
): Promise<BackendInfo> {
  if (current && (name === "auto" || name === current.name)) return current;
  registerProjectKernels();
  let info: BackendInfo;
  if (name === "cpu") {
    await tf.setBackend("cpu");
    // Its first write prints tfjs's "install our node backend" banner, advice that does not
    // apply under Deno.
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
    info = { name: "cpu", reason: "asked for with --backend cpu" };
  } else if (name === "wasm") {
    const threads = await useWasm(wasmThreads());
    info = { name: "wasm", threads, reason: "asked for with --backend wasm" };
  } else if (name === "onednn") {
    const dnnl = loadOnednn(wasmThreads());
    if ("error" in dnnl) {
      throw new Error(`--backend onednn: ${dnnl.error}. ${ONEDNN_HINT}`);
    }
    info = await useOnednn(dnnl, "asked for with --backend onednn");
  } else {
    const probe = await probeAdapter();
    if (name === "webgpu") {
      if (!probe) {
        throw new Error("--backend webgpu: Deno offers no WebGPU adapter on this machine");
      }
      await useWebgpu(probe.adapter);
      info = {
        name: "webgpu",
        adapter: probe.text,
        reason: probe.fallback
          ? "asked for with --backend webgpu (a software fallback adapter: slower than wasm)"
          : "asked for with --backend webgpu",
      };
    } else if (probe && !probe.fallback) {
      await useWebgpu(probe.adapter);
      info = { name: "webgpu", adapter: probe.text, reason: "auto: a hardware WebGPU adapter" };
    } else {
      const gpu = probe
        ? "the only WebGPU adapter is a software fallback, slower than the CPU"
        : "Deno offers no WebGPU adapter";
      const dnnl = loadOnednn(wasmThreads());
      if (!("error" in dnnl)) {
        info = { ...(await useOnednn(dnnl, `auto: ${gpu}; oneDNN loads`)), adapter: probe?.text };
      } else {
        const threads = await useWasm(wasmThreads());
        info = {
          name: "wasm",
          threads,
          adapter: probe?.text,
          reason: `auto: ${gpu}; ${dnnl.error}. ${ONEDNN_HINT}`,
        };
      }
    }
  }
  current = info;
  const threads = info.threads ? `, ${info.threads} thread${info.threads > 1 ? "s" : ""}` : "";
  log?.(
    `backend: ${info.name}${threads}${
      info.adapter ? ` (adapter: ${info.adapter})` : ""
    } — ${info.reason}`,
  );
  return info;
}

/**
 * Throws when the backend has reported an error since it started (WebGPU
 * validation errors, a lost device: see webgpu.ts); with `settle`, first
 * waits for the work submitted so far. Other backends raise their errors
 * where they happen, so this does nothing there.
 */
export async function checkBackend(settle = false): Promise<void> {
  if (tf.getBackend() !== "webgpu") return;
  if (settle) await settleGpu();
  assertGpuHealthy();
}
