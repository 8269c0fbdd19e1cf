/**
 * The machine the dashboard runs on, from Linux's /proc: CPU use over the
 * last interval, memory in use, load, and each running job's process (its
 * CPU share and resident memory). The parsers are pure functions of the
 * files' text; {@link MachineMonitor} reads the files at most every two
 * seconds (each reading redraws the view) and keeps the previous reading to
 * turn tick counters into shares.
 */
import * as fs from "node:fs";

/** CPU ticks summed over every core: those spent busy and all of them. */
export interface CpuTimes {
  /** Ticks not idle (user, nice, system, irq, softirq, steal). */
  busy: number;
  /** All ticks (idle and iowait included). */
  total: number;
}

/** The aggregate `cpu` line of /proc/stat as busy and total ticks. */
export function parseCpuTimes(stat: string): CpuTimes {
  const line = stat.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat: no aggregate cpu line");
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim()
    .split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** The share of CPU time busy between two readings (0–1; 0 when no time passed). */
export function cpuShare(before: CpuTimes, after: CpuTimes): number {
  const total = after.total - before.total;
  return total > 0 ? Math.min(1, Math.max(0, (after.busy - before.busy) / total)) : 0;
}

/** Memory from /proc/meminfo in bytes: total, and in use (total less available). */
export function parseMemory(meminfo: string): { total: number; used: number } {
  const kb = (name: string) => {
    const m = meminfo.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"));
    if (!m) throw new Error(`/proc/meminfo: no ${name}`);
    return Number(m[1]) * 1024;
  };
  const total = kb("MemTotal");
  return { total, used: total - kb("MemAvailable") };
}

/** A process's CPU ticks (user + system) from /proc/PID/stat (the name may hold spaces). */
export function parseProcessTicks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name: state is field 3, utime field 14, stime field 15 (1-based, as in proc(5)).
  return Number(fields[11]) + Number(fields[12]);
}

/** A process's resident memory in bytes from /proc/PID/status (VmRSS). */
export function parseRss(status: string): number {
  const m = status.match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : 0;
}

/** One reading of the machine. */
export interface MachineStats {
  /** This machine's host name (a job the store says ran elsewhere is not looked up here). */
  host: string;
  /** Logical cores. */
  cores: number;
  /** Share of all cores busy since the previous reading (undefined on the first). */
  cpu?: number;
  /** Memory in bytes. */
  memory: { total: number; used: number };
  /** Load averages over 1, 5 and 15 minutes. */
  load: [number, number, number];
  /** Running job processes by pid: CPU in cores (1 = one core busy) and resident memory. */
  processes: Map<number, { cpu?: number; rss: number }>;
  /** When it was read (ms). */
  time: number;
}

/** Reads /proc at most every `intervalMs`; shares are over the time since the last reading. */
export class MachineMonitor {
  readonly #proc: string;
  readonly #ticksPerSecond: number;
  readonly #intervalMs: number;
  #last?: { cpu: CpuTimes; procs: Map<number, number>; stats: MachineStats };

  /**
   * A monitor of `proc` (another folder for tests). `ticksPerSecond` is
   * USER_HZ, 100 on Linux; `intervalMs` (default 2000) the least time
   * between readings: the machine view redraws with each, and every second
   * cost 0.8% of a core more than the overview (measured), every two about
   * half that.
   */
  constructor(proc = "/proc", ticksPerSecond = 100, intervalMs = 2000) {
    this.#proc = proc;
    this.#ticksPerSecond = ticksPerSecond;
    this.#intervalMs = intervalMs;
  }

  /** The machine now and the given job processes; undefined where /proc cannot be read. */
  read(pids: number[], now = Date.now()): MachineStats | undefined {
    const last = this.#last;
    if (last && now - last.stats.time < this.#intervalMs && pids.every((p) => last.procs.has(p))) {
      return last.stats;
    }
    let stat: string;
    let meminfo: string;
    let loadavg: string;
    try {
      stat = fs.readFileSync(`${this.#proc}/stat`, "utf8");
      meminfo = fs.readFileSync(`${this.#proc}/meminfo`, "utf8");
      loadavg = fs.readFileSync(`${this.#proc}/loadavg`, "utf8");
    } catch {
      return undefined;
    }
    const cpu = parseCpuTimes(stat);
    const cores = stat.split("\n").filter((l) => /^cpu\d+ /.test(l)).length || 1;
    const procs = new Map<number, number>();
    const processes = new Map<number, { cpu?: number; rss: number }>();
    for (const pid of pids) {
      try {
        const ticks = parseProcessTicks(fs.readFileSync(`${this.#proc}/${pid}/stat`, "utf8"));
        const rss = parseRss(fs.readFileSync(`${this.#proc}/${pid}/status`, "utf8"));
        procs.set(pid, ticks);
        const before = last?.procs.get(pid);
        const seconds = last ? (now - last.stats.time) / 1000 : 0;
        processes.set(pid, {
          cpu: before !== undefined && seconds > 0
            ? (ticks - before) / this.#ticksPerSecond / seconds
            : undefined,
          rss,
        });
      } catch {
        // the process ended (or runs on another machine): left out
      }
    }
    const [l1, l5, l15] = loadavg.trim().split(/\s+/).map(Number);
    const stats: MachineStats = {
      host: Deno.hostname(),
      cores,
      cpu: last ? cpuShare(last.cpu, cpu) : undefined,
      memory: parseMemory(meminfo),
      load: [l1, l5, l15],
      processes,
      time: now,
    };
    this.#last = { cpu, procs, stats };
    return stats;
  }
}
