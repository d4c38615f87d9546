import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import {
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  type DumpStats,
  type RestoreStats,
  readDumpStats,
  readRestoreStats,
} from "./criu-stats.ts";

/**
 * The container runtime of ONE simulated node: real containers through runc,
 * checkpoint and restore through CRIU (Debian trixie's 4.1.1, see
 * install-criu.sh), each container in its own PID, IPC, UTS, mount and
 * (by default) network namespace, its root filesystem an overlay of a shared
 * read-only base (rootfs.sh) and a writable layer of its own - the layer
 * CRI-O calls `rootfs-diff`.
 *
 * Everything lives under one folder per runtime (bundles, layers, runc's
 * state); `close()` removes every container and the folder. A runtime whose
 * process died without closing is swept by the next one created.
 */

export interface BindMount {
  /** Host path. */
  source: string;
  /** Path inside the container. */
  destination: string;
  readOnly?: boolean;
}

export interface ContainerSpec {
  id: string;
  /** Read-only base root filesystem (the image), shared by every container. */
  rootfs: string;
  /** A folder whose files seed the container's writable layer (a restore's rootfs-diff). */
  rootfsDiff?: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  mounts?: BindMount[];
  /** CPU limit in cores (CFS quota over a 100 ms period). */
  cpuQuota?: number;
  /** Memory limit in bytes. */
  memoryLimit?: number;
  /** `private` (default): a network namespace with only loopback. `host`: the node's. */
  network?: "private" | "host";
  /**
   * Host file that receives the container's stdout and stderr, through a pipe:
   * CRIU cannot restore a container whose stdio is a host file. Default: /dev/null.
   */
  logFile?: string;
  hostname?: string;
}

export interface ContainerState {
  id: string;
  /** Host PID of the container's init process (0 once stopped). */
  pid: number;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  bundle: string;
}

export interface CheckpointResult {
  imagesDir: string;
  durationMs: number;
  /** Total size of the CRIU image files. */
  imageBytes: number;
  /** CRIU's own figures; `frozenUs` is the source's downtime. */
  stats?: DumpStats;
}

export interface RestoreResult {
  state: ContainerState;
  durationMs: number;
  stats?: RestoreStats;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A host process joined to a container's PID namespace (see runInPidNamespaceOf). */
export interface JoinedProcess {
  /** The `nsenter` process; the joined program is its only child. */
  child: ChildProcess;
  /** Exit code of nsenter, which is the program's; null when killed. */
  exited: Promise<number | null>;
  /** SIGKILLs the program and nsenter together and waits for the exit. */
  stop(): Promise<void>;
}

export interface SimRuntimeOptions {
  /** Folder holding the `criu` wrapper (what install-criu.sh prints). */
  criuBinDir: string;
  /** Parent of the runtime's own folder. Default: <tmpdir>/edgeshift-sim. */
  baseDir?: string;
  /** Name used in folder and cgroup names, e.g. the node name. */
  name?: string;
}

interface Tracked {
  spec: ContainerSpec;
  dir: string;
  merged: string;
  upper: string;
  /** Open while the container's stdio pipes are drained into its log file. */
  stdio?: ChildProcess;
}

const runcBin = "runc";
const cgroupParent = "edgeshift-sim";

export class SimRuntime {
  readonly root: string;
  readonly name: string;
  private readonly stateDir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly containers = new Map<string, Tracked>();
  private readonly joined = new Set<JoinedProcess>();

  private constructor(root: string, name: string, criuBinDir: string) {
    this.root = root;
    this.name = name;
    this.stateDir = join(root, "runc");
    // runc looks `criu` up on PATH: the trixie wrapper must win over anything else.
    this.env = { ...process.env, PATH: `${criuBinDir}:${process.env.PATH ?? "/usr/bin:/bin"}` };
  }

  static async create(opts: SimRuntimeOptions): Promise<SimRuntime> {
    const base = opts.baseDir ?? join(tmpdir(), "edgeshift-sim");
    await mkdir(base, { recursive: true });
    await sweepStale(base);
    const name = opts.name ?? "node";
    const root = await mkdtemp(join(base, `${process.pid}-${name}-`));
    const rt = new SimRuntime(root, name, opts.criuBinDir);
    await mkdir(rt.stateDir, { recursive: true });
    return rt;
  }

  /** Where the container's writable layer lives (its rootfs-diff). */
  upperDir(id: string): string {
    return this.tracked(id).upper;
  }

  bundleDir(id: string): string {
    return this.tracked(id).dir;
  }

  /** The container's cgroup, relative to each hierarchy under /sys/fs/cgroup. */
  cgroupPath(id: string): string {
    return `/${cgroupParent}/${basename(this.root)}/${id}`;
  }

  /** Writes the OCI bundle and starts the container (`runc run --detach`). */
  async createContainer(spec: ContainerSpec): Promise<ContainerState> {
    const t = await this.prepareBundle(spec);
    try {
      await this.runDetached(t, ["run", "--detach", "--bundle", t.dir, spec.id], 30_000);
    } catch (err) {
      await this.discard(spec.id);
      throw err;
    }
    return this.state(spec.id);
  }

  /**
   * `runc checkpoint`: CRIU images of the container into `imagesDir` (created
   * if missing). With `leaveRunning` (default, as CRI-O and containerd do) the
   * container continues after the dump.
   */
  async checkpoint(
    id: string,
    imagesDir: string,
    opts: { leaveRunning?: boolean; timeoutMs?: number } = {},
  ): Promise<CheckpointResult> {
    this.tracked(id);
    await mkdir(imagesDir, { recursive: true });
    const args = ["checkpoint", "--image-path", imagesDir, "--work-path", imagesDir];
    if (opts.leaveRunning ?? true) args.push("--leave-running");
    args.push(id);
    const started = performance.now();
    try {
      await this.runc(args, opts.timeoutMs ?? 60_000);
    } catch (err) {
      // A dump cut short can leave the container frozen: thaw it, it must keep running.
      if ((await this.state(id).catch(() => undefined))?.status === "paused") {
        await this.runc(["resume", id]).catch(() => {});
      }
      throw withLog(err, join(imagesDir, "dump.log"));
    }
    const durationMs = performance.now() - started;
    const stats = await readDumpStats(join(imagesDir, "stats-dump"));
    return { imagesDir, durationMs, imageBytes: await dirBytes(imagesDir), stats };
  }

  /**
   * `runc restore --detach` from CRIU images into a new container. `spec`
   * must describe the same container as the checkpointed one (same mounts,
   * same namespaces); its id, host mount sources, log file and writable layer
   * seed may differ. A restore that fails or outlives `timeoutMs` leaves
   * nothing behind. The timeout matters: CRIU 4.1.1 spins forever on a
   * truncated pages image (checkpoint-restore/criu#2899, fixed after 4.1.1).
   */
  async restore(
    spec: ContainerSpec,
    imagesDir: string,
    opts: { timeoutMs?: number } = {},
  ): Promise<RestoreResult> {
    const t = await this.prepareBundle(spec);
    const work = join(t.dir, "criu-work");
    await mkdir(work, { recursive: true });
    const started = performance.now();
    try {
      await this.runDetached(
        t,
        [
          "restore",
          "--detach",
          "--image-path",
          imagesDir,
          "--work-path",
          work,
          "--bundle",
          t.dir,
          spec.id,
        ],
        opts.timeoutMs ?? 60_000,
      );
    } catch (err) {
      const e = withLog(err, join(work, "restore.log"));
      await this.discard(spec.id);
      throw e;
    }
    const durationMs = performance.now() - started;
    const stats = await readRestoreStats(join(work, "stats-restore"));
    return { state: await this.state(spec.id), durationMs, stats };
  }

  async state(id: string): Promise<ContainerState> {
    const { stdout } = await this.runc(["state", id]);
    const s = JSON.parse(stdout) as ContainerState;
    return { id: s.id, pid: s.pid, status: s.status, bundle: s.bundle };
  }

  /** `runc exec` without a terminal; resolves with the exit code and output. */
  async exec(id: string, argv: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    return runGroup(runcBin, ["--root", this.stateDir, "exec", id, ...argv], {
      env: this.env,
      timeoutMs: opts.timeoutMs ?? 30_000,
    });
  }

  async kill(id: string, signal = "TERM"): Promise<void> {
    await this.runc(["kill", id, signal]);
  }

  /**
   * Starts a host process inside the container's PID namespace only - the
   * way a runtime starts an ephemeral container with `targetContainerName`.
   * It gets a private mount namespace with a /proc of that PID namespace, so
   * it sees the container's processes (and only those) under their in-container
   * PIDs, while the host's files, cgroups and network stay visible to it.
   * `nsenter` must remain its parent: CRIU then does not count it in the
   * container's process tree. An orphan would be adopted by the container's
   * init (and dumped with it, or left a zombie: node does not reap strangers),
   * so `stop()` kills the program while nsenter lives to reap it. It dies with
   * the container (its PID namespace), and `close()` stops it.
   */
  async runInPidNamespaceOf(
    id: string,
    argv: string[],
    opts: { env?: NodeJS.ProcessEnv; logFile?: string } = {},
  ): Promise<JoinedProcess> {
    const { pid, status } = await this.state(id);
    if (status !== "running") throw new Error(`container ${id} is ${status}, not running`);
    const child = spawn(
      "nsenter",
      ["--target", String(pid), "--pid", "--", "unshare", "--mount-proc", "--", ...argv],
      {
        env: opts.env ?? process.env,
        stdio: ["ignore", opts.logFile ? "pipe" : "ignore", opts.logFile ? "pipe" : "ignore"],
        detached: true,
      },
    );
    if (opts.logFile) {
      const log = createWriteStream(opts.logFile, { flags: "a" });
      child.stdout?.pipe(log, { end: false });
      child.stderr?.pipe(log, { end: false });
      child.once("close", () => log.end());
    }
    const exited = new Promise<number | null>((resolve) => {
      child.once("exit", (code) => resolve(code));
      child.once("error", () => resolve(null));
    });
    const joined: JoinedProcess = {
      child,
      exited,
      stop: async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        await killGroupBut(child);
        const timer = setTimeout(() => killGroup(child), 2000);
        await exited;
        clearTimeout(timer);
      },
    };
    this.joined.add(joined);
    void exited.then(() => this.joined.delete(joined));
    return joined;
  }

  /** `runc delete --force`, then the container's layers and bundle. Idempotent. */
  async delete(id: string): Promise<void> {
    await this.runc(["delete", "--force", id]).catch((err: Error) => {
      if (!/does not exist/.test(err.message)) throw err;
    });
    await this.discard(id);
  }

  /** Ids of the containers runc knows in this runtime. */
  async list(): Promise<ContainerState[]> {
    const { stdout } = await this.runc(["list", "--format", "json"]);
    const items = (JSON.parse(stdout || "null") ?? []) as ContainerState[];
    return items.map((s) => ({ id: s.id, pid: s.pid, status: s.status, bundle: s.bundle }));
  }

  /** Removes every container, joined process and file of this runtime. */
  async close(): Promise<void> {
    for (const j of [...this.joined]) await j.stop();
    const ids = new Set([...this.containers.keys()]);
    for (const s of await this.list().catch(() => [])) ids.add(s.id);
    const errors: unknown[] = [];
    for (const id of ids) await this.delete(id).catch((err) => errors.push(err));
    await cleanupRoot(this.root).catch((err) => errors.push(err));
    if (errors.length > 0) throw new AggregateError(errors, `closing sim runtime ${this.root}`);
  }

  private tracked(id: string): Tracked {
    const t = this.containers.get(id);
    if (!t) throw new Error(`no container ${id} in runtime ${this.name}`);
    return t;
  }

  private async prepareBundle(spec: ContainerSpec): Promise<Tracked> {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(spec.id)) {
      throw new Error(`invalid container id ${JSON.stringify(spec.id)}`);
    }
    if (this.containers.has(spec.id)) throw new Error(`container ${spec.id} exists`);
    const dir = join(this.root, "containers", spec.id);
    const t: Tracked = {
      spec,
      dir,
      merged: join(dir, "rootfs"),
      upper: join(dir, "upper"),
    };
    this.containers.set(spec.id, t);
    try {
      const work = join(dir, "work");
      await mkdir(t.merged, { recursive: true });
      await mkdir(work, { recursive: true });
      if (spec.rootfsDiff) await cp(spec.rootfsDiff, t.upper, { recursive: true });
      else await mkdir(t.upper, { recursive: true });
      await run("mount", [
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${spec.rootfs},upperdir=${t.upper},workdir=${work}`,
        t.merged,
      ]);
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify(ociConfig(spec, this.cgroupPath(spec.id)), null, 2),
      );
    } catch (err) {
      await this.discard(spec.id);
      throw err;
    }
    return t;
  }

  /**
   * Runs `runc run|restore --detach`. runc hands its own stdio to the
   * container, so that stdio is either /dev/null or a real pipe drained into
   * the log file: never a host file (CRIU could not put it back) and never a
   * socket (Node's "pipes" are socketpairs, which CRIU cannot dump). The pipe
   * comes from a shell pipeline whose `cat` lives as long as the container
   * writes; runc's exit code comes back on fd 3. runc's own errors go to its
   * --log file, read back on failure.
   */
  private async runDetached(t: Tracked, args: string[], timeoutMs: number): Promise<void> {
    const runcLog = join(t.dir, "runc.log");
    const full = ["--root", this.stateDir, "--log", runcLog, "--log-format", "text", ...args];
    const piped = t.spec.logFile !== undefined;
    // Its own process group, so a timeout takes runc and CRIU down together.
    const child = piped
      ? spawn(
          "sh",
          ["-c", '{ "$0" "$@" 3>&-; echo "$?" >&3; } 2>&1 | cat 3>&-', runcBin, ...full],
          {
            env: this.env,
            stdio: ["ignore", "pipe", "ignore", "pipe"],
            detached: true,
          },
        )
      : spawn(runcBin, full, { env: this.env, stdio: "ignore", detached: true });
    if (piped && t.spec.logFile) {
      child.stdout?.pipe(createWriteStream(t.spec.logFile, { flags: "a" }));
      t.stdio = child;
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    const code = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      if (!piped) {
        child.once("exit", (c, sig) => resolve(c ?? (sig ? 128 : 1)));
        return;
      }
      // The shell keeps fd 3 open until the container ends: read one line, not to the end.
      let text = "";
      const status = child.stdio[3] as NodeJS.ReadableStream;
      status.on("data", (d: Buffer) => {
        text += d.toString();
        if (text.includes("\n")) resolve(Number(text.trim()));
      });
      status.once("end", () => resolve(Number(text.trim() || "1")));
    }).finally(() => clearTimeout(timer));
    if (timedOut) throw new Error(`runc ${args[0]} ${t.spec.id} timed out after ${timeoutMs} ms`);
    if (code !== 0) {
      const text = await readFile(runcLog, "utf8").catch(() => "");
      throw new Error(`runc ${args[0]} ${t.spec.id} exited ${code}: ${lastLines(text, 15)}`);
    }
  }

  /** Unmounts and removes what prepareBundle made; the container must be gone. */
  private async discard(id: string): Promise<void> {
    const t = this.containers.get(id);
    if (!t) return;
    // After a failed or timed-out restore runc may not know the container while
    // CRIU's half-restored tasks still sit in its cgroup, and CRIU's mounts
    // (criu-root, cgroup yard) stay behind: remove them explicitly.
    await killCgroup(this.cgroupPath(id));
    if (t.stdio && t.stdio.exitCode === null) killGroup(t.stdio);
    await unmountUnder(t.dir);
    await unmountUnder(join(this.stateDir, id));
    await rm(t.dir, { recursive: true, force: true });
    await rm(join(this.stateDir, id), { recursive: true, force: true });
    await removeCgroup(this.cgroupPath(id));
    this.containers.delete(id);
  }

  private async runc(args: string[], timeoutMs = 30_000): Promise<ExecResult> {
    const r = await runGroup(runcBin, ["--root", this.stateDir, ...args], {
      env: this.env,
      timeoutMs,
    });
    if (r.code !== 0)
      throw new Error(`runc ${args.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}`);
    return r;
  }
}

/** The OCI runtime config: runc's default spec, trimmed to what the workloads need. */
export function ociConfig(spec: ContainerSpec, cgroupsPath: string): object {
  const env = { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/root", ...spec.env };
  const namespaces = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if ((spec.network ?? "private") === "private") namespaces.push({ type: "network" });
  const resources: Record<string, unknown> = { devices: [{ allow: false, access: "rwm" }] };
  if (spec.cpuQuota !== undefined) {
    resources.cpu = { quota: Math.max(1000, Math.round(spec.cpuQuota * 100_000)), period: 100_000 };
  }
  if (spec.memoryLimit !== undefined) resources.memory = { limit: spec.memoryLimit };
  const caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
  return {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: spec.args,
      env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd: spec.cwd ?? "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: caps },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: false },
    hostname: spec.hostname ?? spec.id.slice(0, 63),
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      ...(spec.mounts ?? []).map((m) => ({
        destination: m.destination,
        type: "bind",
        source: m.source,
        options: ["rbind", m.readOnly ? "ro" : "rw"],
      })),
    ],
    linux: {
      cgroupsPath,
      resources,
      namespaces,
      maskedPaths: [
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
      // CRIU cannot dump io_uring instances ("Unknown shit 600 (anon_inode:[io_uring])"),
      // and libuv (Node) sets up an io_uring ring whenever the kernel allows it,
      // even with UV_USE_IO_URING=0. Refusing the syscalls with ENOSYS - as the
      // default seccomp profiles of Docker, containerd and CRI-O do - makes
      // libuv fall back to epoll.
      seccomp: {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        syscalls: [
          {
            names: ["io_uring_setup", "io_uring_enter", "io_uring_register"],
            action: "SCMP_ACT_ERRNO",
            errnoRet: 38,
          },
        ],
      },
    },
  };
}

/** Sum of the sizes of the regular files under `dir`. */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

/**
 * Runs a command in its own process group and collects its output. On
 * timeout the whole group is killed (runc and the CRIU it started).
 */
function runGroup(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, opts.timeoutMs ?? 120_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(" ")}: timed out after ${opts.timeoutMs} ms`));
      } else resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await runGroup(cmd, args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim() || r.code}`);
}

/** SIGKILLs the members of `child`'s process group except `child` itself. */
async function killGroupBut(child: ChildProcess): Promise<void> {
  const leader = child.pid;
  if (leader === undefined) return;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === leader) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    // Fields after the parenthesised command: state ppid pgrp ...
    const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
    if (pgrp !== leader) continue;
    try {
      process.kill(Number(entry), "SIGKILL");
    } catch {
      // Exited meanwhile.
    }
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

function lastLines(text: string, n: number): string {
  return text.trim().split("\n").slice(-n).join("\n");
}

/** Appends the tail of a CRIU log (the real reason of most failures) to an error. */
function withLog(err: unknown, logPath: string): Error {
  const base = err instanceof Error ? err.message : String(err);
  let tail = "";
  try {
    if (existsSync(logPath)) {
      const text = readFileSync(logPath, "utf8");
      tail = lastLines(
        text
          .split("\n")
          .filter((l) => /Error|error|Warn/.test(l))
          .join("\n") || text,
        15,
      );
    }
  } catch {
    // No log: the runc message is all there is.
  }
  return new Error(tail ? `${base}\n--- ${logPath} ---\n${tail}` : base);
}

/** Lazily unmounts every mount at or below `dir`, deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  // Field 5 is the mount point (our paths have no spaces to octal-escape).
  const points = mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of new Set(points)) await run("umount", ["--lazy", m]).catch(() => {});
}

/** SIGKILLs every process left in a container's cgroup and waits until it is empty. */
async function killCgroup(cgroupPath: string): Promise<void> {
  const procs = join("/sys/fs/cgroup/pids", cgroupPath, "cgroup.procs");
  for (let i = 0; i < 50; i++) {
    const text = await readFile(procs, "utf8").catch(() => "");
    const pids = text.split("\n").filter(Boolean).map(Number);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Removes a container's cgroup from every hierarchy (runc does not after a failed restore). */
async function removeCgroup(cgroupPath: string): Promise<void> {
  for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    await rmdir(join("/sys/fs/cgroup", hierarchy, cgroupPath)).catch(() => {});
  }
}

/** Names of the child cgroups of `cgroupPath` in any hierarchy. */
async function cgroupChildren(cgroupPath: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    const entries = await readdir(join("/sys/fs/cgroup", hierarchy, cgroupPath), {
      withFileTypes: true,
    }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) names.add(e.name);
  }
  return names;
}

/** Deletes the containers, mounts, files and cgroups of a runtime folder. */
async function cleanupRoot(root: string): Promise<void> {
  const stateDir = join(root, "runc");
  const cgroupBase = `/${cgroupParent}/${basename(root)}`;
  if (existsSync(stateDir)) {
    const r = await runGroup(runcBin, ["--root", stateDir, "list", "-q"]).catch(() => undefined);
    for (const id of (r?.stdout ?? "").split("\n").filter(Boolean)) {
      await runGroup(runcBin, ["--root", stateDir, "delete", "--force", id]).catch(() => {});
    }
  }
  for (const id of await cgroupChildren(cgroupBase)) {
    await killCgroup(join(cgroupBase, id));
    await removeCgroup(join(cgroupBase, id));
  }
  await unmountUnder(root);
  await rm(root, { recursive: true, force: true });
  // runc removes a container's own cgroup, not the parents it created for it.
  for (const hierarchy of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
    const parent = join("/sys/fs/cgroup", hierarchy, cgroupParent);
    await rmdir(join(parent, basename(root))).catch(() => {});
    await rmdir(parent).catch(() => {}); // fails while another runtime uses it: fine
  }
}

/** Cleans the folders of runtimes whose process is gone (killed tests, crashes). */
async function sweepStale(base: string): Promise<void> {
  const folders = await readdir(base).catch(() => [] as string[]);
  // A runtime whose folder is gone may still have cgroups (a crash mid-cleanup).
  const cgroups = await cgroupChildren(`/${cgroupParent}`);
  for (const entry of new Set([...folders, ...cgroups])) {
    const pid = Number(entry.split("-")[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    await cleanupRoot(join(base, entry)).catch(() => {});
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
