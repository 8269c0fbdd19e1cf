/**
 * The threaded wasm build (lib/runtime/wasm_threads.ts) in real processes:
 * DMW_THREADS picks the XNNPACK thread count, training losses on 2 threads
 * equal those on 1 bit for bit, and a threaded process exits by itself.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const PROBE = fileURLToPath(new URL("./fixtures/threads_probe.ts", import.meta.url));

/** Runs the probe with DMW_THREADS set; fails after 120 s (a hung exit). */
async function probe(threads: string): Promise<{ threads: number; losses: number[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", PROBE],
    env: { DMW_THREADS: threads },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `probe with ${threads} threads: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text.trim().split("\n").at(-1)!);
}

Deno.test("DMW_THREADS=2 runs XNNPACK on 2 threads with the 1-thread losses, and exits", async () => {
  const one = await probe("1");
  const two = await probe("2");
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2);
  assert.equal(two.losses.length, 5);
  assert.ok(two.losses.every(Number.isFinite), `losses ${two.losses}`);
  assert.deepEqual(two.losses, one.losses, "threads split the work, not the arithmetic");
});

Deno.test("a bad DMW_THREADS is refused, naming the variable", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", PROBE],
    env: { DMW_THREADS: "two" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.success, false);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /DMW_THREADS \(--threads\) must be a positive integer, not "two"/,
  );
});
