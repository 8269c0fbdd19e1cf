/**
 * The WebGPU backend, started by the project instead of by
 * tfjs-backend-webgpu's own factory, which on Deno asks for an adapter a
 * second time, requests a device with WebGPU's default limits (8 storage
 * buffers per shader stage, although llvmpipe and real GPUs offer more), and
 * pushes a malformed `requiredFeatures` entry. Here one adapter gives one
 * device with the adapter's real limits, read as numbers (Deno has reported
 * them as BigInt), and every error the device raises is kept:
 *
 * tfjs never looks at WebGPU errors. A dispatch that breaks a device limit or
 * a shader that fails to compile leaves its output buffer as it was (often a
 * recycled buffer's old contents) and training goes on with wrong numbers.
 * The device's `uncapturederror` events and its loss are recorded here;
 * {@link assertGpuHealthy} turns them into an error, and the trainer and the
 * sampling commands call it, so a run fails loudly at the step it went wrong.
 */
import * as tf from "@tensorflow/tfjs-core";

/** One error the WebGPU device reported. */
export interface GpuFault {
  /** `validation`, `out-of-memory`, `internal`, or `lost` for a lost device. */
  kind: string;
  /** The driver's message, first line first. */
  message: string;
}

/** An error the WebGPU device reported while the program ran. */
export class GpuFaultError extends Error {
  constructor(readonly faults: GpuFault[]) {
    super(
      `the WebGPU device reported ${faults.length} error${faults.length > 1 ? "s" : ""}; ` +
        `the results computed since are wrong. First: ${faults[0].kind}: ${
          faults[0].message.split("\n").filter((l) => l.trim()).slice(0, 3).join(" | ")
        }`,
    );
  }
}

/** Limits the device asks for at the adapter's values, when it offers more than WebGPU's defaults. */
export const REQUESTED_LIMITS = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxUniformBufferBindingSize",
] as const;

const faults: GpuFault[] = [];
let device: GPUDevice | undefined;

/** A readable one-line description of an adapter. */
export function describeAdapter(adapter: GPUAdapter): string {
  const info = (adapter as unknown as { info?: GPUAdapterInfo }).info;
  const parts = info ? [info.vendor, info.architecture, info.device, info.description] : [];
  return parts.filter((s) => s).join(" ") || "unknown adapter";
}

/** The adapter's value of each {@link REQUESTED_LIMITS} key, as a number. */
export function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number | bigint | undefined>;
  for (const key of REQUESTED_LIMITS) {
    const v = limits[key];
    if (v !== undefined) out[key] = Number(v);
  }
  return out;
}

/**
 * Requests a device from `adapter` with its real limits, records its errors,
 * and returns it. The adapter must not have given a device before (an
 * adapter is spent once it has: tensorflow/tfjs#8518).
 */
export async function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  const dev = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: adapterLimits(adapter),
  });
  dev.addEventListener("uncapturederror", (e) => {
    const err = (e as GPUUncapturedErrorEvent).error;
    const kind = err instanceof GPUValidationError
      ? "validation"
      : err instanceof GPUOutOfMemoryError
      ? "out-of-memory"
      : "internal";
    recordFault({ kind, message: err.message });
  });
  dev.lost.then((info) => {
    if (device === dev) recordFault({ kind: "lost", message: info.message || String(info.reason) });
  });
  device = dev;
  return dev;
}

function recordFault(f: GpuFault): void {
  if (faults.length === 0) {
    const first = f.message.split("\n").find((l) => l.trim()) ?? "";
    console.error(`webgpu: ${f.kind} error: ${first} (the run will stop)`);
  }
  if (faults.length < 100) faults.push(f);
}

/**
 * Registers the `webgpu` backend on `adapter` (replacing tfjs-backend-webgpu's
 * own factory) and returns after tfjs has set it up. The project's WebGPU
 * kernels are registered by the caller.
 */
export async function startWebgpu(adapter: GPUAdapter): Promise<void> {
  const { WebGPUBackend } = await import("@tensorflow/tfjs-backend-webgpu");
  if (device && tf.findBackend("webgpu")) {
    await tf.setBackend("webgpu");
    return;
  }
  if (tf.findBackendFactory("webgpu")) tf.removeBackend("webgpu");
  const info = (adapter as unknown as { info?: GPUAdapterInfo }).info;
  let spent = false;
  tf.registerBackend("webgpu", async () => {
    if (spent) throw new Error("the WebGPU adapter has already given its device");
    spent = true;
    // deno-lint-ignore no-explicit-any
    return new WebGPUBackend(await requestDevice(adapter), info as any);
  }, 3);
  if (!(await tf.setBackend("webgpu"))) {
    throw new Error("the webgpu backend failed to initialise");
  }
}

/** The errors recorded so far (the first 100). */
export function gpuFaults(): readonly GpuFault[] {
  return faults;
}

/** Forgets the recorded errors (tests that provoke one on purpose). */
export function clearGpuFaults(): void {
  faults.length = 0;
}

/**
 * Waits until the device has finished the work submitted so far and its
 * error events have been delivered. A no-op without a WebGPU device.
 */
export async function settleGpu(): Promise<void> {
  if (!device) return;
  const backend = tf.findBackend("webgpu") as unknown as {
    commandEncoder: GPUCommandEncoder | null;
    endComputePassEncoder(): void;
    submitQueue(): void;
  } | null;
  if (backend?.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  await device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 0));
}

/** Throws {@link GpuFaultError} when the device has reported an error. */
export function assertGpuHealthy(): void {
  if (faults.length > 0) throw new GpuFaultError([...faults]);
}
