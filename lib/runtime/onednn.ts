/**
 * oneDNN (the library PyTorch runs its CPU convolutions and many matrix
 * products on) through Deno's FFI: finding and loading it, and the part of
 * its C API the project's kernels call. The kernels run on the wasm
 * backend's own memory: FFI `buffer` arguments take views of the wasm heap,
 * so nothing is copied.
 *
 * The library is `$DMW_DNNL` when set, else the standard sonames of the 2.x
 * API (Debian 12's `libdnnl2` is oneDNN 2.6.3). Another major version, or no
 * library, is a one-line reason and the wasm path, never a crash.
 *
 * Threads: oneDNN's OpenMP pool is sized by `OMP_NUM_THREADS`, read when the
 * library loads, so {@link loadOnednn} sets it from `--threads`/`DMW_THREADS`
 * (a sweep's share of the cores for each job) and a passive wait policy
 * (spinning OpenMP threads starve everything else on two cores) first.
 */

/** The version oneDNN reports. */
export interface OnednnVersion {
  major: number;
  minor: number;
  patch: number;
}

/** `dnnl_status_t` values the project checks (oneapi/dnnl/dnnl_types.h). */
export const DNNL_STATUS = {
  success: 0,
  out_of_memory: 1,
  invalid_arguments: 2,
  unimplemented: 3,
} as const;

/** The major version of the C API this binding is written for. */
export const SUPPORTED_MAJOR = 2;

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_sgemm: {
    parameters: [
      "u8", // transa
      "u8", // transb
      "i64", // M
      "i64", // N
      "i64", // K
      "f32", // alpha
      "buffer", // A
      "i64", // lda
      "buffer", // B
      "i64", // ldb
      "f32", // beta
      "buffer", // C
      "i64", // ldc
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** A loaded oneDNN. */
export interface Onednn {
  /** The file it was loaded from. */
  path: string;
  version: OnednnVersion;
  /** OpenMP threads it runs on. */
  threads: number;
  /**
   * C = α·op(A)·op(B) + β·C on row-major float32 arrays, op = transpose when
   * the flag is set; throws with the status on failure.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
}

/** The library files tried, in order. */
export function candidatePaths(): string[] {
  const given = Deno.env.get("DMW_DNNL");
  return given ? [given] : ["libdnnl.so.2", "libdnnl.so.2.6", "libdnnl.so"];
}

let loaded: Onednn | { error: string } | undefined;

/** Reads `dnnl_version()`'s struct {int major, minor, patch; …}. */
function readVersion(ptr: Deno.PointerValue): OnednnVersion {
  if (!ptr) throw new Error("dnnl_version() returned NULL");
  const view = new Deno.UnsafePointerView(ptr);
  return { major: view.getInt32(0), minor: view.getInt32(4), patch: view.getInt32(8) };
}

const T = "T".charCodeAt(0);
const N = "N".charCodeAt(0);

/**
 * Loads oneDNN once, on `threads` OpenMP threads; returns it, or the reason
 * it is not used (no library, a failed load, another major version).
 */
export function loadOnednn(threads: number): Onednn | { error: string } {
  if (loaded) return loaded;
  Deno.env.set("OMP_NUM_THREADS", String(threads)); // --threads / DMW_THREADS rule both pools
  if (!Deno.env.get("OMP_WAIT_POLICY")) Deno.env.set("OMP_WAIT_POLICY", "passive");
  const failures: string[] = [];
  for (const path of candidatePaths()) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    let version: OnednnVersion;
    try {
      version = readVersion(lib.symbols.dnnl_version());
    } catch (e) {
      lib.close();
      failures.push(`${path}: ${(e as Error).message}`);
      continue;
    }
    if (version.major !== SUPPORTED_MAJOR) {
      lib.close();
      loaded = {
        error: `${path} is oneDNN ${version.major}.${version.minor}.${version.patch}; ` +
          `this program speaks its ${SUPPORTED_MAJOR}.x API`,
      };
      return loaded;
    }
    const s = lib.symbols;
    loaded = {
      path,
      version,
      threads,
      sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
        const status = s.dnnl_sgemm(
          transA ? T : N,
          transB ? T : N,
          BigInt(m),
          BigInt(n),
          BigInt(k),
          alpha,
          a,
          BigInt(lda),
          b,
          BigInt(ldb),
          beta,
          c,
          BigInt(ldc),
        );
        if (status !== DNNL_STATUS.success) {
          throw new Error(`dnnl_sgemm(${m}×${k} · ${k}×${n}) failed with status ${status}`);
        }
      },
    };
    return loaded;
  }
  loaded = { error: `no oneDNN library (${failures.join("; ")})` };
  return loaded;
}

/** The oneDNN in use, when {@link loadOnednn} found one. */
export function onednn(): Onednn | undefined {
  return loaded && "sgemm" in loaded ? loaded : undefined;
}
