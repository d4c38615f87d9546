// The simulated nodes' container runtime on its own: real containers with
// runc, real checkpoints and restores with CRIU (Debian trixie's 4.1.1), the
// counter workload in the project's own root filesystem. No Kubernetes here;
// the node simulator builds on this.
import { existsSync } from "node:fs";
import {
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitUntil } from "../cluster/process.ts";
import { type ContainerSpec, SimRuntime } from "../sim/runtime.ts";
import { ensureSimTools, type SimTools } from "../sim/setup.ts";
import { type CounterProgress, counterWorkload, readCounterProgress } from "../sim/workloads.ts";

let tools: SimTools;
let rt: SimRuntime;
let dir: string;

beforeAll(async () => {
  tools = await ensureSimTools();
  rt = await SimRuntime.create({ criuBinDir: tools.criuBinDir, name: "edge" });
  dir = await mkdtemp(join(tmpdir(), "sim-runtime-test-"));
}, 180_000);

afterEach(async () => {
  // Each test starts from an empty runtime, whatever the previous one left.
  for (const c of await rt.list()) await rt.delete(c.id);
});

afterAll(async () => {
  await rt?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh host folder for a container's /progress. */
async function progressDir(name: string): Promise<string> {
  const p = join(dir, name);
  await mkdir(p, { recursive: true });
  return p;
}

function counter(id: string, progress: string, memoryMb = 0): ContainerSpec {
  return { id, rootfs: tools.rootfs, ...counterWorkload({ progressDir: progress, memoryMb }) };
}

/** PIDs of CRIU processes still running (they would be leftovers of a restore). */
async function criuProcesses(): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(tools.criuBinDir.replace(/\/bin$/, "")) || cmd.startsWith("criu")) {
      found.push(Number(entry));
    }
  }
  return found;
}

/** Waits for a publication satisfying `ok` and returns it. */
function progressWhere(
  progress: string,
  ok: (p: CounterProgress) => boolean,
  timeoutMs = 20_000,
): Promise<CounterProgress> {
  return waitUntil(
    `progress in ${progress}`,
    async () => {
      const p = await readCounterProgress(progress);
      return p && ok(p) ? p : undefined;
    },
    { timeoutMs, intervalMs: 20 },
  );
}

describe("sim runtime (runc + CRIU)", () => {
  it("restores a checkpoint that continues from the checkpointed counter, while a restart begins at 0", async () => {
    const srcDir = await progressDir("src");
    await rt.createContainer({ ...counter("src", srcDir), logFile: join(dir, "src.log") });
    const before = await progressWhere(srcDir, (p) => p.counter > 0);
    expect(before.pid).toBe(1); // its own PID namespace

    const ck = await rt.checkpoint("src", join(dir, "ck-src"));
    // CRIU's own stats agree with the images it wrote.
    const pages = await stat(join(ck.imagesDir, "pages-1.img"));
    expect((ck.stats?.pagesWritten ?? 0) * 4096).toBe(pages.size);
    expect(ck.stats?.frozenUs).toBeGreaterThan(0);
    // --leave-running: the source goes on counting after the dump.
    expect((await rt.state("src")).status).toBe("running");
    const sourceAfter = await progressWhere(srcDir, (p) => p.counter > before.counter);

    const dstDir = await progressDir("dst");
    const restored = await rt.restore(
      { ...counter("dst", dstDir), rootfsDiff: rt.upperDir("src"), logFile: join(dir, "dst.log") },
      ck.imagesDir,
    );
    expect(restored.state.status).toBe("running");
    expect(restored.stats?.pagesRestored).toBe(ck.stats?.pagesWritten);
    const first = await progressWhere(dstDir, () => true);
    // Same process memory: the counter and the start time come from the checkpoint.
    expect(first.counter).toBeGreaterThanOrEqual(before.counter);
    expect(first.startedAt).toBe(before.startedAt);
    const later = await progressWhere(dstDir, (p) => p.counter > first.counter);
    expect(later.counter).toBeGreaterThan(first.counter);
    expect(sourceAfter.startedAt).toBe(before.startedAt);

    // The restart policy: a new container from the same image starts over.
    const rsDir = await progressDir("restart");
    await rt.createContainer(counter("restart", rsDir));
    const fresh = await progressWhere(rsDir, () => true);
    expect(fresh.counter).toBeLessThan(before.counter);
    expect(fresh.startedAt).toBeGreaterThan(before.startedAt);

    // Both containers' stdio are pipes into their log files, also after the restore.
    expect((await rt.exec("dst", ["sh", "-c", "echo restored-says-hi >/proc/1/fd/1"])).code).toBe(
      0,
    );
    await waitUntil(
      "restored container's log line",
      async () =>
        (await readFile(join(dir, "dst.log"), "utf8")).includes("restored-says-hi") || undefined,
      { timeoutMs: 5000, intervalMs: 20 },
    );
  });

  it("checkpoints while a process joined to the container's PID namespace runs (the monitor)", async () => {
    const srcDir = await progressDir("mon-src");
    await rt.createContainer(counter("mon-src", srcDir));
    await progressWhere(srcDir, (p) => p.counter > 0);

    // Like an ephemeral container with targetContainerName: sees the workload as PID 1.
    const monitorLog = join(dir, "monitor.log");
    const monitor = await rt.runInPidNamespaceOf(
      "mon-src",
      ["sh", "-c", "ls /proc | grep -E '^[0-9]+$' | sed 's/^/pid /'; exec sleep 600"],
      { logFile: monitorLog },
    );
    const seen = await waitUntil(
      "the monitor's view of /proc",
      async () => {
        const text = await readFile(monitorLog, "utf8").catch(() => "");
        return text.includes("pid ") ? text : undefined;
      },
      { timeoutMs: 5000, intervalMs: 20 },
    );
    const pids = [...seen.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toContain(1);
    // Only the workload and the monitor's own shell pipeline: no host process.
    expect(pids.length).toBeLessThan(10);
    expect(Math.max(...pids)).toBeLessThan(100);

    const ck = await rt.checkpoint("mon-src", join(dir, "ck-mon"));
    expect(monitor.child.exitCode).toBeNull(); // the monitor survives the checkpoint
    expect((await rt.state("mon-src")).status).toBe("running");

    const dstDir = await progressDir("mon-dst");
    await rt.restore(counter("mon-dst", dstDir), ck.imagesDir);
    const first = await progressWhere(dstDir, () => true);
    expect(first.counter).toBeGreaterThan(0);
    await monitor.stop();
    // Stopped as a group: nothing of it is left in the container's PID namespace.
    const inside = await rt.exec("mon-src", ["sh", "-c", "cat /proc/[0-9]*/comm"]);
    expect(inside.code).toBe(0);
    expect(inside.stdout).not.toContain("sleep");
  });

  it("applies CPU and memory limits through the container's cgroup", async () => {
    const p = await progressDir("limits");
    await rt.createContainer({ ...counter("limits", p), cpuQuota: 0.5, memoryLimit: 256 << 20 });
    const cg = rt.cgroupPath("limits");
    const quota = await readFile(`/sys/fs/cgroup/cpu${cg}/cpu.cfs_quota_us`, "utf8");
    const period = await readFile(`/sys/fs/cgroup/cpu${cg}/cpu.cfs_period_us`, "utf8");
    const mem = await readFile(`/sys/fs/cgroup/memory${cg}/memory.limit_in_bytes`, "utf8");
    expect(Number(quota) / Number(period)).toBe(0.5);
    expect(Number(mem)).toBe(256 << 20);
    const { pid } = await rt.state("limits");
    const procs = await readFile(`/sys/fs/cgroup/cpu${cg}/cgroup.procs`, "utf8");
    expect(procs.split("\n").map(Number)).toContain(pid);
  });

  it("fails restores from corrupt images with the reason, leaving nothing behind and the source running", async () => {
    const srcDir = await progressDir("bad-src");
    await rt.createContainer(counter("bad-src", srcDir, 16));
    await progressWhere(srcDir, (p) => p.heldMb === 16);
    const ck = await rt.checkpoint("bad-src", join(dir, "ck-bad"));
    const copy = async (name: string) => {
      const to = join(dir, name);
      await cp(ck.imagesDir, to, { recursive: true });
      return to;
    };

    // Garbage where CRIU's inventory should be: CRIU refuses at once and says why.
    const garbled = await copy("ck-garbled");
    await writeFile(join(garbled, "inventory.img"), "not a CRIU image");
    await expect(rt.restore(counter("bad-1", await progressDir("bad-1")), garbled)).rejects.toThrow(
      /runc restore bad-1 exited 1[\s\S]*restore\.log/,
    );

    // Memory pages cut short: CRIU 4.1.1 spins on the missing bytes
    // (checkpoint-restore/criu#2899), so only the timeout ends it.
    const truncated = await copy("ck-truncated");
    await truncate(join(truncated, "pages-1.img"), 4096);
    await expect(
      rt.restore(counter("bad-2", await progressDir("bad-2")), truncated, { timeoutMs: 3000 }),
    ).rejects.toThrow(/runc restore bad-2 timed out/);

    expect((await rt.list()).map((c) => c.id)).toEqual(["bad-src"]);
    for (const id of ["bad-1", "bad-2"]) {
      expect(existsSync(join(rt.root, "containers", id))).toBe(false);
      expect(existsSync(join(rt.root, "runc", id))).toBe(false);
      expect(existsSync(`/sys/fs/cgroup/pids${rt.cgroupPath(id)}`)).toBe(false);
    }
    expect(await readFile("/proc/self/mountinfo", "utf8")).not.toMatch(/containers\/bad-[12]/);
    expect(await criuProcesses()).toEqual([]);
    const before = await progressWhere(srcDir, () => true);
    await progressWhere(srcDir, (p) => p.counter > before.counter);
  });

  it("measures checkpoint and restore of workloads holding 16 and 64 MB", async () => {
    const rows: Record<string, string | number>[] = [];
    for (const mb of [16, 64]) {
      const srcDir = await progressDir(`m${mb}-src`);
      await rt.createContainer(counter(`m${mb}-src`, srcDir, mb));
      await progressWhere(srcDir, (p) => p.heldMb === mb && p.counter > 0);
      const ck = await rt.checkpoint(`m${mb}-src`, join(dir, `ck-m${mb}`));
      const at = await progressWhere(srcDir, () => true);
      const dstDir = await progressDir(`m${mb}-dst`);
      const restored = await rt.restore(counter(`m${mb}-dst`, dstDir), ck.imagesDir);
      const first = await progressWhere(dstDir, () => true);
      expect(first.heldMb).toBe(mb);
      expect(first.startedAt).toBe(at.startedAt);
      // The held memory is in the image (plus the Node runtime's own heap and code).
      expect(ck.imageBytes).toBeGreaterThan(mb << 20);
      rows.push({
        heldMb: mb,
        checkpointMs: Math.round(ck.durationMs),
        // The source's downtime: CRIU's freeze to the end of the dump.
        frozenMs: Math.round((ck.stats?.frozenUs ?? 0) / 1000),
        restoreMs: Math.round(restored.durationMs),
        criuRestoreMs: Math.round((restored.stats?.restoreUs ?? 0) / 1000),
        imageMiB: Number((ck.imageBytes / (1 << 20)).toFixed(1)),
      });
      await rt.delete(`m${mb}-src`);
      await rt.delete(`m${mb}-dst`);
      await rm(ck.imagesDir, { recursive: true, force: true });
    }
    console.table(rows);
  });

  it("close() removes every container, mount and folder of the runtime", async () => {
    const other = await SimRuntime.create({ criuBinDir: tools.criuBinDir, name: "cloud" });
    const p = await progressDir("closing");
    await other.createContainer({ ...counter("closing", p), logFile: join(dir, "closing.log") });
    await progressWhere(p, () => true);
    const { pid } = await other.state("closing");
    const cg = other.cgroupPath("closing");
    await other.close();
    expect(existsSync(other.root)).toBe(false);
    expect(await readFile("/proc/self/mountinfo", "utf8")).not.toContain(other.root);
    // Gone, or a zombie until the host's init reaps it.
    await waitUntil(
      "the container's process to die",
      async () => {
        const st = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
        return st === "" || / Z /.test(st) ? true : undefined;
      },
      { timeoutMs: 5000, intervalMs: 20 },
    );
    expect(existsSync(`/sys/fs/cgroup/memory${cg}`)).toBe(false);
  });
});
