import assert from "node:assert/strict";
import { cpuModel, describeDevice } from "../../lib/commands/device.ts";

const CPUINFO = `processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC   7B13 64-Core Processor
processor\t: 1
model name\t: AMD EPYC   7B13 64-Core Processor
`;

Deno.test("the device: the adapter on WebGPU, else the CPU's model and the backend's threads", () => {
  assert.equal(cpuModel(CPUINFO), "AMD EPYC 7B13 64-Core Processor");
  assert.equal(cpuModel("processor : 0\n"), undefined);
  assert.equal(
    describeDevice({ name: "webgpu", adapter: "nvidia hopper (H200)", reason: "" }, CPUINFO),
    "nvidia hopper (H200)",
  );
  assert.equal(
    describeDevice({ name: "onednn", threads: 2, reason: "" }, CPUINFO),
    "AMD EPYC 7B13 64-Core Processor, 2 threads",
  );
  assert.equal(describeDevice({ name: "cpu", reason: "" }, ""), "CPU, 1 thread");
});
