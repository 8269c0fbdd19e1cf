/**
 * One sweep process per sweep: a lock file in the sweep's runs folder
 * (`runs/<sweep>/sweep.lock`, holding the owner's pid). A second
 * `deno task sweep` of the same experiment finds it and stops before touching
 * the store; otherwise it would take the first one's running jobs for
 * orphans of a killed sweep, stop their workers and fail their evaluations.
 * A lock whose process is gone (a sweep killed with `kill -9`) is taken over.
 */
import * as fs from "node:fs";
import { dirname } from "node:path";
import { processExists } from "../runtime/process.ts";

/**
 * Takes the lock at `path` for sweep `name`, or throws naming the process
 * that holds it. Returns the function that releases it.
 */
export function acquireSweepLock(path: string, name: string): () => void {
  fs.mkdirSync(dirname(path), { recursive: true });
  const mine = JSON.stringify({ pid: Deno.pid, started: new Date().toISOString() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(path, mine, { flag: "wx", mode: 0o644 });
      return () => {
        try {
          if (fs.readFileSync(path, "utf8") === mine) fs.rmSync(path);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") {
        throw new Error(`${path}: cannot take the sweep's lock (${(e as Error).message})`);
      }
    }
    let holder: { pid?: number; started?: string } = {};
    try {
      holder = JSON.parse(fs.readFileSync(path, "utf8"));
    } catch {
      // a torn lock file: its writer died mid-write
    }
    if (holder.pid && holder.pid !== Deno.pid && processExists(holder.pid)) {
      throw new Error(
        `sweep ${name} is already running in process ${holder.pid} (since ${holder.started}); ` +
          `\`deno task watch ${name}\` shows it. If that process is not a sweep, remove ${path}`,
      );
    }
    fs.rmSync(path, { force: true });
  }
  throw new Error(`${path}: another process keeps taking the sweep's lock`);
}

/** The live process holding the sweep lock at `path`, if any (not this process). */
export function lockHolder(path: string): number | undefined {
  try {
    const { pid } = JSON.parse(fs.readFileSync(path, "utf8")) as { pid?: number };
    return pid && pid !== Deno.pid && processExists(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}
