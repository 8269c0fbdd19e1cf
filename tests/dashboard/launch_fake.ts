/**
 * `deno task sweep` in a terminal, with the fake worker: `launch_fake.ts FILE
 * STORE RUNS` runs the sweep in the background (tests/sweep/fixtures/
 * run_sweep.ts, whose jobs are fake workers) and shows the dashboard, as
 * main.ts does with the real trainer. Used by the tmux test.
 */
import { fileURLToPath } from "node:url";
import { sweepWithDashboard } from "../../lib/dashboard/launch.ts";

const [file, storePath, runsDir] = Deno.args;
const runner = fileURLToPath(new URL("../sweep/fixtures/run_sweep.ts", import.meta.url));
Deno.exitCode = await sweepWithDashboard({
  file,
  storePath,
  runsDir,
  command: [Deno.execPath(), "run", "-A", runner, file, storePath, runsDir],
});
