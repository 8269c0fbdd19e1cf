/**
 * `deno task sweep` in a terminal: the sweep runs as a detached background
 * process (`sweep --no-tui`, its plain lines appended to
 * `runs/<sweep>/sweep.log`) and this process shows the dashboard on the
 * store. Quitting the dashboard therefore leaves the sweep running, and
 * `deno task watch` attaches to it again from any terminal.
 */
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { openStore } from "../store/store.ts";
import { defaultWorker } from "../sweep/commands.ts";
import { loadExperiment } from "../sweep/experiment.ts";
import { runDashboard } from "./mod.ts";

/** Options of {@link sweepWithDashboard}: those of `deno task sweep`. */
export interface LaunchOptions {
  /** Experiment file. @default "experiments/default.yaml" */
  file?: string;
  /** Store: an SQLite file or a postgres:// URL. @default "runs/store.sqlite" */
  storePath?: string;
  /** Jobs at a time. @default the experiment's, else the number of cores */
  concurrency?: number;
  /** Put failed jobs back in the queue first. @default false */
  restartFailed?: boolean;
  /** Backend of the jobs. @default "auto" */
  backend?: string;
  /** On a PostgreSQL store, run jobs in the sweep process too (false: `--no-local-worker`). @default true */
  localWorker?: boolean;
  /** Folder of the sweep's log: `<runsDir>/<sweep>/sweep.log`. @default "runs" */
  runsDir?: string;
  /** The sweep process's command line. @default this project's `main.ts sweep FILE --no-tui` with the options above */
  command?: string[];
}

/** Starts the sweep as a detached process whose output goes to `log`; returns it. */
export function launchSweep(opts: LaunchOptions, log: string): Deno.ChildProcess {
  const file = opts.file ?? "experiments/default.yaml";
  const args = opts.command ?? [
    ...defaultWorker(),
    "sweep",
    file,
    "--no-tui",
    "--store",
    opts.storePath ?? "runs/store.sqlite",
    "--backend",
    opts.backend ?? "auto",
    ...(opts.concurrency ? ["--concurrency", String(opts.concurrency)] : []),
    ...(opts.restartFailed ? ["--restart-failed"] : []),
    ...(opts.localWorker === false ? ["--no-local-worker"] : []),
  ];
  fs.mkdirSync(dirname(log), { recursive: true });
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@" >>"$DMW_SWEEP_LOG" 2>&1', "sh", ...args],
    env: { DMW_SWEEP_LOG: log },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  return child;
}

/**
 * Runs a sweep in the background and shows its dashboard; after `q`,
 * prints where the sweep runs (or how it ended). Returns the exit code:
 * the sweep's when it ended while watched, else 0.
 */
export async function sweepWithDashboard(opts: LaunchOptions = {}): Promise<number> {
  const file = opts.file ?? "experiments/default.yaml";
  const { experiment } = loadExperiment(file);
  const storePath = opts.storePath ?? "runs/store.sqlite";
  await (await openStore(storePath)).close();
  const log = join(opts.runsDir ?? "runs", experiment.name, "sweep.log");
  const child = launchSweep(opts, log);
  const owner = { pid: child.pid, log } as { pid: number; log: string; exit?: Deno.CommandStatus };
  child.status.then((s) => owner.exit = s);
  await runDashboard({ storePath, sweep: experiment.name, wait: true, owner });
  if (owner.exit) {
    console.log(`sweep ${experiment.name} ended (exit code ${owner.exit.code}); log: ${log}`);
    return owner.exit.code;
  }
  console.log(
    `sweep ${experiment.name} keeps running in the background (pid ${child.pid}, log ${log}).\n` +
      `\`deno task watch ${experiment.name}\` shows it again; \`kill -- -${child.pid}\` stops it ` +
      "and its jobs (the next `deno task sweep` resumes them).",
  );
  return 0;
}
