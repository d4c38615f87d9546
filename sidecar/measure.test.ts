import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import {
  cpuTicksBetween,
  type ProcStat,
  parseCgroupPath,
  parseStat,
  parseStatusRss,
  Sampler,
  selectTargets,
} from "./measure.ts";
import { buildSample } from "./monitor.ts";

const children: ChildProcess[] = [];
let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await once(c, "exit");
    }
  }
});

function node(script: string): ChildProcess {
  const child = spawn(process.execPath, ["-e", script], { stdio: ["pipe", "pipe", "inherit"] });
  children.push(child);
  return child;
}

/** Resolves with the child's next stdout line. */
function nextLine(child: ChildProcess): Promise<string> {
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  return new Promise((resolve) =>
    rl.once("line", (line) => {
      rl.close();
      resolve(line);
    }),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measureOver(sampler: Sampler, ms: number) {
  const first = await sampler.measure();
  expect(first.cpuCores).toBeUndefined();
  await sleep(ms);
  return sampler.measure();
}

function stat(pid: number, ppid: number, ticks = 0, childTicks = 0, startTime = pid): ProcStat {
  return { pid, ppid, startTime, ticks, childTicks };
}

describe("parsers", () => {
  it("reads /proc/<pid>/stat even when the command name holds spaces and parentheses", () => {
    const text =
      "4242 (my (weird) app) R 17 4242 17 0 -1 4194304 100 0 0 0 250 50 7 3 20 0 4 0 98765 1000000 500 18446744073709551615\n";
    expect(parseStat(text)).toEqual({
      pid: 4242,
      ppid: 17,
      startTime: 98765,
      ticks: 300,
      childTicks: 10,
    });
    expect(parseStat("garbage")).toBeUndefined();
  });

  it("reads VmRSS in bytes", () => {
    expect(parseStatusRss("Name:\tx\nVmRSS:\t  2048 kB\nVmSwap:\t0 kB\n")).toBe(2048 * 1024);
    expect(parseStatusRss("Name:\tkthreadd\n")).toBe(0);
  });

  it("reads the cgroup v2 path", () => {
    expect(parseCgroupPath("4:memory:/x\n0::/kubepods/pod1/abc\n")).toBe("/kubepods/pod1/abc");
    expect(parseCgroupPath("4:memory:/x\n")).toBeUndefined();
  });
});

describe("selectTargets", () => {
  // 1 app, 2 its worker, 3 a shell that ran the monitor 4, which has a helper 5; 6 another app.
  const procs = new Map(
    [stat(1, 0), stat(2, 1), stat(3, 0), stat(4, 3), stat(5, 4), stat(6, 1)].map((p) => [p.pid, p]),
  );

  it("takes everything but the monitor, its ancestors and descendants", () => {
    expect(selectTargets(procs, { selfPid: 4 }).sort()).toEqual([1, 2, 6]);
  });

  it("takes only the subtree of a root pid", () => {
    expect(selectTargets(procs, { selfPid: 4, rootPid: 1 }).sort()).toEqual([1, 2, 6]);
    expect(selectTargets(procs, { selfPid: 4, rootPid: 2 })).toEqual([2]);
    expect(selectTargets(procs, { selfPid: 4, rootPid: 99 })).toEqual([]);
  });
});

describe("cpuTicksBetween", () => {
  const map = (...ps: ProcStat[]) => new Map(ps.map((p) => [p.pid, p]));

  it.each([
    ["a surviving process counts its delta", map(stat(1, 0, 100)), map(stat(1, 0, 150)), 50],
    [
      "a new process counts all its ticks",
      map(stat(1, 0, 100)),
      map(stat(1, 0, 100), stat(2, 1, 30)),
      30,
    ],
    [
      "a reaped child counts only what was not seen before",
      map(stat(1, 0, 100), stat(2, 1, 40)),
      map(stat(1, 0, 100, 70)),
      30,
    ],
    [
      "a child born and reaped in between counts fully",
      map(stat(1, 0, 100)),
      map(stat(1, 0, 100, 25)),
      25,
    ],
    [
      "a reused pid is a new process",
      map(stat(1, 0, 100), stat(2, 1, 500, 0, 2)),
      map(stat(1, 0, 100, 500), stat(2, 1, 10, 0, 3)),
      10,
    ],
  ])("%s", (_what, prev, cur, expected) => {
    expect(cpuTicksBetween(prev, cur)).toBe(expected);
  });
});

describe("Sampler on real processes", () => {
  // The reference is the kernel's own count via getrusage (process.cpuUsage in the child),
  // not wall time: on a busy machine a spinning process gets less than a full core.
  it("measures a process burning one core as the core it used, and as a share of its limit", async () => {
    const burner = node(`
      const { Worker } = require("node:worker_threads");
      new Worker("for(;;){}", { eval: true });
      process.stdin.on("data", () => {
        const u = process.cpuUsage();
        process.stdout.write(String(u.user + u.system) + "\\n");
      });
    `);
    const cpuSeconds = async () => {
      const line = nextLine(burner);
      burner.stdin?.write("?\n");
      return Number(await line) / 1e6;
    };
    await sleep(300);
    const sampler = new Sampler({
      procRoot: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      rootPid: burner.pid,
    });
    const used0 = await cpuSeconds();
    const wall0 = performance.now();
    expect(sampler.measure().cpuCores).toBeUndefined();
    await sleep(3000);
    const used1 = await cpuSeconds();
    const wall1 = performance.now();
    const m = sampler.measure();
    const reference = (used1 - used0) / ((wall1 - wall0) / 1000);

    // Busy, even on a loaded machine (the suite runs unit and integration tests side by side).
    expect(reference).toBeGreaterThan(0.3);
    expect(m.targets).toBe(1);
    expect(m.source).toBe("proc");
    expect(Math.abs((m.cpuCores ?? 0) - reference) / reference).toBeLessThan(0.15);

    const s = buildSample(
      {
        node: "n",
        namespace: "ns",
        pod: "p",
        podUid: "u",
        container: "c",
        intervalMs: 1000,
        cpuLimitCores: 2,
        memoryLimitBytes: 2 ** 30,
        signingKey: Buffer.alloc(16),
      },
      { boot: 1, seq: 1, ts: 0 },
      { cpuCores: m.cpuCores ?? 0, memoryBytes: m.memoryBytes },
    );
    expect(s.cpuLimitCores).toBe(2);
    // One core of a 2-core limit reads as ~50%.
    expect(Math.abs(s.cpuPercent - (reference / 2) * 100)).toBeLessThan(7.5);
  });

  it("reports an idle process as close to zero", async () => {
    const idle = node("setInterval(()=>{},1000)");
    await sleep(300);
    const sampler = new Sampler({
      procRoot: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      rootPid: idle.pid,
    });
    const m = await measureOver(sampler, 1000);
    expect(m.cpuCores).toBeLessThan(0.05);
  });

  it("counts short-lived children that are gone before the next sample", async () => {
    // Each grandchild burns ~200 ms and is reaped before it could be seen twice: only the
    // parent's cutime shows that work. Reference: what the grandchildren and the parent
    // report of themselves (getrusage), summed by the parent into a file.
    dir = await mkdtemp(join(tmpdir(), "edgeshift-cpu-"));
    const file = join(dir, "used");
    const parent = node(`
      const { execFileSync } = require("node:child_process");
      const { renameSync, writeFileSync } = require("node:fs");
      const burn = "const t=Date.now()+200;while(Date.now()<t){} const u=process.cpuUsage(); process.stdout.write(String(u.user+u.system))";
      let children = 0;
      for (;;) {
        children += Number(execFileSync(process.execPath, ["-e", burn], { encoding: "utf8" }));
        const own = process.cpuUsage();
        // Written aside and renamed, so the test never reads a half-written file.
        writeFileSync(${JSON.stringify(`${file}.tmp`)}, String(children + own.user + own.system));
        renameSync(${JSON.stringify(`${file}.tmp`)}, ${JSON.stringify(file)});
      }
    `);
    const usedSeconds = async () => Number(await readFile(file, "utf8")) / 1e6;
    await sleep(800);
    const sampler = new Sampler({
      procRoot: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      rootPid: parent.pid,
    });
    const used0 = await usedSeconds();
    const wall0 = performance.now();
    sampler.measure();
    await sleep(4000);
    const used1 = await usedSeconds();
    const wall1 = performance.now();
    const m = sampler.measure();
    const reference = (used1 - used0) / ((wall1 - wall0) / 1000);

    expect(reference).toBeGreaterThan(0.4);
    // The reference misses the child running at either end (up to ~0.25 s of 4 s).
    expect(Math.abs((m.cpuCores ?? 0) - reference) / reference).toBeLessThan(0.15);
  });

  it("measures a process holding 200 MiB as 200 MiB more working set", async () => {
    const holder = node(`
      process.stdout.write("ready\\n");
      let held;
      process.stdin.once("data", () => {
        held = Buffer.alloc(200 * 1024 * 1024);
        for (let i = 0; i < held.length; i += 4096) held[i] = 1;
        process.stdout.write("filled\\n");
      });
      setInterval(() => held, 1000);
    `);
    await nextLine(holder);
    const sampler = new Sampler({
      procRoot: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      rootPid: holder.pid,
    });
    const before = await sampler.measure();
    const filled = nextLine(holder);
    holder.stdin?.write("go\n");
    await filled;
    const after = await sampler.measure();

    const mib = 1024 * 1024;
    expect((after.memoryBytes - before.memoryBytes) / mib).toBeGreaterThan(180);
    expect((after.memoryBytes - before.memoryBytes) / mib).toBeLessThan(220);
    // And it agrees with the kernel's own count, read independently via ps.
    const ps = spawn("ps", ["-o", "rss=", "-p", String(holder.pid)]);
    let out = "";
    ps.stdout.on("data", (d) => {
      out += d;
    });
    await once(ps, "exit");
    const psBytes = Number(out.trim()) * 1024;
    expect(after.memoryBytes).toBeGreaterThan(psBytes * 0.9);
    expect(after.memoryBytes).toBeLessThan(psBytes * 1.1);
  });

  it("sums a process tree and reports no targets once it is gone", async () => {
    // Its own process group, so the grandchildren can be killed with it.
    const parent = spawn(
      process.execPath,
      [
        "-e",
        `const { spawn } = require("node:child_process");
         for (let i = 0; i < 2; i++) spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { stdio: "ignore" });
         setInterval(() => {}, 1000);`,
      ],
      { stdio: "ignore", detached: true },
    );
    children.push(parent);
    const pid = parent.pid ?? 0;
    try {
      const sampler = new Sampler({
        procRoot: "/proc",
        cgroupRoot: "/sys/fs/cgroup",
        rootPid: pid,
      });
      let m = await sampler.measure();
      for (let i = 0; i < 50 && m.targets < 3; i++) {
        await sleep(100);
        m = await sampler.measure();
      }
      expect(m.targets).toBe(3);
      // Let the children finish starting, then compare with their RSS read right after.
      await sleep(1000);
      m = await sampler.measure();
      // The sum is the tree's RSS, read right after: children still starting up may grow a little.
      const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8"))
        .trim()
        .split(/\s+/);
      let tree = 0;
      for (const p of [String(pid), ...kids]) {
        tree += parseStatusRss(await readFile(`/proc/${p}/status`, "utf8")) ?? 0;
      }
      expect(kids).toHaveLength(2);
      expect(m.memoryBytes).toBeGreaterThan(tree * 0.8);
      expect(m.memoryBytes).toBeLessThan(tree * 1.2);

      process.kill(-pid, "SIGKILL");
      await once(parent, "exit");
      expect((await sampler.measure()).targets).toBe(0);
    } finally {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
    }
  });
});

describe("Sampler on a cgroup v2 tree", () => {
  // A fixture /proc and /sys/fs/cgroup as the monitor sees them when it may read its target's
  // cgroup; no machine here runs the monitor inside a pod.
  it("uses usage_usec and memory.current minus inactive_file when the cgroup is visible", async () => {
    dir = await mkdtemp(join(tmpdir(), "edgeshift-cg-"));
    const proc = join(dir, "proc");
    const cg = join(dir, "cgroup");
    const procFile = async (pid: number, ppid: number, cgroup: string, rssKb: number) => {
      await mkdir(join(proc, String(pid)), { recursive: true });
      await writeFile(
        join(proc, String(pid), "stat"),
        `${pid} (x) S ${ppid} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${pid} 0 0\n`,
      );
      await writeFile(join(proc, String(pid), "cgroup"), `0::${cgroup}\n`);
      await writeFile(join(proc, String(pid), "status"), `VmRSS:\t${rssKb} kB\n`);
    };
    await procFile(1, 0, "/kubepods/pod1/app", 1000);
    await procFile(7, 1, "/kubepods/pod1/app", 1000);
    await procFile(30, 0, "/kubepods/pod1/monitor", 1000);
    await symlink("30", join(proc, "self"));
    const app = join(cg, "kubepods/pod1/app");
    await mkdir(app, { recursive: true });
    await writeFile(join(app, "cpu.stat"), "usage_usec 1000000\nuser_usec 1\nsystem_usec 1\n");
    await writeFile(join(app, "memory.current"), `${300 * 2 ** 20}\n`);
    await writeFile(
      join(app, "memory.stat"),
      `anon 1\ninactive_file ${100 * 2 ** 20}\nactive_file 5\n`,
    );

    let clock = 10_000;
    const sampler = new Sampler({ procRoot: proc, cgroupRoot: cg, clock: () => clock });
    const first = await sampler.measure();
    expect(first).toEqual({
      targets: 2,
      cpuCores: undefined,
      memoryBytes: 200 * 2 ** 20,
      source: "cgroup",
    });

    await writeFile(join(app, "cpu.stat"), "usage_usec 2500000\n");
    clock += 2000;
    const second = await sampler.measure();
    expect(second.cpuCores).toBeCloseTo(0.75, 6);
    expect(second.source).toBe("cgroup");
  });
});
