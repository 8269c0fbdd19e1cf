/**
 * The multi-threaded SIMD build of tfjs-backend-wasm 4.22.0 under Deno.
 *
 * tfjs never offers it outside a browser (its WASM_HAS_MULTITHREAD_SUPPORT
 * flag is false whenever it sees Node), and three things stand in the way
 * under Deno, each bridged here:
 *
 * - Emscripten's pthreads start each thread from a `blob:` URL of its worker
 *   script, which Deno's `node:worker_threads` refuses (it takes file paths
 *   only). The script is in the pinned bundle as the string
 *   `wasmWorkerContents`; it runs as an `eval` worker instead.
 * - That script loads the main glue with a synchronous `importScripts` of a
 *   Blob, which cannot be read synchronously: its "load" message is held
 *   until the Blob's text is read, evaluated in the worker's global scope
 *   (with the bundle's `require$$N` and `commonjsGlobal` names defined).
 * - tfjs caps XNNPACK's pool at half of `os.cpus()` (it assumes two
 *   hyper-threads per core), which is 1 on a 2-core machine: the count is
 *   reported doubled while the module initialises.
 *
 * Threads never keep the process alive: each worker is unref'd once it has
 * loaded, and stays so.
 */
import * as tf from "@tensorflow/tfjs-core";
import { getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import * as fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Worker as NodeWorker } from "node:worker_threads";

/** Globals the worker script assigns that Deno's worker scope defines as getters. */
const WORKER_GLOBALS = [
  "location",
  "postMessage",
  "performance",
  "self",
  "Worker",
  "importScripts",
];

/** Names the bundled glue expects at its top level (see the bundle's first lines). */
const PROLOGUE = `Object.assign(globalThis, {
  require$$0: require("fs"), require$$1: require("path"), require$$3: require("perf_hooks"),
  require$$4: require("os"), require, commonjsGlobal: globalThis });
for (const k of ${JSON.stringify(WORKER_GLOBALS)}) {
  Object.defineProperty(globalThis, k, { value: globalThis[k], writable: true, configurable: true });
}
`;

/** Holds the "load" message until the glue's Blob is read and evaluated, then skips its importScripts. */
const EPILOGUE = `
;(() => {
  const handle = self.onmessage;
  const load = globalThis.importScripts;
  let queue = Promise.resolve();
  globalThis.importScripts = (f) => { if (f !== "dmw:preloaded") load(f); };
  self.onmessage = (e) => {
    queue = queue.then(async () => {
      if (e.data && e.data.cmd === "load" && typeof e.data.urlOrBlob !== "string") {
        (0, eval)(await e.data.urlOrBlob.text());
        e = { data: Object.assign({}, e.data, { urlOrBlob: "dmw:preloaded" }) };
      }
      handle(e);
    });
  };
})();
`;

/** The pthread worker's source, from the pinned bundle; throws when it is not there. */
function workerSource(wasmDir: string): string {
  const bundle = fs.readFileSync(join(wasmDir, "tf-backend-wasm.node.js"), "utf8");
  const m = bundle.match(/^var wasmWorkerContents = ("(?:[^"\\]|\\.)*");$/m);
  if (!m) throw new Error("the wasm bundle has no wasmWorkerContents (not tfjs 4.22.0?)");
  // tfjs escapes newlines the same way before it makes its Blob.
  return PROLOGUE + (JSON.parse(m[1]) as string).replace(/\n/g, "\\n") + EPILOGUE;
}

let trapped = false;

/** Makes Emscripten's `new Worker(blobUrl)` start an eval worker running `source`. */
function trapWorker(source: string): void {
  if (trapped) return;
  trapped = true;
  const DenoWorker = globalThis.Worker;
  function ThreadWorker(this: unknown, path: unknown, opts?: WorkerOptions) {
    if (typeof path === "string" && path.startsWith("blob:")) {
      const w = new NodeWorker(source, { eval: true });
      // Referenced until its first message ("loaded"): the module's start waits for that.
      // Then never again: Emscripten refs a worker while its thread runs, and the pool's
      // threads run for the life of the process.
      w.once("message", () => w.unref());
      w.ref = () => w;
      return w;
    }
    return new DenoWorker(path as string, opts);
  }
  // The glue sets globalThis.Worker to node's Worker when it loads: keep this one in front.
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    get: () => ThreadWorker,
    set: () => {},
  });
}

/**
 * Switches tfjs to the threaded SIMD build with `threads` XNNPACK threads
 * and initialises the wasm backend; returns the thread count XNNPACK took.
 * Call it instead of `tf.setBackend("wasm")`, after `setWasmPaths`.
 */
export async function setThreadedWasmBackend(wasmDir: string, threads: number): Promise<number> {
  if (typeof SharedArrayBuffer === "undefined") throw new Error("no SharedArrayBuffer");
  trapWorker(workerSource(wasmDir));
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  setThreadsCount(threads);
  const cpus = os.cpus;
  os.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]);
  try {
    if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend failed to initialise");
  } finally {
    os.cpus = cpus;
  }
  return getThreadsCount();
}
