/** Metric names by the kind of samples they apply to (a module light enough for --help). */
export const METRICS = {
  image: ["fid", "kid", "pr", "class-accuracy", "is"],
  points: ["mmd", "swd"],
  table: [
    "column-wasserstein",
    "column-tv",
    "corr-diff",
    "efficacy-real",
    "efficacy-synthetic",
    "dcr",
  ],
} as const;
