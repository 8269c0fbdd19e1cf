/** Waiting on a condition in tests that drive processes and databases. */

/**
 * Waits for `f` to give a value (anything but undefined or false), asking
 * every `everyMs`, and returns it. The deadline `ms` only ends a test that
 * would otherwise hang: every wait is on a condition, not for a set time.
 */
export async function until<T>(
  what: string,
  f: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 60_000,
  everyMs = 100,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
