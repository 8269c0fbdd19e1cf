/**
 * README's "A machine that dies", with the real trainer: `experiments/two_machines.yaml`
 * on a throwaway PostgreSQL cluster, coordinated here with no local worker, run by two
 * `deno task worker` processes (each its own process group and runs folder: two "machines").
 * Once a training job has logged step 700 (its step-500 checkpoint stored), its machine's
 * process group gets SIGKILL. Prints what happened and exits 1 unless every job finished,
 * the killed job resumed on the other machine, and every training run's loss series has
 * each logged step once. Needs PostgreSQL (`.ci/run` installs it).
 *
 *   deno run -A tasks/machine_dies.ts
 */
import { openStore } from "../lib/store/store.ts";
import { startPostgres } from "../lib/store/throwaway.ts";
import { runSweep } from "../lib/sweep/commands.ts";

const root = new URL("..", import.meta.url).pathname;
const pg = await startPostgres();
const dir = Deno.makeTempDirSync({ prefix: "dmw-machine-dies-" });
let failures = 0;
try {
  const url = await pg.newDatabase();
  const machines = [0, 1].map((i) =>
    new Deno.Command("setsid", {
      args: [Deno.execPath(), "run", "-A", `${root}main.ts`, "worker", "--store", url]
        .concat(["--concurrency", "1", "--threads", "1", "--runs", `${dir}/m${i}`]),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  const lines: string[] = [];
  const t0 = performance.now();
  const clock = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  const sweep = runSweep({
    file: `${root}experiments/two_machines.yaml`,
    storePath: url,
    localWorker: false,
    noTui: true,
    runsDir: `${dir}/coordinator`,
    onEvent: (l) => lines.push(l),
  });
  const store = await openStore(url);
  try {
    let victim: { key: string; machine: number } | undefined;
    while (!victim) {
      await new Promise((r) => setTimeout(r, 200));
      const s = await store.sweep("two-machines");
      for (const j of s ? await store.jobs(s.id) : []) {
        if (j.kind !== "train" || j.state !== "running" || !j.pid) continue;
        const step = (await store.metricsSince(j.id, 0)).at(-1)?.step ?? 0;
        if (step < 700 || !(await store.artifacts(j.id)).length) continue;
        const stat = Deno.readTextFileSync(`/proc/${j.pid}/stat`);
        const group = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
        const machine = machines.findIndex((m) => m.pid === group);
        Deno.kill(-group, "SIGKILL");
        console.log(`${clock()}: kill -9 machine ${machine} while ${j.key} was at step ${step}`);
        victim = { key: j.key, machine };
        break;
      }
    }
    const result = await sweep;
    console.log(`${clock()}: sweep ${JSON.stringify(result)}`);
    const s = (await store.sweep("two-machines"))!;
    for (const j of await store.jobs(s.id)) {
      const steps = (await store.metricsSince(j.id, 0)).map((p) => p.step);
      const once = steps.every((v, i) => i === 0 || v > steps[i - 1]);
      console.log(
        `${j.kind} ${j.key}: ${j.state}, attempt ${j.attempts}` +
          (j.kind === "train" ? `, ${steps.length} logged steps ${steps[0]}…${steps.at(-1)}` : ""),
      );
      if (j.state !== "done" || !once) failures++;
      if (j.key === victim.key && j.attempts !== 2) failures++;
    }
    const evals = await store.evalsForSweep(s.id);
    console.log(evals.map((e) => `${e.metric}=${e.value.toPrecision(4)}`).join(" "));
    if (evals.length !== 4) failures++;
    console.log(lines.filter((l) => / start /.test(l)).join("\n"));
  } finally {
    await store.close();
    for (const m of machines) {
      try {
        Deno.kill(-m.pid, "SIGINT");
      } catch {
        // the killed machine
      }
    }
    await Promise.all(machines.map((m) => m.status));
  }
} finally {
  await pg.stop();
  Deno.removeSync(dir, { recursive: true });
}
console.log(failures ? `${failures} checks failed` : "every check passed");
Deno.exit(failures ? 1 : 0);
