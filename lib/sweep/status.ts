/**
 * A sweep's state as plain lines (`deno task watch --no-tui`, and `watch`
 * when stdout is not a terminal): its jobs counted by state, then one line
 * per job with its progress, latest loss, evaluations and error.
 */
import { DEFAULT_STORE, openStore } from "../store/store.ts";
import { noSweepError } from "./results.ts";

/** Plain `watch`: prints the sweep's job states and latest numbers once. */
export async function watchPlain(opts: { sweep?: string; storePath?: string }): Promise<string> {
  const store = await openStore(opts.storePath ?? DEFAULT_STORE, { readOnly: true });
  try {
    const sweep = await store.sweep(opts.sweep);
    if (!sweep) throw await noSweepError(store, opts.sweep);
    const jobs = await store.jobs(sweep.id);
    const count = (s: string) => jobs.filter((j) => j.state === s).length;
    const lines = [
      `sweep ${sweep.name} (${sweep.status}): ${count("done")} done, ${count("running")} running, ${
        count("queued")
      } queued, ${count("failed")} failed`,
    ];
    const evals = await store.evalsForSweep(sweep.id);
    for (const j of jobs) {
      const last = j.kind === "train" ? (await store.metricsSince(j.id, 0)).at(-1) : undefined;
      const ev = evals.filter((e) => e.job === j.id).map((e) =>
        `${e.metric}=${e.value.toPrecision(4)}`
      ).join(" ");
      lines.push(
        `  ${j.kind.padEnd(5)} ${j.state.padEnd(9)} ${
          (j.progress * 100).toFixed(0).padStart(3)
        }%  ${j.key}` +
          `${last ? `  step ${last.step} loss ${last.loss.toFixed(4)}` : ""}${ev ? `  ${ev}` : ""}${
            j.error ? `  (${j.error})` : ""
          }`,
      );
    }
    return lines.join("\n");
  } finally {
    await store.close();
  }
}
