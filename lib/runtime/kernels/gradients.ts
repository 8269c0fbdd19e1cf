/**
 * Registers tfjs-core's own gradient functions. Deno loads tfjs-core through
 * its CommonJS bundle (`dist/tf-core.node.js`), which carries no gradients,
 * and the ES-module side-effect file `dist/register_all_gradients.js` uses
 * extensionless imports that Deno cannot resolve. So this module reads the
 * shipped `dist/gradients/*_grad.js` sources and evaluates each one against
 * the public tfjs-core API (plus thin `runKernel` wrappers for the few
 * internal ops they import), then registers every gradient config that is
 * not registered yet. Without it `tf.grad` fails on every op.
 */
import * as tf from "@tensorflow/tfjs-core";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

type Scope = Record<string, unknown>;

/** Wrappers for the internal tfjs-core ops the gradient sources import. */
function internalOps(): Scope {
  const run = (name: string, inputs: tf.NamedTensorMap, attrs: object) =>
    tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
  const unsupported = (name: string) => () => {
    throw new Error(`gradient helper ${name} is not available in this project`);
  };
  return {
    conv2DBackpropFilter: (
      x: tf.Tensor4D,
      dy: tf.Tensor4D,
      filterShape: number[],
      strides: unknown,
      pad: unknown,
      dataFormat = "NHWC",
      dimRoundingMode?: string,
    ) =>
      run(tf.Conv2DBackpropFilter, { x, dy }, {
        strides,
        pad,
        dataFormat,
        dimRoundingMode,
        filterShape,
      }),
    conv2DBackpropInput: (
      xShape: number[],
      dy: tf.Tensor4D,
      filter: tf.Tensor4D,
      strides: unknown,
      pad: unknown,
      dataFormat = "NHWC",
      dimRoundingMode?: string,
    ) =>
      run(tf.Conv2DBackpropInput, { dy, filter }, {
        strides,
        pad,
        dataFormat,
        dimRoundingMode,
        inputShape: xShape,
      }),
    depthwiseConv2dNativeBackpropFilter: (
      x: tf.Tensor4D,
      dy: tf.Tensor4D,
      filterShape: number[],
      strides: unknown,
      pad: unknown,
      dilations: unknown = [1, 1],
      dimRoundingMode?: string,
    ) =>
      run(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, {
        strides,
        pad,
        dimRoundingMode,
        dilations,
        filterShape,
      }),
    depthwiseConv2dNativeBackpropInput: (
      xShape: number[],
      dy: tf.Tensor4D,
      filter: tf.Tensor4D,
      strides: unknown,
      pad: unknown,
      dilations: unknown = [1, 1],
      dimRoundingMode?: string,
    ) =>
      run(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter }, {
        strides,
        pad,
        dimRoundingMode,
        dilations,
        inputShape: xShape,
      }),
    avgPoolGrad: (
      dy: tf.Tensor,
      input: tf.Tensor,
      filterSize: unknown,
      strides: unknown,
      pad: unknown,
    ) => run(tf.AvgPoolGrad, { dy, input }, { filterSize, strides, pad }),
    maxPoolGrad: (
      dy: tf.Tensor,
      input: tf.Tensor,
      output: tf.Tensor,
      filterSize: unknown,
      strides: unknown,
      pad: unknown,
      dimRoundingMode?: string,
    ) => run(tf.MaxPoolGrad, { dy, input, output }, { filterSize, strides, pad, dimRoundingMode }),
    avgPool3dGrad: unsupported("avgPool3dGrad"),
    maxPool3dGrad: unsupported("maxPool3dGrad"),
    conv3DBackpropFilter: unsupported("conv3DBackpropFilter"),
    conv3DBackpropInput: unsupported("conv3DBackpropInput"),
    localResponseNormalizationBackprop: unsupported("localResponseNormalizationBackprop"),
  };
}

/** Where tfjs-core's ES-module gradient sources live. */
function gradientsDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@tensorflow/tfjs-core")), "gradients");
}

/** Turns one module's `import` lines into `const` bindings read from `scope`. */
function rewriteImports(src: string): string {
  return src.replace(
    /^import\s+([\s\S]*?)\s+from\s+'([^']+)';/gm,
    (_m, what: string, from: string) => {
      const star = /^\*\s+as\s+(\w+)$/.exec(what.trim());
      if (star) return `const ${star[1]} = scope.__ns[${JSON.stringify(from)}];`;
      const names = what.replace(/[{}]/g, "").split(",").map((s) => s.trim()).filter(Boolean)
        .map((s) => s.replace(/\s+as\s+/, ": "));
      return `const { ${names.join(", ")} } = scope;`;
    },
  ).replace(/^\/\/# sourceMappingURL.*$/gm, "");
}

/** Evaluates one gradient module's source and returns its exports. */
function evaluate(src: string, scope: Scope): Scope {
  const exported = [...src.matchAll(/^export\s+(?:const|let|function)\s+(\w+)/gm)].map((m) => m[1]);
  const body = rewriteImports(src).replace(/^export\s+/gm, "") +
    `\nreturn { ${exported.join(", ")} };`;
  return new Function("scope", body)(scope) as Scope;
}

/**
 * Zero gradients for comparison and logical kernels, which tfjs-core leaves
 * without any: they lie on the path from `x` in `where(x > 0, x, …)`, and
 * backprop stops with an error at a kernel that has no gradient.
 */
function zeroGradients(): tf.GradConfig[] {
  const binary = [
    tf.Greater,
    tf.Less,
    tf.LessEqual,
    tf.Equal,
    tf.NotEqual,
    tf.LogicalAnd,
    tf.LogicalOr,
  ];
  const zero = (t: tf.Tensor) => () => tf.zerosLike(t);
  return [
    ...binary.map((kernelName) => ({
      kernelName,
      inputsToSave: ["a", "b"],
      gradFunc: (_dy: tf.Tensor | tf.Tensor[], [a, b]: tf.Tensor[]) => ({ a: zero(a), b: zero(b) }),
    })),
    {
      kernelName: tf.LogicalNot,
      inputsToSave: ["x"],
      gradFunc: (_dy: tf.Tensor | tf.Tensor[], [x]: tf.Tensor[]) => ({ x: zero(x) }),
    },
  ];
}

let done = false;

/**
 * Registers every tfjs-core gradient that has none yet (idempotent). Needs
 * read access to `node_modules`.
 *
 * @returns the kernel names whose gradients this call registered.
 */
export function registerAllGradients(): string[] {
  if (done) return [];
  done = true;
  const dir = gradientsDir();
  const scope: Scope = {
    ...tf.backend_util,
    ...tf,
    ...internalOps(),
    ENGINE: tf.engine(),
    parseAxisParam: tf.util.parseAxisParam,
    parseSliceParams: tf.slice_util.parseSliceParams,
    __ns: {
      "../util": tf.util,
      "../ops/axis_util": tf.backend_util,
      "../ops/broadcast_util": tf.backend_util,
      "../ops/conv_util": tf.backend_util,
    },
  };
  const read = (name: string) => Deno.readTextFileSync(join(dir, name));
  Object.assign(scope, evaluate(read("min_max_grad_util.js"), scope));
  Object.assign(scope, evaluate(read("Abs_grad.js"), scope));
  const files = [...Deno.readDirSync(dir)].map((e) => e.name)
    .filter((n) => n.endsWith("_grad.js")).sort();
  const configs = files.flatMap((file) =>
    Object.values(evaluate(read(file), scope)) as Partial<tf.GradConfig>[]
  ).filter((c): c is tf.GradConfig => Boolean(c?.kernelName && c.gradFunc));
  const added: string[] = [];
  for (const config of [...configs, ...zeroGradients()]) {
    if (tf.getGradient(config.kernelName) != null) continue;
    tf.registerGradient(config);
    added.push(config.kernelName);
  }
  return added;
}
