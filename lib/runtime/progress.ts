/**
 * Progress for long work on stderr: a bar with rate and ETA, redrawn in
 * place on a terminal and printed as plain lines (at most every few seconds)
 * otherwise.
 */

/** Formats seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return "?";
  const s = Math.round(sec);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A progress reporter for `total` units of work. */
export class Progress {
  readonly #tty = Deno.stderr.isTerminal();
  readonly #start = performance.now();
  #lastPrint = 0;

  /** `label` names the work; `total` is its size in units. */
  constructor(readonly label: string, public total: number) {}

  /**
   * Reports `done` units, with an optional suffix such as the latest loss.
   * `etaSec` overrides the ETA extrapolated from this reporter's own start
   * (a resumed run knows its rate; elapsed/done would count the earlier steps).
   */
  update(done: number, suffix = "", etaSec?: number): void {
    const now = performance.now();
    const finished = done >= this.total;
    if (!finished && now - this.#lastPrint < (this.#tty ? 100 : 5000)) return;
    this.#lastPrint = now;
    const elapsed = (now - this.#start) / 1000;
    const frac = Math.min(1, done / this.total);
    const eta = etaSec ?? (frac > 0 ? elapsed * (1 - frac) / frac : NaN);
    const bar = "█".repeat(Math.round(frac * 24)).padEnd(24, "·");
    const line =
      `${this.label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${this.total} ` +
      `${formatDuration(elapsed)} elapsed, ETA ${formatDuration(eta)}${
        suffix ? `  ${suffix}` : ""
      }`;
    const enc = new TextEncoder();
    if (this.#tty) Deno.stderr.writeSync(enc.encode(`\r\x1b[2K${line}${finished ? "\n" : ""}`));
    else Deno.stderr.writeSync(enc.encode(line + "\n"));
  }
}
