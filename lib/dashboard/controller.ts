/**
 * The dashboard's engine, apart from any terminal: it polls the store
 * through a {@link SweepReader}, keeps the UI state, turns keys into store
 * requests (cancel, restart) and tells its subscriber when to redraw, at
 * most `maxFps` times a second and only when something shown changed.
 */
import * as fs from "node:fs";
import { openStore, type Store } from "../store/store.ts";
import type { Line } from "./charts.ts";
import { type Snapshot, SweepReader } from "./model.ts";
import { evalSampleFiles, noSweepError } from "../sweep/results.ts";
import { type Preview, readPreview } from "./samples.ts";
import { MachineMonitor } from "./machine.ts";
import { type Action, handleKey, initialUi, type Key, renderFrame, type UiState } from "./views.ts";

/** A sweep process this dashboard started (see `launchSweep`). */
export interface Owner {
  /** Its process id. */
  pid: number;
  /** The file its plain progress lines go to. */
  log: string;
  /** Its exit status, once it ended. */
  exit?: Deno.CommandStatus;
}

/** Options of {@link Controller}. */
export interface ControllerOptions {
  /** Store: an SQLite file or a postgres:// URL. @default "runs/store.sqlite" */
  storePath?: string;
  /** Sweep name. @default the most recent sweep */
  sweep?: string;
  /** Other sweeps the compare view lays beside this one (each must be in the store). @default none */
  others?: string[];
  /** Wait for the sweep to appear instead of failing. @default false */
  wait?: boolean;
  /** Store poll interval, ms. @default 500 */
  pollMs?: number;
  /** Most redraws per second. @default 10 */
  maxFps?: number;
  /** The sweep process this dashboard started, if any. */
  owner?: Owner;
  /** Terminal size. @default 100 × 30 */
  size?: { cols: number; rows: number };
}

/** Follows a sweep and renders frames for a terminal. */
export class Controller {
  readonly #opts: ControllerOptions;
  readonly #store: Store;
  readonly #reader: SweepReader;
  readonly #otherReaders: SweepReader[];
  #snap?: Snapshot;
  #others: Snapshot[] = [];
  #ui: UiState = initialUi();
  #size: { cols: number; rows: number };
  #error?: string;
  readonly #listeners = new Set<() => void>();
  #poll?: ReturnType<typeof setInterval>;
  #drawTimer?: ReturnType<typeof setTimeout>;
  #lastDraw = 0;
  #drawn = "";
  #frame?: { key: string; lines: Line[] };
  readonly #previews = new Map<number, { version: string; value?: Preview | string }>();
  readonly #outputs = new Map<number, { version: string; value?: string[] | string }>();
  #logTail = { size: -1, line: "" };
  readonly #machine = new MachineMonitor();
  #machineTime = 0;
  #quit?: () => void;
  #refreshing = false;
  /** Resolves when the user quits. */
  readonly done: Promise<void>;
  /** Redraws so far (the cost test reads it). */
  draws = 0;

  /**
   * Opens the store read-only (a missing store file is an error naming it)
   * and reads the sweep once (an unknown sweep is an error unless `wait`; an
   * unknown one of `others` always).
   */
  static async open(opts: ControllerOptions = {}): Promise<Controller> {
    const store = await openStore(opts.storePath ?? "runs/store.sqlite", { readOnly: true });
    const c = new Controller(opts, store);
    try {
      for (const name of opts.others ?? []) {
        if (!await store.sweep(name)) throw await noSweepError(store, name);
      }
      await c.#refresh();
    } catch (e) {
      await store.close();
      throw e;
    }
    return c;
  }

  private constructor(opts: ControllerOptions, store: Store) {
    this.#opts = opts;
    this.#size = opts.size ?? { cols: 100, rows: 30 };
    this.#store = store;
    this.#reader = new SweepReader(this.#store, { sweep: opts.sweep, wait: opts.wait });
    this.#otherReaders = (opts.others ?? []).map((sweep) => new SweepReader(store, { sweep }));
    this.done = new Promise((resolve) => this.#quit = resolve);
  }

  /** The current snapshot (undefined while waiting for the sweep). */
  get snapshot(): Snapshot | undefined {
    return this.#snap;
  }

  /** The current UI state. */
  get ui(): UiState {
    return this.#ui;
  }

  /** Starts polling the store. */
  start(): void {
    this.#poll ??= setInterval(async () => {
      if (this.#refreshing) return;
      // The machine view redraws with its readings (every two seconds) even when nothing else changed.
      const machineDue = this.#ui.view === "machine" && Date.now() - this.#machineTime >= 2000;
      if ((await this.#refresh()) || machineDue) this.#requestDraw();
    }, this.#opts.pollMs ?? 500);
  }

  /** Stops polling and closes the store. */
  async stop(): Promise<void> {
    clearInterval(this.#poll);
    clearTimeout(this.#drawTimer);
    this.#poll = undefined;
    while (this.#refreshing) await new Promise((r) => setTimeout(r, 5));
    await this.#store.close();
  }

  /** Calls `fn` whenever a redraw is due; returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** New terminal size. */
  resize(cols: number, rows: number): void {
    if (cols === this.#size.cols && rows === this.#size.rows) return;
    this.#size = { cols, rows };
    this.#requestDraw();
  }

  /** Handles one key; resolves once a store request it makes is done. */
  async key(k: Key): Promise<void> {
    const pageSize = Math.max(1, this.#size.rows - 8);
    const { ui, action } = handleKey(this.#ui, k, this.#snap, pageSize);
    this.#ui = ui;
    this.#requestDraw();
    if (action) {
      await this.#act(action);
      this.#requestDraw();
    }
  }

  /** The frame to show now (recomputed only when its inputs changed). */
  frame(): Line[] {
    const snap = this.#snap;
    const clock = snap?.live ? Math.floor(Date.now() / 1000) : 0;
    const status = this.#status();
    // The machine view changes with every reading (every two seconds), even on a finished sweep.
    const machine = this.#ui.view === "machine"
      ? this.#machine.read(
        snap
          ? [...snap.jobs.values()].flatMap((j) =>
            j.row.state === "running" && j.row.pid &&
              (!j.row.host || j.row.host === Deno.hostname())
              ? [j.row.pid]
              : []
          )
          : [],
      )
      : undefined;
    if (machine) this.#machineTime = machine.time;
    // Everything the frame is drawn from; the UI part is read again after drawing (it sets scroll).
    const frameKey = () =>
      JSON.stringify([
        snap?.version,
        this.#others.map((o) => o.version),
        this.#ui,
        this.#size,
        clock,
        status,
        this.#error,
        machine?.time,
      ]);
    if (this.#frame?.key === frameKey()) return this.#frame.lines;
    const { lines, scroll } = renderFrame(snap, this.#ui, {
      ...this.#size,
      series: (id) => this.#reader.series(id),
      preview: (id) => this.#preview(id),
      output: (id) => this.#output(id),
      others: this.#others,
      machine,
      status,
      waiting: this.#error ??
        `waiting for sweep ${this.#opts.sweep ?? ""} to appear in ${
          this.#opts.storePath ?? "runs/store.sqlite"
        }…`,
    });
    this.#ui = { ...this.#ui, scroll };
    this.#frame = { key: frameKey(), lines };
    return lines;
  }

  /** Reads the store; true when the frame may have changed. */
  async #refresh(): Promise<boolean> {
    this.#refreshing = true;
    try {
      const before = this.#snap;
      const othersBefore = this.#others.map((o) => o.version).join();
      this.#snap = (await this.#reader.refresh()) ?? this.#snap;
      const others: Snapshot[] = [];
      for (const r of this.#otherReaders) others.push((await r.refresh())!);
      this.#others = others;
      const othersMoved = others.map((o) => o.version).join() !== othersBefore;
      this.#error = undefined;
      const clockMoved = !!this.#snap?.live &&
        Math.floor(Date.now() / 1000) !== Math.floor(this.#lastDraw / 1000);
      return this.#snap?.version !== before?.version || othersMoved || clockMoved ||
        this.#logChanged();
    } catch (e) {
      if (!this.#snap && !this.#opts.wait) throw e;
      this.#error = `store: ${e instanceof Error ? e.message : String(e)}`;
      return true;
    } finally {
      this.#refreshing = false;
    }
  }

  #requestDraw(): void {
    const gap = 1000 / (this.#opts.maxFps ?? 10);
    const wait = this.#lastDraw + gap - Date.now();
    if (wait > 0) {
      this.#drawTimer ??= setTimeout(() => {
        this.#drawTimer = undefined;
        this.#draw();
      }, wait);
      return;
    }
    this.#draw();
  }

  #draw(): void {
    const text = JSON.stringify(this.frame());
    this.#lastDraw = Date.now();
    if (text === this.#drawn) return;
    this.#drawn = text;
    this.draws++;
    for (const fn of this.#listeners) fn();
  }

  async #act(action: Action): Promise<void> {
    if (action.type === "quit") {
      this.#quit?.();
      return;
    }
    const path = this.#opts.storePath ?? "runs/store.sqlite";
    let writer: Store | undefined;
    try {
      writer = await openStore(path);
      const job = await writer.job(action.jobId);
      const what = `${job?.kind === "train" ? "training" : "evaluation"} job ${job?.key}`;
      if (action.type === "cancel") {
        await writer.requestCancel(action.jobId);
        this.#ui.message = `cancel requested for ${what}: the sweep stops it at its next poll`;
      } else {
        await writer.requeue(action.jobId);
        this.#ui.message = `${what} is queued again; the running sweep picks it up`;
      }
    } catch (e) {
      this.#ui.message = `${action.type}: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      await writer?.close();
    }
    while (this.#refreshing) await new Promise((r) => setTimeout(r, 5));
    await this.#refresh();
  }

  /** The line under the body when nothing else is said: where the sweep runs, its last log line. */
  #status(): string {
    const o = this.#opts.owner;
    if (!o) {
      return this.#snap && !this.#snap.live
        ? `attached read-only to a ${this.#snap.sweep.status} sweep`
        : "attached to the store; q leaves the sweep running";
    }
    if (o.exit) return `the sweep process ended (exit code ${o.exit.code}); log ${o.log}`;
    const tail = this.#logTail.line ? `: ${this.#logTail.line}` : "";
    return `sweep runs in the background, pid ${o.pid}, log ${o.log}${tail}`;
  }

  /** Re-reads the last line of the owner's log when the file grew; true when it changed. */
  #logChanged(): boolean {
    const o = this.#opts.owner;
    if (!o) return false;
    try {
      const size = fs.statSync(o.log).size;
      if (size === this.#logTail.size) return false;
      const fd = fs.openSync(o.log, "r");
      const n = Math.min(size, 1024);
      const buf = new Uint8Array(n);
      fs.readSync(fd, buf, 0, n, size - n);
      fs.closeSync(fd);
      const line = new TextDecoder().decode(buf).trim().split("\n").at(-1) ?? "";
      this.#logTail = { size, line };
      return true;
    } catch {
      return false;
    }
  }

  /**
   * A job's last output lines (its stored file `log`), read again when the
   * job moves on, and every five seconds while it runs.
   */
  #output(jobId: number): string[] | string {
    const row = this.#snap?.jobs.get(jobId)?.row;
    if (!row) return "no such job";
    const version = `${row.state}:${row.attempts}:${row.finished}:${
      row.state === "running" ? Math.floor(Date.now() / 5000) : ""
    }`;
    const known = this.#outputs.get(jobId);
    if (known?.version === version) return known.value ?? "reading its output…";
    this.#outputs.set(jobId, { version, value: known?.value });
    this.#store.readFile(jobId, "log").then(
      (bytes) =>
        bytes
          ? new TextDecoder().decode(bytes).split("\n")
          : row.attempts
          ? "no output stored for it"
          : "it has not run",
    ).catch((err: Error) => `output: ${err.message}`).then((value) => {
      this.#outputs.set(jobId, { version, value });
      this.#frame = undefined;
      this.#requestDraw();
    });
    return known?.value ?? "reading its output…";
  }

  /** An evaluation's sample preview, read from the store once per finished evaluation. */
  #preview(jobId: number): Preview | string {
    const info = this.#snap?.jobs.get(jobId);
    if (!info) return "no such job";
    if (info.row.state !== "done") return `evaluation ${info.row.state}: no samples yet`;
    const version = `${info.row.finished}`;
    const known = this.#previews.get(jobId);
    if (known?.version === version) return known.value ?? "reading the samples…";
    // Read outside the frame: the frame says so meanwhile, and is drawn again once it is read.
    this.#previews.set(jobId, { version });
    const e = this.#snap!.experiment;
    const drop = Array.isArray(e.base?.drop) ? (e.base.drop as string[]) : [];
    evalSampleFiles(this.#store, jobId).then(
      (files) =>
        files.length ? readPreview(files, e.data, drop) : "the evaluation stored no sample file",
    ).catch((err: Error) => `samples: ${err.message}`).then((value) => {
      this.#previews.set(jobId, { version, value });
      this.#frame = undefined;
      this.#requestDraw();
    });
    return "reading the samples…";
  }
}
