// How busy the target container is, from /proc and (when it is visible) its cgroup.
// Parsers are pure and exported for tests; `Sampler` does the reading. Reads are
// synchronous on purpose: procfs and cgroupfs never block on disk, and a promise per
// file costs the monitor more CPU and heap than the read itself.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** USER_HZ: the unit of /proc/<pid>/stat times. 100 on every Linux architecture we ship for. */
export const CLOCK_TICKS_PER_SECOND = 100;

export interface ProcStat {
  pid: number;
  ppid: number;
  /** Start time in ticks after boot: with the pid, tells a process from a later one that reused its pid. */
  startTime: number;
  /** utime + stime, all threads. */
  ticks: number;
  /** cutime + cstime: what reaped children used, added when they are reaped. */
  childTicks: number;
}

/** Parses /proc/<pid>/stat. The command name may hold spaces and ')' so split after the last ')'. */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open));
  // Fields from 3 (state) on; field n is at index n - 3.
  const f = text
    .slice(close + 2)
    .trim()
    .split(" ");
  const num = (field: number) => Number(f[field - 3]);
  const stat = {
    pid,
    ppid: num(4),
    startTime: num(22),
    ticks: num(14) + num(15),
    childTicks: num(16) + num(17),
  };
  return Object.values(stat).every(Number.isFinite) ? stat : undefined;
}

/** VmRSS from /proc/<pid>/status in bytes; 0 for kernel threads and zombies, which have none. */
export function parseStatusRss(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** The cgroup v2 path from /proc/<pid>/cgroup ("0::/path"); undefined on a v1-only host. */
export function parseCgroupPath(text: string): string | undefined {
  const line = text.split("\n").find((l) => l.startsWith("0::"));
  return line ? line.slice(3).trim() : undefined;
}

/** A "key value" per line file (cpu.stat, memory.stat). */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.split(" ");
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/**
 * Which processes are the workload. With a root pid: that process and its descendants.
 * Without: everything in our PID namespace except us, our ancestors and our descendants
 * (the monitor shares the target container's PID namespace).
 */
export function selectTargets(
  procs: ReadonlyMap<number, ProcStat>,
  opts: { selfPid: number; rootPid?: number | undefined },
): number[] {
  const children = new Map<number, number[]>();
  for (const p of procs.values()) {
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  const subtree = (root: number): Set<number> => {
    const out = new Set<number>();
    const stack = procs.has(root) ? [root] : [];
    for (let pid = stack.pop(); pid !== undefined; pid = stack.pop()) {
      if (out.has(pid)) continue;
      out.add(pid);
      stack.push(...(children.get(pid) ?? []));
    }
    return out;
  };
  if (opts.rootPid !== undefined) return [...subtree(opts.rootPid)];
  const excluded = subtree(opts.selfPid);
  for (let p = procs.get(opts.selfPid); p && !excluded.has(p.ppid); p = procs.get(p.ppid)) {
    excluded.add(p.ppid);
  }
  excluded.add(opts.selfPid);
  return [...procs.keys()].filter((pid) => !excluded.has(pid));
}

/**
 * CPU ticks the targets used between two readings. Surviving processes count their own
 * delta; new ones count everything; a reaped child's last, unseen stretch shows up in its
 * parent's childTicks, minus what we had already counted for it.
 */
export function cpuTicksBetween(
  prev: ReadonlyMap<number, ProcStat>,
  cur: ReadonlyMap<number, ProcStat>,
): number {
  const same = (a: ProcStat | undefined, b: ProcStat) =>
    a !== undefined && a.startTime === b.startTime;
  let ticks = 0;
  for (const p of cur.values()) {
    const before = prev.get(p.pid);
    if (same(before, p) && before) {
      ticks += p.ticks - before.ticks + (p.childTicks - before.childTicks);
    } else {
      ticks += p.ticks + p.childTicks;
    }
  }
  for (const gone of prev.values()) {
    const now = cur.get(gone.pid);
    if (now && same(gone, now)) continue;
    const parent = cur.get(gone.ppid);
    if (parent && same(prev.get(gone.ppid), parent)) ticks -= gone.ticks + gone.childTicks;
  }
  return Math.max(0, ticks);
}

export interface Measurement {
  /** Number of target processes now; 0 means the workload is gone. */
  targets: number;
  /** Cores used since the previous measurement; undefined on the first one (no baseline yet). */
  cpuCores: number | undefined;
  memoryBytes: number;
  source: "cgroup" | "proc";
}

export interface SamplerOptions {
  procRoot: string;
  cgroupRoot: string;
  rootPid?: number | undefined;
  /** Monotonic milliseconds; injectable so tests can pin wall time. */
  clock?: () => number;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

export class Sampler {
  readonly #opts: SamplerOptions;
  readonly #clock: () => number;
  #selfPid: number | undefined;
  #prev:
    | { at: number; source: "cgroup" | "proc"; procs: Map<number, ProcStat>; usageUsec: number }
    | undefined;
  #cgroupFor = "";
  #cgroupDir: string | undefined;

  constructor(opts: SamplerOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? (() => performance.now());
  }

  measure(): Measurement {
    const at = this.#clock();
    const procs = this.#readTargets();
    if (procs.size === 0) {
      this.#prev = undefined;
      return { targets: 0, cpuCores: undefined, memoryBytes: 0, source: "proc" };
    }
    const cgroup = this.#cgroup(procs);
    let usageUsec = 0;
    let memoryBytes: number | undefined;
    if (cgroup) {
      const cpuStat = readText(join(cgroup, "cpu.stat"));
      const current = readText(join(cgroup, "memory.current"));
      const memStat = readText(join(cgroup, "memory.stat"));
      usageUsec = parseKeyValues(cpuStat ?? "").get("usage_usec") ?? Number.NaN;
      if (current !== undefined && memStat !== undefined) {
        // Working set as the kubelet computes it: usage minus easily reclaimable page cache.
        const inactive = parseKeyValues(memStat).get("inactive_file") ?? 0;
        memoryBytes = Math.max(0, Number(current) - inactive);
      }
    }
    const source = cgroup && Number.isFinite(usageUsec) ? "cgroup" : "proc";
    if (memoryBytes === undefined || !Number.isFinite(memoryBytes)) {
      memoryBytes = this.#rss(procs);
    }

    let cpuCores: number | undefined;
    const prev = this.#prev;
    if (prev && prev.source === source && at > prev.at) {
      const seconds = (at - prev.at) / 1000;
      const used =
        source === "cgroup"
          ? (usageUsec - prev.usageUsec) / 1e6
          : cpuTicksBetween(prev.procs, procs) / CLOCK_TICKS_PER_SECOND;
      cpuCores = Math.max(0, used / seconds);
    }
    this.#prev = { at, source, procs, usageUsec };
    return { targets: procs.size, cpuCores, memoryBytes, source };
  }

  #readTargets(): Map<number, ProcStat> {
    const root = this.#opts.procRoot;
    if (this.#selfPid === undefined) {
      try {
        this.#selfPid = Number(readlinkSync(join(root, "self")));
      } catch {
        this.#selfPid = process.pid;
      }
    }
    const all = new Map<number, ProcStat>();
    for (const entry of readdirSync(root)) {
      if (!/^\d+$/.test(entry)) continue;
      const text = readText(join(root, entry, "stat"));
      const stat = text === undefined ? undefined : parseStat(text);
      if (stat) all.set(stat.pid, stat);
    }
    const targets = new Map<number, ProcStat>();
    for (const pid of selectTargets(all, { selfPid: this.#selfPid, rootPid: this.#opts.rootPid })) {
      const p = all.get(pid);
      if (p) targets.set(pid, p);
    }
    return targets;
  }

  /**
   * The targets' cgroup directory, only if it holds exactly the workload: all targets in one
   * cgroup, not ours, and visible under cgroupRoot. An ephemeral container usually cannot see
   * its target's cgroup (cgroup namespaces), and a test's child shares the test's cgroup, so
   * both fall back to /proc.
   */
  #cgroup(procs: Map<number, ProcStat>): string | undefined {
    const key = [...procs.keys()].sort((a, b) => a - b).join(",");
    if (key === this.#cgroupFor) return this.#cgroupDir;
    this.#cgroupFor = key;
    this.#cgroupDir = undefined;
    const root = this.#opts.procRoot;
    const paths = [this.#selfPid ?? 0, ...procs.keys()].map((pid) =>
      parseCgroupPath(readText(join(root, String(pid), "cgroup")) ?? ""),
    );
    const [own, first, ...rest] = paths;
    if (!first || first === own || first.split("/").includes("..")) return undefined;
    if (rest.some((p) => p !== first)) return undefined;
    const dir = join(this.#opts.cgroupRoot, first);
    if (readText(join(dir, "cpu.stat")) === undefined) return undefined;
    this.#cgroupDir = dir;
    return dir;
  }

  #rss(procs: Map<number, ProcStat>): number {
    let total = 0;
    for (const pid of procs.keys()) {
      total += parseStatusRss(readText(join(this.#opts.procRoot, String(pid), "status")) ?? "");
    }
    return total;
  }
}
