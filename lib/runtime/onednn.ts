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

/**
 * Enum values and argument indices of oneDNN 2.x (oneapi/dnnl/dnnl_types.h);
 * tests/runtime/onednn_test.ts compiles a C program against the installed
 * headers and checks each one.
 */
export const DNNL = {
  f32: 3,
  tag_any: 1,
  tag_a: 2,
  tag_nhwc: 20,
  tag_hwio: 30,
  forward_training: 64,
  forward_inference: 96,
  convolution_direct: 1,
  eltwise_swish: 0xdf,
  eltwise_relu_use_dst_for_bwd: 0x100,
  engine_cpu: 1,
  stream_default_flags: 1,
  ARG_SRC: 1,
  ARG_DST: 17,
  ARG_WEIGHTS: 33,
  ARG_BIAS: 41,
  ARG_DIFF_SRC: 129,
  ARG_DIFF_DST: 145,
  ARG_DIFF_WEIGHTS: 161,
  query_impl_info_str: 8,
  query_src_md: 129,
  query_diff_src_md: 130,
  query_weights_md: 131,
  query_diff_weights_md: 132,
  query_dst_md: 133,
  query_diff_dst_md: 134,
} as const;

/** `DNNL_MEMORY_ALLOCATE`: a memory object whose buffer oneDNN allocates (and frees). */
const MEMORY_ALLOCATE = 0xffff_ffff_ffff_ffffn;

/**
 * Bytes reserved for the descriptors oneDNN fills in (at least their sizeof:
 * 696 and 5,976 in 2.6; the test checks them against the headers).
 */
export const MEMORY_DESC_BYTES = 1024;
/** See {@link MEMORY_DESC_BYTES}. */
export const OP_DESC_BYTES = 8192;

const SYMBOLS = {
  dnnl_version: { parameters: [], result: "pointer" },
  dnnl_engine_create: { parameters: ["buffer", "i32", "usize"], result: "i32" },
  dnnl_stream_create: { parameters: ["buffer", "pointer", "u32"], result: "i32" },
  dnnl_stream_wait: { parameters: ["pointer"], result: "i32" },
  dnnl_memory_desc_init_by_tag: {
    parameters: ["buffer", "i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  dnnl_convolution_forward_desc_init: {
    parameters: [
      "buffer", // conv_desc
      "i32", // prop_kind
      "i32", // alg_kind
      "buffer", // src_desc
      "buffer", // weights_desc
      "buffer", // bias_desc (NULL: none)
      "buffer", // dst_desc
      "buffer", // strides
      "buffer", // padding_l
      "buffer", // padding_r
    ],
    result: "i32",
  },
  dnnl_convolution_backward_data_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  dnnl_convolution_backward_weights_desc_init: {
    parameters: [
      "buffer", // conv_desc
      "i32", // alg_kind
      "buffer", // src_desc
      "buffer", // diff_weights_desc
      "buffer", // diff_bias_desc (NULL: none)
      "buffer", // diff_dst_desc
      "buffer", // strides
      "buffer", // padding_l
      "buffer", // padding_r
    ],
    result: "i32",
  },
  dnnl_primitive_desc_create: {
    parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_primitive_create: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_memory_create: { parameters: ["buffer", "buffer", "pointer", "pointer"], result: "i32" },
  /** dnnl_memory_create on a descriptor oneDNN owns (one a primitive descriptor chose). */
  dnnl_memory_create_by_md: {
    name: "dnnl_memory_create",
    parameters: ["buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_eltwise_forward_desc_init: {
    parameters: ["buffer", "i32", "i32", "buffer", "f32", "f32"],
    result: "i32",
  },
  dnnl_eltwise_backward_desc_init: {
    parameters: ["buffer", "i32", "buffer", "buffer", "f32", "f32"],
    result: "i32",
  },
  dnnl_primitive_desc_query: {
    parameters: ["pointer", "i32", "i32", "buffer"],
    result: "i32",
  },
  dnnl_primitive_desc_query_md: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  dnnl_memory_desc_equal: { parameters: ["buffer", "pointer"], result: "i32" },
  dnnl_reorder_primitive_desc_create: {
    parameters: ["buffer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  dnnl_memory_set_data_handle: { parameters: ["pointer", "pointer"], result: "i32" },
  dnnl_primitive_execute: {
    parameters: ["pointer", "pointer", "i32", "buffer"],
    result: "i32",
  },
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

/** The sizes of one NHWC convolution: x [N, H, W, C] ⊛ w [kh, kw, C, O] → y [N, oh, ow, O]. */
export interface ConvShape {
  x: [number, number, number, number];
  w: [number, number, number, number];
  y: [number, number, number, number];
  strides: [number, number];
  /** Padding top, left, bottom, right. */
  pad: [number, number, number, number];
}

/** Which convolution a {@link Onednn.conv} call runs, and on which arrays. */
export type ConvCall =
  | { kind: "forward"; x: Float32Array; w: Float32Array; bias?: Float32Array; y: Float32Array }
  | { kind: "backward_data"; dy: Float32Array; w: Float32Array; dx: Float32Array }
  | { kind: "backward_weights"; x: Float32Array; dy: Float32Array; dw: Float32Array };

/** Which SiLU pass a {@link Onednn.silu} call runs, on arrays of equal length. */
export type SiluCall =
  | { kind: "forward"; x: Float32Array; y: Float32Array }
  | { kind: "backward"; x: Float32Array; dy: Float32Array; dx: Float32Array };

/** Which ReLU pass a {@link Onednn.relu} call runs, on arrays of equal length. */
export type ReluCall =
  | { kind: "forward"; x: Float32Array; y: Float32Array }
  | { kind: "backward"; y: Float32Array; dy: Float32Array; dx: Float32Array };

/** A loaded oneDNN. */
export interface Onednn {
  /**
   * Runs a convolution (NHWC data, HWIO weights, the layouts tfjs keeps) on
   * the given arrays, creating its primitive on first use and reusing it.
   */
  conv(shape: ConvShape, call: ConvCall): void;
  /**
   * SiLU (oneDNN's swish, x·σ(x)) over n values: y from x, or the gradient
   * dx = dy·σ(x)·(1 + x·(1 − σ(x))) from x and dy.
   */
  silu(call: SiluCall): void;
  /**
   * ReLU over n values: y = max(x, 0) (x and y may be one array), or the
   * gradient dx = dy·[y > 0] from the forward pass's output y.
   */
  relu(call: ReluCall): void;
  /**
   * out[c] = scale·Σ_r x[r, c] for a row-major x [rows, cols]: one sgemm,
   * a row of ones times x (bias gradients, sums over leading axes).
   */
  columnSums(x: Float32Array, rows: number, cols: number, out: Float32Array, scale: number): void;
  /** The implementation oneDNN chose for a convolution (e.g. "jit:avx512_core"); builds it if new. */
  convImplementation(shape: ConvShape, kind: ConvCall["kind"]): string;
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
    // The version first, through that one symbol: other major versions lack others (3.x has
    // no *_desc_init), and should be named as such rather than as a missing symbol.
    let version: OnednnVersion;
    try {
      const probe = Deno.dlopen(path, { dnnl_version: SYMBOLS.dnnl_version });
      try {
        version = readVersion(probe.symbols.dnnl_version());
      } finally {
        probe.close();
      }
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    if (version.major !== SUPPORTED_MAJOR) {
      loaded = {
        error: `${path} is oneDNN ${version.major}.${version.minor}.${version.patch}; ` +
          `this program speaks its ${SUPPORTED_MAJOR}.x API`,
      };
      return loaded;
    }
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    const s = lib.symbols;
    const prims = primitives(s);
    let ones = new Float32Array(0);
    const dnnl: Onednn = {
      path,
      version,
      threads,
      ...prims,
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
      columnSums(x, rows, cols, out, scale) {
        if (ones.length < rows) ones = new Float32Array(rows).fill(1);
        dnnl.sgemm(false, false, 1, cols, rows, scale, ones, rows, x, cols, 0, out, cols);
      },
    };
    loaded = dnnl;
    return dnnl;
  }
  loaded = { error: `no oneDNN library (${failures.join("; ")})` };
  return loaded;
}

/** The oneDNN in use, when {@link loadOnednn} found one. */
export function onednn(): Onednn | undefined {
  return loaded && "sgemm" in loaded ? loaded : undefined;
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Throws with the call's name when oneDNN returns an error status. */
function check(status: number, what: string): void {
  if (status !== DNNL_STATUS.success) {
    throw new Error(`oneDNN ${what} failed with status ${status}`);
  }
}

/** A pointer written by oneDNN into an 8-byte out-parameter. */
function outPointer(cell: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(cell[0]);
}

/** One primitive to execute, with its fixed arguments (DNNL_ARG_* → memory object). */
interface Step {
  prim: Deno.PointerValue;
  args: [number, Deno.PointerValue][];
}

/**
 * A cached primitive: the memory objects on the caller's arrays (their data
 * handles are set per call) and the primitives to run in order; for a
 * convolution, reorders of inputs into the layouts it chose, the
 * convolution, reorders of its outputs back.
 */
interface Primitive {
  user: Map<number, Deno.PointerValue>;
  steps: Step[];
  /** The implementation oneDNN chose, e.g. "jit:avx512_core". */
  impl: string;
}

/**
 * Which operands a convolution may lay out as it likes ("any"), with a
 * reorder from and to the caller's NHWC and HWIO. The weights are small and
 * change every step: a blocked layout for them is what lets oneDNN pick its
 * direct (jit) convolutions over im2col and a matrix product.
 */
export type ConvLayouts = "plain" | "weights" | "all";

/** `DMW_DNNL_LAYOUT`, for measuring the layouts against each other; weights by default. */
function convLayouts(): ConvLayouts {
  const v = Deno.env.get("DMW_DNNL_LAYOUT") ?? "weights";
  if (v !== "plain" && v !== "weights" && v !== "all") {
    throw new Error(`DMW_DNNL_LAYOUT=${v}: want plain, weights or all`);
  }
  return v;
}

/**
 * The primitives the kernels run: an engine, a stream, and a cache of
 * primitives keyed by kind and shape, each run on the caller's arrays.
 */
function primitives(
  s: Symbols,
): Pick<Onednn, "conv" | "silu" | "relu" | "convImplementation"> {
  const cell = new BigUint64Array(1);
  check(s.dnnl_engine_create(cell, DNNL.engine_cpu, 0n), "engine_create");
  const engine = outPointer(cell);
  check(s.dnnl_stream_create(cell, engine, DNNL.stream_default_flags), "stream_create");
  const stream = outPointer(cell);
  const cache = new Map<string, Primitive>();
  const layouts = convLayouts();
  const allocate = Deno.UnsafePointer.create(MEMORY_ALLOCATE);

  const md = (dims: number[], tag: number) => {
    const desc = new Uint8Array(MEMORY_DESC_BYTES);
    check(
      s.dnnl_memory_desc_init_by_tag(
        desc,
        dims.length,
        BigInt64Array.from(dims.map(BigInt)),
        DNNL.f32,
        tag,
      ),
      "memory_desc_init_by_tag",
    );
    return desc;
  };
  const memory = (desc: Uint8Array) => {
    check(s.dnnl_memory_create(cell, desc, engine, null), "memory_create");
    return outPointer(cell);
  };
  const primitiveDesc = (op: Uint8Array, hint: Deno.PointerValue) => {
    check(s.dnnl_primitive_desc_create(cell, op, null, engine, hint), "primitive_desc_create");
    return outPointer(cell);
  };
  const primitive = (pd: Deno.PointerValue) => {
    check(s.dnnl_primitive_create(cell, pd), "primitive_create");
    return outPointer(cell);
  };
  const implName = (pd: Deno.PointerValue) => {
    const out = new BigUint64Array(1);
    const status = s.dnnl_primitive_desc_query(pd, DNNL.query_impl_info_str, 0, out);
    const p = Deno.UnsafePointer.create(out[0]);
    return status === DNNL_STATUS.success && p ? Deno.UnsafePointerView.getCString(p) : "?";
  };

  /**
   * Binds one operand of the convolution primitive descriptor `pd`: the
   * caller's array lies as `plain`; when the convolution chose another
   * layout (`query`), a buffer of oneDNN's own in that layout and a reorder
   * into it before the convolution (`input`) or out of it after.
   */
  const bind = (
    p: Primitive,
    conv: Step,
    pd: Deno.PointerValue,
    arg: number,
    plain: Uint8Array,
    query: number,
    input: boolean,
  ) => {
    const user = memory(plain);
    p.user.set(arg, user);
    const chosen = s.dnnl_primitive_desc_query_md(pd, query, 0);
    if (!chosen || s.dnnl_memory_desc_equal(plain, chosen) === 1) {
      conv.args.push([arg, user]);
      return;
    }
    check(s.dnnl_memory_create_by_md(cell, chosen, engine, allocate), "memory_create");
    const inner = outPointer(cell);
    conv.args.push([arg, inner]);
    const plainPtr = Deno.UnsafePointer.of(plain);
    const [from, to] = input ? [plainPtr, chosen] : [chosen, plainPtr];
    check(
      s.dnnl_reorder_primitive_desc_create(cell, from, engine, to, engine, null),
      "reorder_primitive_desc_create",
    );
    const reorder = {
      prim: primitive(outPointer(cell)),
      args: (input ? [[DNNL.ARG_SRC, user], [DNNL.ARG_DST, inner]] : [
        [DNNL.ARG_SRC, inner],
        [DNNL.ARG_DST, user],
      ]) as [number, Deno.PointerValue][],
    };
    if (input) p.steps.unshift(reorder);
    else p.steps.push(reorder);
  };

  const buildConv = (shape: ConvShape, kind: ConvCall["kind"], bias: boolean): Primitive => {
    const [n, h, w, c] = shape.x;
    const [kh, kw, , o] = shape.w;
    const [, oh, ow] = shape.y;
    // oneDNN's logical dims are N C H W and O I H W; the tags say how they lie in memory.
    const src = md([n, c, h, w], DNNL.tag_nhwc);
    const wts = md([o, c, kh, kw], DNNL.tag_hwio);
    const dst = md([n, o, oh, ow], DNNL.tag_nhwc);
    const bia = bias ? md([o], DNNL.tag_a) : null;
    const wtsAny = layouts === "plain" ? wts : md([o, c, kh, kw], DNNL.tag_any);
    const srcAny = layouts === "all" ? md([n, c, h, w], DNNL.tag_any) : src;
    const dstAny = layouts === "all" ? md([n, o, oh, ow], DNNL.tag_any) : dst;
    const strides = BigInt64Array.from(shape.strides.map(BigInt));
    const padL = BigInt64Array.from([shape.pad[0], shape.pad[1]].map(BigInt));
    const padR = BigInt64Array.from([shape.pad[2], shape.pad[3]].map(BigInt));
    const fwd = new Uint8Array(OP_DESC_BYTES);
    check(
      s.dnnl_convolution_forward_desc_init(
        fwd,
        kind === "forward" ? DNNL.forward_inference : DNNL.forward_training,
        DNNL.convolution_direct,
        srcAny,
        wtsAny,
        bia,
        dstAny,
        strides,
        padL,
        padR,
      ),
      "convolution_forward_desc_init",
    );
    const fwdPd = primitiveDesc(fwd, null);
    let pd = fwdPd;
    const op = new Uint8Array(OP_DESC_BYTES);
    if (kind === "backward_data") {
      check(
        s.dnnl_convolution_backward_data_desc_init(
          op,
          DNNL.convolution_direct,
          srcAny,
          wtsAny,
          dstAny,
          strides,
          padL,
          padR,
        ),
        "convolution_backward_data_desc_init",
      );
      pd = primitiveDesc(op, fwdPd);
    } else if (kind === "backward_weights") {
      check(
        s.dnnl_convolution_backward_weights_desc_init(
          op,
          DNNL.convolution_direct,
          srcAny,
          wtsAny,
          null,
          dstAny,
          strides,
          padL,
          padR,
        ),
        "convolution_backward_weights_desc_init",
      );
      pd = primitiveDesc(op, fwdPd);
    }
    const conv: Step = { prim: primitive(pd), args: [] };
    const p: Primitive = { user: new Map(), steps: [conv], impl: implName(pd) };
    if (kind === "forward") {
      bind(p, conv, pd, DNNL.ARG_SRC, src, DNNL.query_src_md, true);
      bind(p, conv, pd, DNNL.ARG_WEIGHTS, wts, DNNL.query_weights_md, true);
      bind(p, conv, pd, DNNL.ARG_DST, dst, DNNL.query_dst_md, false);
      if (bia) {
        const user = memory(bia); // [O] has one layout
        p.user.set(DNNL.ARG_BIAS, user);
        conv.args.push([DNNL.ARG_BIAS, user]);
      }
    } else if (kind === "backward_data") {
      bind(p, conv, pd, DNNL.ARG_DIFF_DST, dst, DNNL.query_diff_dst_md, true);
      bind(p, conv, pd, DNNL.ARG_WEIGHTS, wts, DNNL.query_weights_md, true);
      bind(p, conv, pd, DNNL.ARG_DIFF_SRC, src, DNNL.query_diff_src_md, false);
    } else {
      bind(p, conv, pd, DNNL.ARG_SRC, src, DNNL.query_src_md, true);
      bind(p, conv, pd, DNNL.ARG_DIFF_DST, dst, DNNL.query_diff_dst_md, true);
      bind(p, conv, pd, DNNL.ARG_DIFF_WEIGHTS, wts, DNNL.query_diff_weights_md, false);
    }
    return p;
  };

  /**
   * An elementwise function (α: swish's σ scale, ReLU's negative slope)
   * over n values as one flat [n] tensor: forward
   * (arguments `args.forward`), or backward from what the algorithm keeps
   * (`args.backward`: the source for swish, the output for ReLU).
   */
  const buildEltwise = (
    n: number,
    alg: number,
    alpha: number,
    kind: "forward" | "backward",
    args: { forward: number[]; backward: number[] },
  ): Primitive => {
    const data = md([n], DNNL.tag_a);
    const fwd = new Uint8Array(OP_DESC_BYTES);
    check(
      s.dnnl_eltwise_forward_desc_init(fwd, DNNL.forward_training, alg, data, alpha, 0),
      "eltwise_forward_desc_init",
    );
    let pd = primitiveDesc(fwd, null);
    if (kind === "backward") {
      const op = new Uint8Array(OP_DESC_BYTES);
      check(
        s.dnnl_eltwise_backward_desc_init(op, alg, data, data, alpha, 0),
        "eltwise_backward_desc_init",
      );
      pd = primitiveDesc(op, pd);
    }
    const p: Primitive = { user: new Map(), steps: [], impl: implName(pd) };
    const step: Step = { prim: primitive(pd), args: [] };
    for (const arg of args[kind]) {
      const m = memory(data);
      p.user.set(arg, m);
      step.args.push([arg, m]);
    }
    p.steps.push(step);
    return p;
  };
  const SWISH_ARGS = {
    forward: [DNNL.ARG_SRC, DNNL.ARG_DST],
    backward: [DNNL.ARG_SRC, DNNL.ARG_DIFF_DST, DNNL.ARG_DIFF_SRC],
  };
  const RELU_ARGS = {
    forward: [DNNL.ARG_SRC, DNNL.ARG_DST],
    backward: [DNNL.ARG_DST, DNNL.ARG_DIFF_DST, DNNL.ARG_DIFF_SRC],
  };

  /** The primitive cached as `key`, built by `build` on first use. */
  const cached = (key: string, build: () => Primitive) => {
    let p = cache.get(key);
    if (!p) cache.set(key, p = build());
    return p;
  };

  /** Runs the cached primitive `key` (built by `build` on first use) on the given arrays. */
  const run = (
    key: string,
    build: () => Primitive,
    data: Map<number, Float32Array>,
    what: string,
  ) => {
    const p = cached(key, build);
    for (const [arg, array] of data) {
      check(
        s.dnnl_memory_set_data_handle(p.user.get(arg)!, Deno.UnsafePointer.of(array)),
        "memory_set_data_handle",
      );
    }
    for (const step of p.steps) {
      // dnnl_exec_arg_t is {int arg; dnnl_memory_t memory;}: 16 bytes with padding.
      const args = new BigUint64Array(2 * step.args.length);
      step.args.forEach(([arg, mem], i) => {
        args[2 * i] = BigInt(arg);
        args[2 * i + 1] = Deno.UnsafePointer.value(mem);
      });
      check(
        s.dnnl_primitive_execute(step.prim, stream, step.args.length, args),
        `${what} (${p.impl})`,
      );
    }
    check(s.dnnl_stream_wait(stream), "stream_wait");
  };

  const convKey = (shape: ConvShape, kind: ConvCall["kind"], bias: boolean) =>
    `conv|${kind}|${bias}|${shape.x}|${shape.w}|${shape.y}|${shape.strides}|${shape.pad}`;

  return {
    conv(shape, call) {
      const bias = call.kind === "forward" && call.bias !== undefined;
      const data = new Map<number, Float32Array>();
      if (call.kind === "forward") {
        data.set(DNNL.ARG_SRC, call.x).set(DNNL.ARG_WEIGHTS, call.w).set(DNNL.ARG_DST, call.y);
        if (call.bias) data.set(DNNL.ARG_BIAS, call.bias);
      } else if (call.kind === "backward_data") {
        data.set(DNNL.ARG_DIFF_DST, call.dy).set(DNNL.ARG_WEIGHTS, call.w);
        data.set(DNNL.ARG_DIFF_SRC, call.dx);
      } else {
        data.set(DNNL.ARG_SRC, call.x).set(DNNL.ARG_DIFF_DST, call.dy);
        data.set(DNNL.ARG_DIFF_WEIGHTS, call.dw);
      }
      const build = () => buildConv(shape, call.kind, bias);
      run(convKey(shape, call.kind, bias), build, data, `convolution ${call.kind}`);
    },
    silu(call) {
      const n = call.x.length;
      const data = new Map<number, Float32Array>([[DNNL.ARG_SRC, call.x]]);
      if (call.kind === "forward") data.set(DNNL.ARG_DST, call.y);
      else data.set(DNNL.ARG_DIFF_DST, call.dy).set(DNNL.ARG_DIFF_SRC, call.dx);
      const build = () => buildEltwise(n, DNNL.eltwise_swish, 1, call.kind, SWISH_ARGS);
      run(`silu|${call.kind}|${n}`, build, data, `SiLU ${call.kind}`);
    },
    relu(call) {
      const n = call.kind === "forward" ? call.x.length : call.y.length;
      const data = call.kind === "forward"
        ? new Map([[DNNL.ARG_SRC, call.x], [DNNL.ARG_DST, call.y]])
        : new Map([[DNNL.ARG_DST, call.y], [DNNL.ARG_DIFF_DST, call.dy], [
          DNNL.ARG_DIFF_SRC,
          call.dx,
        ]]);
      const build = () =>
        buildEltwise(n, DNNL.eltwise_relu_use_dst_for_bwd, 0, call.kind, RELU_ARGS);
      run(`relu|${call.kind}|${n}`, build, data, `ReLU ${call.kind}`);
    },
    convImplementation(shape, kind) {
      return cached(convKey(shape, kind, false), () => buildConv(shape, kind, false)).impl;
    },
  };
}
