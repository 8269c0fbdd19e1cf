/**
 * The command line: one shape for every model of the zoo. This file only
 * parses arguments and calls into lib/.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { describeRange, parseSets, TRAINER_KEYS } from "./lib/models/config.ts";
import type { KeySpec } from "./lib/models/model.ts";
import { MODELS } from "./lib/models/registry.ts";
import { METRICS } from "./lib/metrics/names.ts";
import { BENCH_CASE_NAMES } from "./lib/bench/cases.ts";
import type { BackendName } from "./lib/runtime/backend.ts";

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    }
    return n;
  };
}

function positive(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be at least 1`);
    return n;
  };
}

function num(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError("must be a number");
  return n;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** Whether the dashboard can run: stdin and stdout are terminals. */
const terminal = () => Deno.stdout.isTerminal() && Deno.stdin.isTerminal();

const backendOption = () =>
  new Option(
    "--backend <name>",
    "backend: auto picks WebGPU on a hardware adapter, else oneDNN when it loads (matrix products, convolutions), else wasm",
  )
    .choices(["auto", "webgpu", "onednn", "wasm", "cpu"]).default("auto");

const threadsOption = () =>
  new Option(
    "--threads <n>",
    "wasm threads (sets DMW_THREADS; default every core, and cores / concurrency for a sweep's jobs)",
  ).argParser(positive("--threads"));

function keyLines(keys: Record<string, KeySpec>): string[] {
  return Object.entries(keys).map(([k, s]) =>
    `  ${k.padEnd(18)} ${s.help}${s.choices ? ` [${s.choices.join("|")}]` : ""}${
      s.range ? `; ${describeRange(s.range)}` : ""
    } (default ${JSON.stringify(s.default)})`
  );
}

function keyHelp(): string {
  const lines = ["", "Trainer keys (--set key=value):", ...keyLines(TRAINER_KEYS)];
  for (const [name, e] of Object.entries(MODELS)) {
    lines.push("", `Model "${name}": ${e.description}`, `  data: ${e.data}`, ...keyLines(e.keys));
  }
  return lines.join("\n");
}

const program = new Command()
  .name("deno task")
  .description(
    "Diffusion-model workbench: train the zoo, sample, evaluate, sweep and compare experiments.",
  )
  .showHelpAfterError("(add --help to see the options)")
  .hook("preAction", (_program, action) => {
    const threads = action.opts().threads;
    if (threads !== undefined) Deno.env.set("DMW_THREADS", String(threads));
  });

program.command("train")
  .description(
    "Train (or resume) a run; progress with ETA on stderr, events in <out>/events.jsonl.",
  )
  .requiredOption("--model <name>", `model: ${Object.keys(MODELS).join(", ")}`)
  .requiredOption(
    "--data <dataset>",
    "dataset: mnist, 8gaussians, 25gaussians, swissroll, moons, checkerboard, a table name or a .csv file",
  )
  .option("--steps <n>", "training steps (default 2000)", int("--steps"))
  .option(
    "--out <dir>",
    "run directory; an existing one with checkpoints is resumed (default runs/train/<model>-<data>-<time>)",
  )
  .option("--seed <n>", "seed (default 0)", int("--seed"))
  .addOption(
    new Option("--set <key=value>", "any configuration key, repeatable (see below)")
      .argParser(collect).default([], "none"),
  )
  .addOption(backendOption())
  .addOption(threadsOption())
  .addHelpText("after", keyHelp)
  .action(async (o) => {
    const { trainCommand } = await import("./lib/commands/train.ts");
    await trainCommand({ ...o, set: parseSets(o.set), backend: o.backend as BackendName });
  });

/** The sampling options `sample` and `eval` share. */
function samplingOptions(cmd: Command): Command {
  return cmd
    .option(
      "--sampler <name>",
      "sampler (default: the run's): ddpm, ddim, dpmpp2m on the schedule's timesteps; euler, heun, " +
        "dpmpp2m_sde on a σ grid (ddpm models: every one of these; objective=edm: euler, heun, dpmpp2m, " +
        "dpmpp2m_sde; objective=flow: euler, heun); em (score); ancestral (d3pm)",
    )
    .option("--steps <k>", "sampling steps (default: the run's)", positive("--steps"))
    .option("--eta <eta>", "η of ddim (0 = deterministic) and dpmpp2m_sde (default 1)", num)
    .option("--churn <s>", "EDM's S_churn for euler and heun (0 = deterministic)", num)
    .option("--guidance <w>", "classifier-free guidance scale (conditional models)", num)
    .option(
      "--guidance-rescale <phi>",
      "guidance rescale φ in [0, 1] (Lin et al. 2023; conditional models)",
      num,
    );
}

samplingOptions(program.command("sample"))
  .description(
    "Draw samples from a run: a PNG grid for images, CSV + PNG scatter for 2-D data, CSV rows for tables.",
  )
  .requiredOption("--run <dir>", "run directory")
  .requiredOption("--out <file>", "output file (.png for images, .csv for points and tables)")
  .option("--n <n>", "number of samples", positive("--n"), 64)
  .option(
    "--label <l>",
    "class label for conditional models (default: one row per class)",
    int("--label"),
  )
  .option("--ema <decay>", "weights: raw or a tracked EMA decay (default: the largest tracked)")
  .option("--checkpoint <step>", "checkpoint step (default: latest)", int("--checkpoint"))
  .option("--seed <n>", "seed", int("--seed"), 0)
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    const { sampleCommand } = await import("./lib/commands/sample.ts");
    const paths = await sampleCommand({ ...o, backend: o.backend as BackendName });
    for (const p of paths) console.log(p);
  });

samplingOptions(program.command("eval"))
  .description(
    'Evaluate a run: prints one JSON line per metric, {"metric", "value", "n", "spread", …}.',
  )
  .requiredOption("--run <dir>", "run directory")
  .addOption(
    new Option(
      "--metric <m>",
      `metric, repeatable: images ${METRICS.image.join(", ")}; 2-D data ${
        METRICS.points.join(", ")
      }; tables ${METRICS.table.join(", ")}; d3pm also bpd`,
    ).argParser(collect).default([], "the dataset's usual ones"),
  )
  .option("--n <n>", "samples to draw", positive("--n"))
  .option("--ema <decay>", "weights: raw or a tracked EMA decay")
  .option("--checkpoint <step>", "checkpoint step (default: latest)", int("--checkpoint"))
  .addOption(
    new Option("--clip <mode>", "x0 clipping (default: the model's)").choices([
      "none",
      "static",
      "dynamic",
    ]),
  )
  .option("--samples-out <file>", "also write the samples drawn (PNG grid, or CSV + scatter)")
  .option(
    "--events <file>",
    "append JSON lines as it runs: a start line (backend, device), then sampling progress",
  )
  .option("--seed <n>", "seed", int("--seed"), 0)
  .addOption(
    new Option("--set <key=value>", "extra evaluation settings, repeatable (e.g. target=COLUMN)")
      .argParser(collect).default([], "none"),
  )
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    const { evalCommand } = await import("./lib/commands/eval.ts");
    await evalCommand({ ...o, backend: o.backend as BackendName });
  });

program.command("sweep")
  .description(
    "Run an experiment file: plan (train once, evaluate many), run jobs in child processes, resume anything.",
  )
  .argument("[file]", "experiment file", "experiments/default.yaml")
  .option("--dry-run", "print the plan (configurations → training + evaluation jobs) and stop")
  .option("--no-tui", "plain progress lines instead of the dashboard")
  .option(
    "--concurrency <n>",
    "jobs at a time (default: the number of cores)",
    int("--concurrency"),
  )
  .option("--restart-failed", "put failed jobs back in the queue")
  .option(
    "--store <path>",
    "store: an SQLite file, or a postgres://user@host:port/db URL",
    "runs/store.sqlite",
  )
  .option(
    "--no-local-worker",
    "on a postgres:// store, only coordinate: `deno task worker` processes run the jobs",
  )
  .addOption(backendOption())
  .addOption(threadsOption())
  .addHelpText(
    "after",
    "\nIn a terminal (and without --no-tui) the sweep runs as a background process, its plain lines\n" +
      "going to runs/<sweep>/sweep.log, and the dashboard shows it: q quits the dashboard only, the\n" +
      "sweep keeps running and `deno task watch` attaches again.",
  )
  .action(async (file: string, o) => {
    if (o.tui && !o.dryRun && terminal()) {
      const { sweepWithDashboard } = await import("./lib/dashboard/launch.ts");
      Deno.exitCode = await sweepWithDashboard({
        file,
        concurrency: o.concurrency,
        restartFailed: o.restartFailed,
        storePath: o.store,
        backend: o.backend,
        localWorker: o.localWorker,
      });
      return;
    }
    const { runSweep } = await import("./lib/sweep/commands.ts");
    const r = await runSweep({
      file,
      dryRun: o.dryRun,
      concurrency: o.concurrency,
      restartFailed: o.restartFailed,
      storePath: o.store,
      backend: o.backend === "auto" ? undefined : o.backend,
      localWorker: o.localWorker,
    });
    if (r.failed > 0) Deno.exitCode = 1;
  });

program.command("worker")
  .description(
    "Run jobs of every running sweep in a PostgreSQL store, on this machine, until Ctrl-C.",
  )
  .requiredOption("--store <url>", "the sweeps' store: postgres://user@host:port/db")
  .option(
    "--concurrency <n>",
    "jobs at a time (default: the number of cores)",
    int("--concurrency"),
  )
  .option("--runs <dir>", "this machine's folder for the jobs' attempt folders", "runs")
  .addOption(backendOption())
  .addOption(threadsOption())
  .addHelpText(
    "after",
    "\nOn each machine that should run jobs (a sweep started with `deno task sweep FILE --store URL`):\n" +
      "  deno task worker --store postgres://dmw:PASSWORD@db-host/dmw --concurrency 2 --threads 1\n" +
      "Checkpoints and sample files travel through the store: no shared filesystem. Ctrl-C kills the\n" +
      "running jobs and puts them back in the queue; another worker resumes a training job from its\n" +
      "last stored checkpoint. A database not up yet is waited for.",
  )
  .action(async (o) => {
    const { workerCommand } = await import("./lib/sweep/worker.ts");
    await workerCommand({
      storePath: o.store,
      concurrency: o.concurrency,
      runsDir: o.runs,
      backend: o.backend,
    });
  });

program.command("watch")
  .description(
    "The live dashboard of a sweep in the store (the most recent when none is named), running or finished; " +
      "plain lines, one per event, with --no-tui or when stdout is not a terminal.",
  )
  .argument("[sweep]", "sweep name")
  .option(
    "--with <sweeps...>",
    "other sweeps whose grids the dashboard's compare view lays beside this one's (plain lines: " +
      "their compare grid at the end)",
  )
  .option("--no-tui", "plain lines instead of the dashboard")
  .option(
    "--store <path>",
    "store: an SQLite file, or a postgres://user@host:port/db URL",
    "runs/store.sqlite",
  )
  .action(async (sweep: string | undefined, o) => {
    if (o.tui && terminal()) {
      const { runDashboard } = await import("./lib/dashboard/mod.ts");
      await runDashboard({ storePath: o.store, sweep, others: o.with });
    } else {
      const { watchLines } = await import("./lib/dashboard/plain.ts");
      await watchLines({ storePath: o.store, sweep, others: o.with });
    }
  });

program.command("compare")
  .description(
    "A sweep's metric in a grid of two parameters (best cell marked), or every configuration as CSV; " +
      "several sweeps side by side; --plot draws the metric against sampling steps or NFE.",
  )
  .argument("[sweeps...]", "sweep names, compared side by side (default: the most recent sweep)")
  .option("--rows <param>", "row parameter (default schedule)")
  .option("--cols <param>", "column parameter, or nfe (default sample_steps)")
  .option(
    "--metric <name>",
    "metric (default: the experiment's metric:, else the first one its evaluations recorded)",
  )
  .option("--csv", "every configuration as one CSV row: (sweep,) parameters, state, then metrics")
  .option(
    "--plot <file>",
    "also write a figure, FILE.svg or FILE.png: the metric against --x, one line per --by value, " +
      "±1 spread as error bars, log axes where values span a decade, each sweep's best point marked; " +
      "several sweeps overlaid (dashed by sweep)",
  )
  .option(
    "--by <param>",
    "the figure's series: one line per value (default sampler, else schedule, else the first other varying parameter)",
  )
  .option(
    "--x <param>",
    "the figure's x axis: nfe or sample_steps (default nfe when every evaluation recorded it)",
  )
  .option("--list", "list the sweeps in the store (name, status, jobs done, failed, created, file)")
  .option(
    "--store <path>",
    "store: an SQLite file, or a postgres://user@host:port/db URL",
    "runs/store.sqlite",
  )
  .addHelpText(
    "after",
    "\nExamples:\n  deno task compare default --plot runs/default-mmd.png\n" +
      "  deno task compare samplers --rows sampler --cols nfe --plot samplers.svg --by sampler\n" +
      "  deno task compare default default-seed1   # two sweeps side by side",
  )
  .action(async (sweeps: string[], o) => {
    const { compareSweep, listSweeps } = await import("./lib/sweep/compare.ts");
    if (o.list) {
      console.log(await listSweeps({ storePath: o.store }));
      return;
    }
    if (o.plot) {
      const { checkFigureFile } = await import("./lib/sweep/plot.ts");
      checkFigureFile(o.plot);
    }
    console.log(
      await compareSweep({
        sweeps,
        rows: o.rows,
        cols: o.cols,
        metric: o.metric,
        csv: o.csv,
        plot: o.plot,
        by: o.by,
        x: o.x,
        storePath: o.store,
      }),
    );
  });

program.command("report")
  .description(
    "Write a sweep's result as a folder to share: README.md with the compare grid, the figures " +
      "(the metric against sampling steps or NFE, the training loss per timestep band; SVG and PNG) " +
      "and the sweep's configuration.",
  )
  .argument("[sweep]", "sweep name (default: the most recent)")
  .requiredOption("--out <dir>", "folder to write (made when missing)")
  .option(
    "--metric <name>",
    "metric (default: the experiment's metric:, else the first one its evaluations recorded)",
  )
  .option(
    "--by <param>",
    "the figure's series (default sampler, else schedule, …; as compare --plot)",
  )
  .option("--x <param>", "the figure's x axis: nfe or sample_steps (default nfe when recorded)")
  .option(
    "--runs <filter>",
    "the training runs of the loss-per-band figure, by parameter (schedule=cosine; default all)",
  )
  .option(
    "--store <path>",
    "store: an SQLite file, or a postgres://user@host:port/db URL",
    "runs/store.sqlite",
  )
  .addHelpText("after", "\nExample:\n  deno task report default --out reports/default")
  .action(async (sweep: string | undefined, o) => {
    const { writeReport } = await import("./lib/sweep/report.ts");
    const files = await writeReport({
      sweep,
      out: o.out,
      metric: o.metric,
      by: o.by,
      x: o.x,
      runs: o.runs,
      storePath: o.store,
    });
    console.log(`wrote ${files.join(", ")}`);
  });

program.command("visualize")
  .description(
    "Write the reference figures (Ho et al. 2020 DDPM): time embeddings, the forward process on MNIST, ᾱ and log-SNR per schedule; " +
      "with --run, the run's own figures (score: forward and reverse process, attention maps).",
  )
  .option("--out <dir>", "output folder", "runs/figures")
  .option("--run <dir>", "run directory whose model draws its figures")
  .option("--ema <decay>", "the run's weights: raw or a tracked EMA decay (default: the largest)")
  .option("--checkpoint <step>", "the run's checkpoint step (default: latest)", int("--checkpoint"))
  .option(
    "--steps <k>",
    "sampling steps of the reverse process (default: the run's)",
    int("--steps"),
  )
  .option("--seed <n>", "seed of the run's figures", int("--seed"), 0)
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    const { visualizeCommand } = await import("./lib/commands/visualize.ts");
    for (const p of await visualizeCommand({ ...o, backend: o.backend as BackendName })) {
      console.log(p);
    }
  });

program.command("bench")
  .description(
    "Benchmarks (README, Benchmarks): one JSON line per case, comparable with the PyTorch reference script's.",
  )
  .option(
    "--case <names>",
    `cases to run, comma-separated: ${
      BENCH_CASE_NAMES.join(", ")
    } (default: all; on webgpu the four the PyTorch reference also runs: README, Benchmarks)`,
  )
  .option(
    "--dry-run",
    "the four cases the PyTorch reference also runs, at tiny sizes: checks the path end to end (e.g. on llvmpipe); " +
      'its records say "dry_run": true and compare with nothing',
  )
  .option("--profile", "training cases also report their 15 slowest kernels (kernel_ms)")
  .addOption(backendOption())
  .addOption(threadsOption())
  .action(async (o) => {
    const { benchCommand } = await import("./lib/commands/bench.ts");
    await benchCommand({
      case: o.case,
      backend: o.backend as BackendName,
      dryRun: o.dryRun,
      profile: o.profile,
    });
  });

await program.parseAsync(["deno", "main.ts", ...Deno.args]).catch((e: unknown) => {
  console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
  Deno.exit(1);
});
