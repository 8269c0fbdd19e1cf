/**
 * The real dashboard in a terminal emulator: `main.ts watch` (and the sweep
 * launcher) run in tmux against the recorded store; keys go in with
 * `send-keys`, and each screen is read back with `capture-pane` and checked.
 * Skipped, with a message saying so, only where tmux is not installed.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../../lib/store/store.ts";
import { buildFixture } from "./fixture.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SOCKET = `dmw-test-${Deno.pid}`;

function hasTmux(): boolean {
  try {
    return new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

const TMUX = hasTmux();

/** These tests fail, not skip, without tmux: .ci/run installs it. */
function needTmux(): void {
  if (!TMUX) throw new Error("tmux is not installed (apt-get install tmux; .ci/run does)");
}

function tmux(...args: string[]): string {
  const out = new Deno.Command("tmux", { args: ["-L", SOCKET, "-f", "/dev/null", ...args] })
    .outputSync();
  if (!out.success) {
    throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Ends this test's tmux server, if it still runs (it exits with its last session). */
function killServer(): void {
  new Deno.Command("tmux", { args: ["-L", SOCKET, "kill-server"], stdout: "null", stderr: "null" })
    .outputSync();
}

/** One tmux session running a command in a terminal of a given size. */
class Pane {
  readonly name: string;
  readonly pid: number;

  constructor(name: string, command: string, cols: number, rows: number) {
    this.name = name;
    tmux(
      "new-session",
      "-d",
      "-s",
      name,
      "-x",
      String(cols),
      "-y",
      String(rows),
      "-c",
      ROOT,
      command,
    );
    this.pid = Number(tmux("display-message", "-p", "-t", name, "#{pane_pid}").trim());
  }

  /** The screen's text (lines wrapped by the terminal joined). */
  screen(): string {
    return tmux("capture-pane", "-p", "-J", "-t", this.name);
  }

  send(...keys: string[]): void {
    tmux("send-keys", "-t", this.name, ...keys);
  }

  /**
   * Waits until the screen matches every pattern and stays the same for
   * 100 ms (a frame drawn completely); returns it.
   */
  async waitFor(patterns: RegExp[], what: string, ms = 15_000): Promise<string> {
    const end = Date.now() + ms;
    let s = "";
    while (Date.now() < end) {
      s = this.screen();
      if (patterns.every((p) => p.test(s))) {
        await new Promise((r) => setTimeout(r, 100));
        if (this.screen() === s) return s;
        continue;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what}: the screen never matched ${patterns.join(" ")}:\n${s}`);
  }
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`);

async function gone(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** `env`: variables to set for the dashboard, as `K=V …`. */
function watchCommand(storePath: string, env = ""): string {
  return `${env} exec '${Deno.execPath()}' run -A main.ts watch fixture --store '${storePath}'`;
}

async function job(storePath: string, id: number) {
  const store = await openStore(storePath, { readOnly: true });
  try {
    return (await store.job(id))!;
  } finally {
    await store.close();
  }
}

Deno.test({
  name: "tmux 100×30: every view and key against a running sweep",
  fn: async () => {
    needTmux();
    const f = await buildFixture();
    const p = new Pane("wide", watchCommand(f.storePath), 100, 30);
    try {
      let s = await p.waitFor(
        [/11 done · 2 running · 12 queued · 1 failed of 26 jobs/, /▸ +0 linear/],
        "overview",
      );
      assert.match(s, /^ fixture {2}running {2}ddpm on 8gaussians {2}backend auto → wasm/m);
      assert.match(
        s,
        /# schedule sample_steps sampler ema_eval status +progress +steps\/s +ETA +loss +mmd/,
      );
      assert.match(s, /^ +12 cosine +10 +ddpm +raw +training +█+▋░+ 45% +10 +20s +0\.57 +—/m);
      assert.match(s, /best mmd 0\.012: #11 schedule=linear sample_steps=100 sampler=ddim/);
      assert.match(s.trimEnd().split("\n").at(-1)!, /↑↓jk select .* q quit/);

      p.send("j");
      await p.waitFor([/▸ +1 linear +10 +ddpm +0\.999 +failed/], "j selects the next run");

      p.send("Enter");
      s = await p.waitFor([/loss per timestep band \(log\)/], "Enter opens the run");
      assert.match(s, /#1 schedule=linear sample_steps=10 sampler=ddpm ema_eval=0\.999/);
      assert.match(s, /train done · eval failed: the evaluation printed no metric line/);
      assert.match(s, /mmd vs NFE/);
      assert.match(s, /[\u2801-\u28ff]/, "braille lines");
      assert.match(s, /t \.00–\.25 +█+/);
      assert.match(s, /step 400\/400 · lr 0\.001 · 10 steps\/s/);
      assert.match(s, /━ ddim ema 0\.999/);

      p.send("l");
      await p.waitFor([/loss per timestep band +│/], "l: linear scale");

      p.send("k");
      s = await p.waitFor([/#0 schedule=linear/, /samples of eval/], "k: the previous run");
      assert.match(s, /[░▒▓█]/, "2-D samples as a density");

      p.send("Escape");
      await p.waitFor([/sort: plan order/, /▸ +0 linear/], "Esc: back to the overview");

      p.send("s");
      s = await p.waitFor([/sort: mmd/], "s: sort by the metric");
      assert.match(s.split("\n")[4], /^ +11 linear +100 +ddim +0\.999 +done .*★0\.012/);
      p.send("s");
      await p.waitFor([/sort: plan order/], "s again: plan order");

      p.send("Tab");
      await p.waitFor([/#0 schedule=linear/, /mmd vs NFE/], "Tab: run detail");
      p.send("Tab");
      s = await p.waitFor([/schedule \\ sample_steps +10 +50 +100/], "Tab: compare");
      assert.match(s, /linear +0\.03 +0\.014 +★0\.012/);
      assert.match(s, /cosine +— +— +—/);
      p.send("x");
      await p.waitFor([/sampler \\ sample_steps/, /ddim +0\.03 +0\.014 +★0\.012/], "x: rows");
      p.send("Escape");
      await p.waitFor([/sort: plan order/], "Esc from compare");

      p.send("?");
      s = await p.waitFor([/Keys/, /a running sweep keeps running/], "? shows help");
      assert.match(s, /Esc\/\? close help/);
      p.send("Escape");
      await p.waitFor([/sort: plan order/], "Esc closes help");

      p.send("j");
      await p.waitFor([/▸ +1 linear/], "back on the failed run");
      p.send("r");
      await p.waitFor([/evaluation job .* is queued again/, /▸ +1 linear .* queued/], "r");
      assert.equal((await job(f.storePath, f.evals.failed.id)).state, "queued");

      p.send("j", "j", "j", "j", "j", "j", "j", "j", "j", "j", "j");
      await p.waitFor([/▸ +12 cosine/], "down to a training run");
      p.send("c");
      await p.waitFor(
        [/cancel running training job ddpm-8gaussians-\w+ \(used by 12 configurations\)\? y\/n/],
        "c asks first",
      );
      p.send("n");
      await p.waitFor([/not cancelled/], "n keeps it");
      assert.equal((await job(f.storePath, f.train.running.id)).cancelRequested, 0);
      p.send("c");
      await p.waitFor([/\? y\/n/], "c asks again");
      p.send("y");
      await p.waitFor(
        [/cancel requested for training job/, /▸ +12 cosine .* cancelling/],
        "y cancels",
      );
      assert.equal((await job(f.storePath, f.train.running.id)).cancelRequested, 1);

      p.send("q");
      assert.ok(await gone(p.pid), "q ends the dashboard");
    } finally {
      killServer();
    }
  },
});

Deno.test({
  name: "tmux 80×24, CI set: a finished sweep fits, and c and r say why they do nothing",
  fn: async () => {
    needTmux();
    const f = await buildFixture(undefined, { status: "done" });
    // CI set, as in a CI job: Ink alone would then draw only its last frame.
    const p = new Pane("narrow", watchCommand(f.storePath, "CI=true CI_JOB_ID=1"), 80, 24);
    try {
      let s = await p.waitFor([/▸ +0 linear/], "overview at 80×24");
      const lines = s.split("\n");
      assert.match(lines[0], /^ fixture {2}done {2}ddpm on 8gaussians/);
      assert.match(
        lines[3],
        /# schedule sample_steps sampler ema_eval status +progress +loss +mmd$/,
      );
      assert.match(lines[22], /q quit/);
      assert.ok(!/ETA/.test(lines[1]), "no ETA for a finished sweep");
      p.send("j", "r");
      await p.waitFor(
        [/r: sweep fixture is done and nothing runs it: `deno task sweep /],
        "r on a finished sweep",
      );
      assert.equal((await job(f.storePath, f.evals.failed.id)).state, "failed");
      p.send("G", "c");
      s = await p.waitFor([/▸ +23 cosine/, /c: sweep fixture is done, not running/], "c");
      p.send("g", "Enter");
      s = await p.waitFor([/loss per timestep band/, /mmd vs NFE/], "detail at 80");
      assert.match(s, /t \.75–1\.00 +█+/);
      p.send("Tab");
      await p.waitFor([/schedule \\ sample_steps/, /★0\.012/], "compare at 80");
      p.send("q");
      assert.ok(await gone(p.pid), "q ends the dashboard");
    } finally {
      killServer();
    }
  },
});

Deno.test({
  name: "tmux: sweep in a terminal runs in the background; q leaves it running",
  fn: async () => {
    needTmux();
    const dir = Deno.makeTempDirSync({ prefix: "dmw-dash-" });
    const file = join(dir, "live.yaml");
    fs.writeFileSync(
      file,
      "name: live\nmodel: ddpm\ndata: 8gaussians\nmetric: {name: mmd, goal: minimize}\n" +
        "steps: 300\nconcurrency: 2\nparameters:\n  lr: {values: [0.001, 0.0012]}\n",
    );
    const storePath = join(dir, "store.sqlite");
    const runs = join(dir, "runs");
    const p = new Pane(
      "live",
      `FAKE_SLEEP_MS=150 '${Deno.execPath()}' run -A tests/dashboard/launch_fake.ts ` +
        `'${file}' '${storePath}' '${runs}'; sleep 60`,
      100,
      30,
    );
    try {
      await p.waitFor(
        [/live {2}running/, /training/, /sweep runs in the background, pid \d+/],
        "dashboard",
      );
      p.send("q");
      const s = await p.waitFor(
        [/sweep live keeps running in the background \(pid (\d+), log .*sweep\.log\)/],
        "after q",
      );
      const pid = Number(s.match(/background \(pid (\d+)/)![1]);
      assert.ok(alive(pid), "the sweep outlives its dashboard");
      const end = Date.now() + 30_000;
      let status = "running";
      while (Date.now() < end && status === "running") {
        await new Promise((r) => setTimeout(r, 200));
        const store = await openStore(storePath, { readOnly: true });
        status = (await store.sweep("live"))!.status;
        await store.close();
      }
      assert.equal(status, "done", "the sweep finished after the dashboard quit");
      assert.ok(await gone(pid));
      assert.ok(fs.existsSync(join(runs, "live", "sweep.log")));
    } finally {
      killServer();
    }
  },
});

/**
 * Runs `fn` on the dashboard of the recorded store at 100×30 and at 80×24 (`CI` set in both),
 * each from the overview; then q must end it.
 */
async function atBothSizes(
  name: string,
  storePath: string,
  fn: (p: Pane, cols: number) => Promise<void>,
  args = "",
): Promise<void> {
  try {
    for (const [cols, rows] of [[100, 30], [80, 24]]) {
      const p = new Pane(
        `${name}${cols}`,
        `${watchCommand(storePath, "CI=true")}${args}`,
        cols,
        rows,
      );
      await p.waitFor([/▸ +0 linear/], `overview at ${cols}×${rows}`);
      await fn(p, cols);
      p.send("q");
      assert.ok(await gone(p.pid), "q ends the dashboard");
    }
  } finally {
    killServer();
  }
}

Deno.test({
  name: "tmux 100×30 and 80×24: / filters the runs by parameter, in the overview and compare",
  fn: async () => {
    needTmux();
    const f = await buildFixture(undefined, { status: "done" });
    await atBothSizes("filter", f.storePath, async (p) => {
      p.send("/");
      await p.waitFor([/^filter: key=value terms/m, /^ \/▏ +⏎ apply +Esc cancel/m], "/ opens");
      p.send("-l", "sampler=ddimm");
      p.send("BSpace");
      await p.waitFor([/^ \/sampler=ddim▏ /m], "typing and backspace");
      p.send("-l", " schedule=linear");
      p.send("Enter");
      let s = await p.waitFor(
        [/filter 6\/24: s/, /filter sampler=ddim schedule=linear: 6 of 24 runs/],
        "Enter applies the filter",
      );
      // By hand: the plan is schedule × steps × sampler × EMA (EMA fastest), so linear with
      // DDIM (the second sampler) is 4·steps + 2 + EMA: 2, 3, 6, 7, 10, 11.
      const table = s.split("\n").filter((l) => /^[▸ ] +\d+ /.test(l));
      assert.deepEqual(
        table.map((l) => Number(l.match(/^[▸ ] +(\d+) /)![1])),
        [2, 3, 6, 7, 10, 11],
      );
      assert.ok(table.every((l) => / linear .* ddim /.test(l)), table.join("\n"));
      p.send("Tab", "Tab");
      s = await p.waitFor([/schedule \\ sample_steps/, /filter 6\/24/], "compare, filtered");
      assert.doesNotMatch(s, /cosine/);
      assert.match(s, /linear +0\.03 +0\.014 +★0\.012/);
      p.send("/");
      p.send("-l", " shedule=x");
      p.send("Enter");
      await p.waitFor(
        [/^shedule is not a parameter \(did you mean "schedule"\?\)/m, /shedule=x▏/],
        "a bad key, and the text stays to be fixed",
      );
      p.send("Escape");
      await p.waitFor([/filter kept: sampler=ddim schedule=linear/], "Esc keeps the filter");
      // Tab from compare: the machine view, its CPU share once a second reading is in.
      p.send("Tab");
      s = await p.waitFor(
        [/this machine {2}\d+ cores · load [\d.]+ [\d.]+ [\d.]+/, /^cpu +[█-▏]*░* +\d+%/m],
        "Tab: the machine view",
      );
      assert.match(s, /^memory +.* \d+% {2}[\d.]+ [MG]B of [\d.]+ [MG]B/m);
      // The fixture's running jobs are recorded with pids that no process has here.
      assert.match(s, /running jobs \(2\)/);
      assert.match(
        s,
        /^ train +ddpm-8gaussians-\S+ +webgpu +999999 +— +— *\n +on box-2 · NVIDIA H200/m,
      );
      assert.match(s, /^ eval +eval-\S+ +onednn +999998 +— +— *\n +on .* \(here\) · AMD EPYC/m);
      assert.match(s.trimEnd().split("\n").at(-1)!, /Tab view +Esc back +\? help +q quit/);
    });
  },
});

Deno.test({
  name: "tmux 100×30 and 80×24: p pins runs, the run detail overlays their losses",
  fn: async () => {
    needTmux();
    const f = await buildFixture(undefined, { status: "done" });
    await atBothSizes("pin", f.storePath, async (p) => {
      p.send("p");
      await p.waitFor([/pinned training run schedule=linear \(1 pinned/], "p pins");
      p.send("G", "p");
      await p.waitFor([/pinned training run schedule=cosine \(2 pinned/], "p pins another");
      p.send("g");
      // Every configuration of a pinned training run (12 each here) is marked with a dot.
      await p.waitFor(
        [/▸ +0 linear/, /^● +1 linear/m, /^● +12 cosine/m],
        "pinned rows are marked",
      );
      p.send("Enter");
      const s = await p.waitFor(
        [/training loss, pinned runs \(log\)/, /^▸━ schedule=linear/m, /^ ━ schedule=cosine/m],
        "the run detail overlays the pinned runs",
      );
      assert.match(s, /[\u2801-\u28ff]/, "braille lines");
      p.send("p");
      await p.waitFor([/unpinned training run schedule=linear \(1 pinned/], "p unpins");
    });
  },
});

Deno.test({
  name:
    "tmux 100×30 and 80×24: a failed job's output in the run detail, o toggles output and samples",
  fn: async () => {
    needTmux();
    const f = await buildFixture(undefined, { status: "done" });
    await atBothSizes("output", f.storePath, async (p, cols) => {
      p.send("j", "Enter");
      // The failed evaluation's last lines, from the store, without leaving the dashboard.
      let s = await p.waitFor(
        [
          new RegExp(`output of ${f.evals.failed.key}`),
          /RangeError/,
          /sampling step 37 *│?$/m,
        ],
        "a failed job shows its output",
      );
      assert.match(s, /sampling 1000 for mmd 40%/);
      if (cols === 100) {
        assert.match(s, /output of eval-\S+ \(attempt 2, failed\)/);
        assert.match(s.trimEnd().split("\n").at(-1)!, / o output /);
      }
      p.send("o");
      s = await p.waitFor([/samples of eval/, /evaluation failed: no samples yet/], "o: samples");
      assert.doesNotMatch(s, /RangeError/);
      // On a run that did not fail, o asks for its output: this one stored none.
      p.send("k");
      await p.waitFor(
        [/#0 schedule=linear/, /output of eval-\S+/, /no output stored for it/],
        "o stays on: the done evaluation's output",
      );
      p.send("o");
      s = await p.waitFor([/#0 schedule=linear/, /samples of eval/], "o again: samples");
      assert.match(s, /[░▒▓█]/, "2-D samples as a density, from the store");
    });
  },
});

Deno.test({
  name:
    "tmux 100×30 and 80×24: watch --with lays another sweep's grid beside this one's in compare",
  fn: async () => {
    needTmux();
    const f = await buildFixture(undefined, { status: "done" });
    await buildFixture(f.dir, { status: "done", name: "fixture2", offset: 0.005 });
    await atBothSizes("with", f.storePath, async (p) => {
      p.send("Tab", "Tab");
      // By hand: linear's best per column is DDIM with EMA, 0.01 + 0.2/steps (+ 0.005 in
      // fixture2); cosine recorded nothing. Each sweep's best is starred.
      const s = await p.waitFor(
        [/^fixture2 linear/m, /^best mmd 0\.017 in fixture2/m],
        "compare with two sweeps",
      );
      assert.match(s, /^schedule \\ sample_steps +10 +50 +100/m);
      assert.match(s, /^fixture linear +0\.03 +0\.014 +★0\.012/m);
      assert.match(s, /^fixture cosine +— +— +—/m);
      assert.match(s, /^fixture2 linear +0\.035 +0\.019 +★0\.017/m);
      assert.match(s, /^best mmd 0\.012 in fixture: schedule=linear sample_steps=100/m);
      assert.match(s, /^best mmd 0\.017 in fixture2: schedule=linear sample_steps=100/m);
    }, " --with fixture2");
    try {
      // A sweep not in the store: an error naming it and the nearest one, no dashboard.
      const bad = new Pane(
        "withbad",
        `CI=true '${Deno.execPath()}' run -A main.ts watch fixture --store '${f.storePath}' ` +
          "--with fixtur2; sleep 30",
        100,
        30,
      );
      await bad.waitFor(
        [/no sweep named "fixtur2" in the store .*\(did you mean "fixture2"\?\)/],
        "--with an unknown sweep",
      );
    } finally {
      killServer();
    }
  },
});
