/**
 * The live terminal dashboard of a sweep (`deno task watch`, and `deno task
 * sweep` in a terminal). It reads the store only; its one write is a cancel
 * or restart request a key asks for. It runs on the terminal's alternate
 * screen and leaves it as it was on `q`.
 *
 * @example
 * ```ts
 * await runDashboard({ storePath: "runs/store.sqlite", sweep: "default" });
 * ```
 */
import React from "react";
import { Controller, type Owner } from "./controller.ts";

export type { Owner } from "./controller.ts";

/** Options of {@link runDashboard}. */
export interface DashboardOptions {
  /** Store: an SQLite file or a postgres:// URL. @default "runs/store.sqlite" */
  storePath?: string;
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
  /** Other sweeps whose grids the compare view lays beside this one's. @default none */
  others?: string[];
  /** Wait for the sweep to appear in the store (a sweep just launched). @default false */
  wait?: boolean;
  /** The sweep process this dashboard started, shown in the status line. */
  owner?: Owner;
  /** Store poll interval, ms. @default 500 */
  pollMs?: number;
  /** Most redraws per second. @default 10 */
  maxFps?: number;
}

const ESC = String.fromCharCode(27);

/**
 * Ink and the dashboard's components, loaded with `CI` masked. Ink decides once,
 * when it loads, whether it runs in CI (the is-in-ci package: `CI` or any
 * `CI_*` set), and there draws nothing but the last frame at exit: a dashboard
 * on a terminal in a CI job (or a shell that exports `CI`) would stay blank.
 * The dashboard runs only where stdin and stdout are terminals, so it always
 * wants live frames; the variable is put back before anything else reads it.
 */
async function loadInk() {
  const saved = Object.entries(Deno.env.toObject()).filter(([k]) =>
    k === "CI" || k === "CONTINUOUS_INTEGRATION" || k.startsWith("CI_")
  );
  for (const [k] of saved) Deno.env.delete(k);
  try {
    const [{ render }, { App }] = await Promise.all([import("ink"), import("./app.ts")]);
    return { render, App };
  } finally {
    for (const [k, v] of saved) Deno.env.set(k, v);
  }
}

/** Shows the dashboard until the user quits (q, Ctrl-C); the sweep is left running. */
export async function runDashboard(opts: DashboardOptions = {}): Promise<void> {
  const { render, App } = await loadInk();
  const size = () => {
    const { columns, rows } = Deno.consoleSize();
    return { cols: columns, rows };
  };
  const controller = await Controller.open({ ...opts, size: size() });
  const onResize = () => {
    const s = size();
    controller.resize(s.cols, s.rows);
  };
  Deno.addSignalListener("SIGWINCH", onResize);
  const encoder = new TextEncoder();
  Deno.stdout.writeSync(encoder.encode(`${ESC}[?1049h${ESC}[H`));
  const app = render(React.createElement(App, { controller }), {
    exitOnCtrlC: false,
    patchConsole: false,
  });
  controller.start();
  try {
    await controller.done;
  } finally {
    await controller.stop();
    Deno.removeSignalListener("SIGWINCH", onResize);
    app.unmount();
    app.cleanup();
    Deno.stdout.writeSync(encoder.encode(`${ESC}[?1049l${ESC}[?25h`));
  }
}
