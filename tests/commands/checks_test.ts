/**
 * Bad options to sample, eval and train fail before any work, with one line
 * naming the option, and write nothing.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { useBackend } from "../helpers.ts";
import { tinyToyRun } from "./runs.ts";

await useBackend("wasm");

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** Runs main.ts; returns its exit code, stdout and its error line (which must end stderr but for a hint). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; error: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args, "--backend", "wasm"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const err = new TextDecoder().decode(r.stderr).trim().split("\n");
  const at = err.findIndex((l) => l.startsWith("error:"));
  assert.ok(
    at >= 0 && err.length - at <= 2,
    `one error line (and a --help hint):\n${err.join("\n")}`,
  );
  return { code: r.code, stdout: new TextDecoder().decode(r.stdout), error: err[at] };
}

Deno.test("sample and eval refuse what does not apply before sampling, and write nothing", async () => {
  const run = await tinyToyRun();
  const before = fs.readdirSync(run).sort();
  const blocker = join(run, "not-a-dir");
  fs.writeFileSync(blocker, "");
  const cases: [string[], RegExp][] = [
    [
      ["sample", "--run", run, "--out", join(run, "s.jpg")],
      /--out .*s\.jpg: points samples are written as a \.csv with a \.png scatter; name a \.csv or \.png file/,
    ],
    [
      ["sample", "--run", run, "--out", join(blocker, "s.csv")],
      /--out .*not-a-dir\/s\.csv: cannot write in .*not-a-dir/,
    ],
    [
      ["sample", "--run", run, "--out", join(run, "s.csv"), "--label", "3"],
      /model ddpm: --label does not apply: the model is unconditional/,
    ],
    [
      ["sample", "--run", run, "--out", join(run, "s.csv"), "--eta", "0.5"],
      /--eta applies to the ddim, dpmpp2m_sde samplers, not ddpm/,
    ],
    [["sample", "--run", run, "--out", join(run, "s.csv"), "--n", "0"], /--n must be at least 1/],
    [
      ["eval", "--run", run, "--metric", "fid"],
      /--metric fid: does not apply to ddpm on 8gaussians \(metrics: mmd, swd\)/,
    ],
    [
      ["eval", "--run", run, "--metric", "mmd", "--sampler", "ddim", "--eta", "-1"],
      /--eta must be ≥ 0, got -1/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 1, args.join(" "));
    assert.match(r.error, want);
    assert.equal(r.stdout, "");
  }
  fs.rmSync(blocker);
  assert.deepEqual(fs.readdirSync(run).sort(), before, "nothing was written into the run");
  fs.rmSync(run, { recursive: true });
});

Deno.test("train --steps 0 fails with the key's range before creating the run directory", async () => {
  const out = join(Deno.makeTempDirSync(), "run");
  const r = await cli([
    "train",
    "--model",
    "ddpm",
    "--data",
    "8gaussians",
    "--steps",
    "0",
    "--out",
    out,
  ]);
  assert.equal(r.code, 1);
  assert.match(r.error, /steps must be an integer ≥ 1 \(training steps\), got 0/);
  assert.equal(fs.existsSync(out), false);
});

Deno.test("train names a missing CSV before any work; a resume says so when it starts", async () => {
  const missing = await cli([
    "train",
    "--model",
    "tabddpm",
    "--data",
    "/nonexistent/t.csv",
    "--out",
    join(Deno.makeTempDirSync(), "r"),
  ]);
  assert.equal(missing.code, 1);
  assert.match(missing.error, /\/nonexistent\/t\.csv: no such CSV file/);
  const out = join(Deno.makeTempDirSync(), "run");
  const args = ["train", "--model", "ddpm", "--data", "8gaussians", "--out", out];
  const set = ["--set", "batch=16", "--set", "T=50", "--set", "checkpoint_every=2"];
  const run = (steps: string) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args, ...set, "--steps", steps, "--backend", "wasm"],
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
  assert.equal((await run("2")).code, 0);
  const resumed = await run("4");
  assert.equal(resumed.code, 0);
  const lines = new TextDecoder().decode(resumed.stderr).split(/[\r\n]+/);
  const at = lines.findIndex((l) => l === "resuming from the checkpoint at step 2");
  assert.ok(at >= 0, lines.join("\n"));
  assert.ok(
    lines.findIndex((l) => l.startsWith("train ddpm on 8gaussians")) > at,
    "before training",
  );
});

Deno.test("--backend cpu prints no 'install our node backend' banner", async () => {
  const out = join(Deno.makeTempDirSync(), "run");
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "train", "--model", "ddpm", "--data", "8gaussians", "--steps", "1"]
      .concat(["--set", "batch=8", "--set", "T=20", "--out", out, "--backend", "cpu"]),
    stderr: "piped",
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(r.stderr);
  assert.equal(r.code, 0, text);
  assert.match(text, /backend: cpu/);
  assert.doesNotMatch(text, /node backend|tfjs-node/);
});

Deno.test("--help names what can be chosen: eval's metrics, bench's cases, the keys' ranges", async () => {
  const help = async (...args: string[]) =>
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, ...args, "--help"],
        stdout: "piped",
        env: { NO_COLUMNS: "1", COLUMNS: "200" },
      }).output()).stdout,
    );
  const evalHelp = await help("eval");
  for (const m of ["fid", "class-accuracy", "mmd", "swd", "column-tv", "bpd"]) {
    assert.ok(evalHelp.includes(m), `eval --help lacks ${m}`);
  }
  assert.ok(!evalHelp.includes("(default: [])"), evalHelp);
  const benchHelp = await help("bench");
  for (const c of ["mlp-toy", "mnist-unet", "sample-mnist-ddim50", "memory-1000"]) {
    assert.ok(benchHelp.includes(c), `bench --help lacks ${c}`);
  }
  assert.match(await help("train"), /steps +training steps; an integer ≥ 1 \(default 2000\)/);
});
