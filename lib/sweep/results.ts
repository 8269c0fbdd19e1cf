/**
 * Reading evaluation results back from the store: what an evaluation
 * recorded beside its metric value.
 */

/** The `nfe` (network evaluations per sample) an evaluation recorded among its extra fields (JSON), if any. */
export function recordedNfe(extra: string | null | undefined): number | undefined {
  try {
    const nfe = JSON.parse(extra ?? "null")?.nfe;
    return typeof nfe === "number" && nfe > 0 ? nfe : undefined;
  } catch {
    return undefined;
  }
}
