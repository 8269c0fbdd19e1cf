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
import { render } from "ink";
import { App } from "./app.ts";
import { Controller, type Owner } from "./controller.ts";

export type { Owner } from "./controller.ts";

/** Options of {@link runDashboard}. */
export interface DashboardOptions {
  /** Store file. @default "runs/store.sqlite" */
  storePath?: string;
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
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

/** Shows the dashboard until the user quits (q, Ctrl-C); the sweep is left running. */
export async function runDashboard(opts: DashboardOptions = {}): Promise<void> {
  const size = () => {
    const { columns, rows } = Deno.consoleSize();
    return { cols: columns, rows };
  };
  const controller = new Controller({ ...opts, size: size() });
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
    controller.stop();
    Deno.removeSignalListener("SIGWINCH", onResize);
    app.unmount();
    app.cleanup();
    Deno.stdout.writeSync(encoder.encode(`${ESC}[?1049l${ESC}[?25h`));
  }
}
