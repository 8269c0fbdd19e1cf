import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { installerOf, installKernels } from "../../lib/runtime/kernels/install.ts";
import { useBackend } from "../helpers.ts";

await useBackend("cpu");

Deno.test("installKernels: replaces, keeps setup, is idempotent per installer, layers installers", () => {
  const name = "DmwTestKernel";
  const setupFunc = () => {};
  const base: tf.KernelFunc = ({ inputs }) => (inputs as { x: tf.TensorInfo }).x;
  tf.registerKernel({ kernelName: name, backendName: "cpu", kernelFunc: base, setupFunc });
  try {
    const seen: (tf.KernelConfig | undefined)[] = [];
    const first: tf.KernelFunc = (args) => base(args);
    const make = (current: tf.KernelConfig | undefined) => {
      seen.push(current);
      return first;
    };
    installKernels("cpu", "one", { [name]: make });
    installKernels("cpu", "one", { [name]: make }); // again: left alone
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.kernelFunc, base, "the maker gets the kernel it replaces");
    assert.equal(tf.getKernel(name, "cpu")?.kernelFunc, first);
    assert.equal(tf.getKernel(name, "cpu")?.setupFunc, setupFunc, "setupFunc kept");
    assert.equal(installerOf(name, "cpu"), "one");

    const second: tf.KernelFunc = (args) => first(args);
    installKernels("cpu", "two", {
      [name]: (current) => {
        assert.equal(current?.kernelFunc, first, "a later installer layers over an earlier one");
        return second;
      },
    });
    assert.equal(installerOf(name, "cpu"), "two");
    assert.equal(installerOf("Neg", "cpu"), undefined, "tfjs's own kernels have no installer");
  } finally {
    tf.unregisterKernel(name, "cpu");
  }
});
