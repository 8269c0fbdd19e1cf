/**
 * The run's event log, `events.jsonl`: one JSON object per line, appended
 * and flushed as it happens, so the store and the dashboard can follow a run
 * and nothing written is lost on a crash.
 */
import * as fs from "node:fs";
import { join } from "node:path";

/** Events a training run writes. */
export type TrainEvent =
  | {
    type: "start";
    step: number;
    backend: string;
    /** What the backend computes on (the GPU adapter, or the CPU and its threads). */
    device?: string;
    params: number;
    time: string;
  }
  | {
    type: "train";
    step: number;
    loss: number;
    /** Mean loss per timestep band; null for a band no sample fell in. */
    bands: (number | null)[];
    lr: number;
    stepsPerSec: number;
    gradNorm: number;
    time: string;
  }
  | { type: "checkpoint"; step: number; path: string; time: string }
  | { type: "done"; step: number; time: string }
  | { type: "failed"; step: number; reason: string; time: string };

/** Appends events to `<runDir>/events.jsonl`. */
export class EventLog {
  readonly path: string;

  /** A log in `runDir` (created if needed). */
  constructor(runDir: string) {
    fs.mkdirSync(runDir, { recursive: true });
    this.path = join(runDir, "events.jsonl");
  }

  /** Writes one event (the time is added). */
  write(event: DistributiveOmit<TrainEvent, "time">): void {
    fs.appendFileSync(
      this.path,
      JSON.stringify({ ...event, time: new Date().toISOString() }) + "\n",
      { mode: 0o644 },
    );
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Reads every event of a run (an unfinished last line is skipped). */
export function readEvents(runDir: string): TrainEvent[] {
  const path = join(runDir, "events.jsonl");
  if (!fs.existsSync(path)) return [];
  const out: TrainEvent[] = [];
  for (const line of fs.readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // a line cut short by a crash: the events before it stand
    }
  }
  return out;
}
