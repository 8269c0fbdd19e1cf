import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  cpuShare,
  MachineMonitor,
  parseCpuTimes,
  parseMemory,
  parseProcessTicks,
  parseRss,
} from "../../lib/dashboard/machine.ts";
import { plain } from "../../lib/dashboard/charts.ts";
import { SweepReader } from "../../lib/dashboard/model.ts";
import { initialUi, renderFrame } from "../../lib/dashboard/views.ts";
import { openStore } from "../../lib/store/store.ts";
import { buildFixture } from "./fixture.ts";

/** A /proc folder with the given files (stat, meminfo, loadavg, PID/stat, PID/status). */
function fakeProc(files: Record<string, string>): string {
  const dir = Deno.makeTempDirSync({ prefix: "dmw-proc-" });
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(join(dir, name, ".."), { recursive: true });
    fs.writeFileSync(join(dir, name), text);
  }
  return dir;
}

const STAT = (user: number, idle: number) =>
  `cpu  ${user} 0 100 ${idle} 50 0 10 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\nintr 1\n`;
const MEMINFO = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
const PSTAT = (ticks: number) =>
  `4242 (deno run (x)) R 1 2 3 4 5 6 7 8 9 10 ${ticks - 20} 20 0 0 20 0 9 0 100 1000 50`;

Deno.test("/proc parsers, by hand", () => {
  // busy = user + nice + system + irq + softirq + steal = 1000 + 0 + 100 + 0 + 10 + 0.
  assert.deepEqual(parseCpuTimes(STAT(1000, 3000)), { busy: 1110, total: 4160 });
  // 300 more busy ticks of 300 + 700 more in all.
  assert.equal(cpuShare(parseCpuTimes(STAT(1000, 3000)), parseCpuTimes(STAT(1300, 3700))), 0.3);
  assert.equal(cpuShare(parseCpuTimes(STAT(1, 1)), parseCpuTimes(STAT(1, 1))), 0);
  assert.deepEqual(parseMemory(MEMINFO), { total: 16000000 * 1024, used: 4000000 * 1024 });
  assert.equal(parseProcessTicks(PSTAT(500)), 500, "utime + stime after a name with spaces");
  assert.equal(parseRss("Name:\tdeno\nVmRSS:\t  350000 kB\n"), 350000 * 1024);
  assert.equal(parseRss("Name:\tzombie\n"), 0);
  assert.throws(() => parseMemory("MemTotal: 1 kB\n"), /\/proc\/meminfo: no MemAvailable/);
});

Deno.test("machine monitor: shares between readings two seconds apart; the machine view shows them", async () => {
  const files = {
    stat: STAT(1000, 3000),
    meminfo: MEMINFO,
    loadavg: "1.50 0.75 0.25 2/300 4242\n",
    "4242/stat": PSTAT(500),
    "4242/status": "VmRSS:\t  358400 kB\n",
  };
  const proc = fakeProc(files);
  const m = new MachineMonitor(proc, 100);
  const first = m.read([4242, 999], 10_000)!;
  assert.equal(first.cpu, undefined, "one reading: no share yet");
  assert.equal(first.cores, 2);
  assert.deepEqual(first.load, [1.5, 0.75, 0.25]);
  assert.deepEqual([...first.processes.keys()], [4242], "a pid not on this machine is left out");
  fs.writeFileSync(join(proc, "stat"), STAT(1300, 3700));
  fs.writeFileSync(join(proc, "4242/stat"), PSTAT(650));
  assert.equal(m.read([4242], 11_500), first, "read at most every two seconds");
  const second = m.read([4242], 12_000)!;
  assert.equal(second.cpu, 0.3);
  // 150 ticks at 100 a second over 2 s: 0.75 of a core.
  assert.deepEqual(second.processes.get(4242), { cpu: 0.75, rss: 350 * 2 ** 20 });

  const f = await buildFixture();
  const store = await openStore(f.storePath, { readOnly: true });
  try {
    const snap = (await new SweepReader(store).refresh())!;
    // The fixture's running training job has pid 999999 on another machine ("box-2"), its
    // running evaluation 999998 on this one; a process of pid 999999 here is not that job's.
    const machine = {
      ...second,
      processes: new Map([
        [999999, { cpu: 0.75, rss: 350 * 2 ** 20 }],
        [999998, { cpu: 0.5, rss: 120 * 2 ** 20 }],
      ]),
    };
    for (const [cols, rows] of [[80, 24], [100, 30]]) {
      const text = renderFrame(snap, { ...initialUi(), view: "machine" }, {
        cols,
        rows,
        series: () => [],
        machine,
      }).lines.map(plain);
      assert.equal(text.length, rows - 1);
      const all = text.join("\n");
      assert.match(all, /this machine {2}2 cores · load 1\.50 0\.75 0\.25/);
      assert.match(all, /cpu +█+.* 30%/);
      assert.match(all, /memory +█+.* 25% {2}3\.8 GB of 15\.3 GB/);
      assert.match(all, /running jobs \(2\)/);
      assert.match(
        all,
        /train +ddpm-8gaussians-\w+ +webgpu +999999 +— +— *\n +on box-2 · NVIDIA H200/,
      );
      assert.match(
        all,
        new RegExp(
          `eval +eval-\\w+ +onednn +999998 +0\\.50 +120 MB *\\n +on ${Deno.hostname()} \\(here\\) · ` +
            "AMD EPYC 7B13, 2 threads",
        ),
      );
      assert.match(text.at(-1)!, /Tab view .* q quit/);
    }
  } finally {
    await store.close();
  }
});
