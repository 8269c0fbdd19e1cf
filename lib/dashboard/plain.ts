/**
 * `deno task watch --no-tui` (and `watch` when stdout is not a terminal):
 * plain lines, one per event, no escape codes. A finished sweep prints its
 * jobs once; a running one prints its state, then follows the store (job
 * starts and ends, logged training steps, evaluation results) until the
 * sweep stops running. With other sweeps (`--with`), the compare grid of all
 * of them follows, as `deno task compare A B …` prints it.
 */
import { openStore } from "../store/store.ts";
import { compareSweep } from "../sweep/compare.ts";
import { noSweepError } from "../sweep/results.ts";
import { watchPlain } from "../sweep/status.ts";
import { short } from "./charts.ts";
import { type Snapshot, SweepReader } from "./model.ts";

/** Options of {@link watchLines}. */
export interface PlainOptions {
  /** Store: an SQLite file or a postgres:// URL. @default "runs/store.sqlite" */
  storePath?: string;
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
  /** Where lines go. @default console.log */
  say?: (line: string) => void;
  /** Store poll interval, ms. @default 500 */
  pollMs?: number;
  /** Other sweeps whose grids are printed beside this one's at the end. */
  others?: string[];
}

const time = () => new Date().toISOString().slice(11, 19);

function counts(s: Snapshot): string {
  const c = s.counts;
  return `${c.done} done, ${c.running} running, ${c.queued} queued, ${c.failed} failed` +
    (c.cancelled ? `, ${c.cancelled} cancelled` : "");
}

/** Prints the sweep (and, while it runs, one line per event) until it stops running. */
export async function watchLines(opts: PlainOptions = {}): Promise<void> {
  const say = opts.say ?? ((l: string) => console.log(l));
  const storePath = opts.storePath ?? "runs/store.sqlite";
  const store = await openStore(storePath, { readOnly: true });
  try {
    // An unknown sweep named with --with stops the watch before it prints anything.
    for (const other of opts.others ?? []) {
      if (!(await store.sweep(other))) throw await noSweepError(store, other);
    }
    const reader = new SweepReader(store, { sweep: opts.sweep });
    let snap = (await reader.refresh())!;
    const compared = async () => {
      if (!opts.others?.length) return;
      say("");
      const grid = await compareSweep({ store, sweeps: [snap.sweep.name, ...opts.others] });
      for (const l of grid.split("\n")) say(l);
    };
    if (!snap.live) {
      for (const l of (await watchPlain({ sweep: snap.sweep.name, storePath })).split("\n")) say(l);
      await compared();
      return;
    }
    say(`${time()} sweep ${snap.sweep.name} (running): ${counts(snap)}`);
    const seen = new Map<number, string>();
    const stepSeen = new Map<number, number>();
    for (const { row } of snap.jobs.values()) {
      seen.set(row.id, row.state);
      stepSeen.set(row.id, reader.series(row.id).at(-1)?.step ?? 0);
      if (row.state === "running") say(`${time()} running ${row.kind} ${row.key}`);
    }
    while (snap.live) {
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
      snap = (await reader.refresh())!;
      for (const { row, spec } of snap.jobs.values()) {
        const total = "config" in spec ? spec.config.steps : undefined;
        for (const p of reader.series(row.id)) {
          if (p.step <= (stepSeen.get(row.id) ?? 0)) continue;
          say(
            `${time()} train ${row.key} step ${p.step}${total ? `/${total}` : ""} loss ${
              short(p.loss)
            } ${short(p.stepsPerSec)} steps/s`,
          );
          stepSeen.set(row.id, p.step);
        }
        if (seen.get(row.id) === row.state) continue;
        seen.set(row.id, row.state);
        const ev = snap.rows.find((r) => r.eval?.id === row.id);
        const result = row.state === "done" && ev
          ? " " + Object.entries(ev.metrics).map(([k, v]) => `${k}=${short(v)}`).join(" ")
          : "";
        const why = row.error && row.state !== "done" && row.state !== "queued"
          ? `: ${row.error}`
          : "";
        const verb = row.state === "running" ? "start" : row.state;
        say(`${time()} ${verb} ${row.kind} ${row.key}${result}${why}`);
      }
    }
    say(`${time()} sweep ${snap.sweep.name} ${snap.sweep.status}: ${counts(snap)}`);
    await compared();
  } finally {
    await store.close();
  }
}
