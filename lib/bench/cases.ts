/** The names of `deno task bench`'s cases (a module light enough for --help). */
export const BENCH_CASE_NAMES = [
  "mlp-toy",
  "mnist-unet",
  "sample-toy-ddpm1000",
  "sample-mnist-ddim50",
  "fid-mnist10k",
  "sweep-concurrency",
  "memory-1000",
  "matmul",
  "sweep-workers",
] as const;

/** One of {@link BENCH_CASE_NAMES}. */
export type BenchCaseName = (typeof BENCH_CASE_NAMES)[number];
