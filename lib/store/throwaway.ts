/**
 * A throwaway PostgreSQL cluster for the tests and the `sweep-workers`
 * benchmark: `initdb` in a temporary folder,
 * `pg_ctl start` on a free port (TCP on 127.0.0.1, trust authentication),
 * stopped and removed by `stop()`. The binaries are `$DMW_PG_BIN`, else
 * Debian's `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
 * PostgreSQL refuses to run as root, so as root the cluster belongs to the
 * `postgres` user (`runuser`). Without PostgreSQL this throws, naming the fix
 * (`.ci/run` installs it): the tests that need it fail, they do not skip.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import pg from "pg";

/** A running throwaway cluster. */
export interface ThrowawayPostgres {
  /** Connection URL of its `dmw` database. */
  url: string;
  /** Its port. */
  port: number;
  /** Stops the server (fast shutdown: connections are cut), keeping the data. */
  halt(): Promise<void>;
  /** Starts the server again on the same port. */
  start(): Promise<void>;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
  /** A fresh, empty database in the cluster; returns its URL. */
  newDatabase(): Promise<string>;
}

function binDir(): string {
  const fromEnv = Deno.env.get("DMW_PG_BIN");
  if (fromEnv) return fromEnv;
  try {
    const versions = fs.readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const dir = `/usr/lib/postgresql/${v}/bin`;
      if (fs.existsSync(join(dir, "initdb"))) return dir;
    }
  } catch {
    // not Debian's layout
  }
  try {
    const out = new Deno.Command("pg_config", { args: ["--bindir"], stderr: "null" }).outputSync();
    const dir = new TextDecoder().decode(out.stdout).trim();
    if (out.success && fs.existsSync(join(dir, "initdb"))) return dir;
  } catch {
    // no pg_config
  }
  throw new Error(
    "PostgreSQL is not installed (no initdb in $DMW_PG_BIN, /usr/lib/postgresql/*/bin or " +
      "pg_config --bindir): `.ci/run` installs it (apt-get install postgresql)",
  );
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function asRoot(): boolean {
  return Deno.uid() === 0;
}

async function run(cmd: string, args: string[], what: string): Promise<void> {
  const full = asRoot() ? ["runuser", "-u", "postgres", "--", cmd, ...args] : [cmd, ...args];
  const out = await new Deno.Command(full[0], { args: full.slice(1), stdin: "null" }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`${what} failed (${full.join(" ")}): ${text.trim().slice(-800)}`);
  }
}

/** Creates and starts a cluster with a `dmw` database. */
export async function startPostgres(): Promise<ThrowawayPostgres> {
  const bin = binDir();
  const dir = Deno.makeTempDirSync({ prefix: "dmw-pg-" });
  const data = join(dir, "data");
  if (asRoot()) {
    const id = new Deno.Command("id", { args: ["-u", "postgres"] }).outputSync();
    const gid = new Deno.Command("id", { args: ["-g", "postgres"] }).outputSync();
    if (!id.success) {
      throw new Error(
        "running as root and there is no `postgres` user to own the test cluster: " +
          "`.ci/run` installs PostgreSQL (apt-get install postgresql creates the user)",
      );
    }
    const dec = (b: Uint8Array) => Number(new TextDecoder().decode(b).trim());
    Deno.chownSync(dir, dec(id.stdout), dec(gid.stdout));
  }
  await run(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "dmw",
    "--auth=trust",
    "-E",
    "UTF8",
    "--no-sync",
  ], "initdb");
  const port = freePort();
  const pgCtl = join(bin, "pg_ctl");
  const opts =
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`;
  const start = () =>
    run(
      pgCtl,
      ["-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "-t", "60", "start"],
      "pg_ctl start",
    );
  const halt = () => run(pgCtl, ["-D", data, "-m", "fast", "-w", "stop"], "pg_ctl stop");
  await start();
  try {
    await run(
      join(bin, "createdb"),
      ["-h", "127.0.0.1", "-p", String(port), "-U", "dmw", "dmw"],
      "createdb",
    );
  } catch (e) {
    await halt().catch(() => {});
    throw e;
  }
  let stopped = false;
  let databases = 0;
  // Whatever ends the process (its last test, a failure, Ctrl-C, a timeout's SIGTERM), the
  // server does not outlive it.
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    const args = ["-D", data, "-m", "immediate", "-w", "stop"];
    const full = asRoot() ? ["runuser", "-u", "postgres", "--", pgCtl, ...args] : [pgCtl, ...args];
    new Deno.Command(full[0], { args: full.slice(1), stdout: "null", stderr: "null" }).outputSync();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  globalThis.addEventListener("unload", stopNow);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      stopNow();
      Deno.exit(130);
    });
  }
  return {
    newDatabase: async () => {
      const name = `t${++databases}`;
      const client = new pg.Client({ connectionString: `postgres://dmw@127.0.0.1:${port}/dmw` });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://dmw@127.0.0.1:${port}/${name}`;
    },
    url: `postgres://dmw@127.0.0.1:${port}/dmw`,
    port,
    halt,
    start,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await halt().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `fn` with a fresh database of a throwaway cluster (its URL), a
 * temporary folder (`prefix`), and the cluster itself (to halt and start it);
 * the cluster stops and the folder goes whatever happens.
 */
export async function withCluster(
  prefix: string,
  fn: (url: string, dir: string, pg: ThrowawayPostgres) => Promise<void>,
): Promise<void> {
  const pg = await startPostgres();
  const dir = Deno.makeTempDirSync({ prefix });
  try {
    await fn(await pg.newDatabase(), dir, pg);
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
