import { type ChildProcess, execFile, spawn } from "node:child_process";
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
}

export interface RestoreResult {
  state: ContainerState;
  durationMs: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
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
  private readonly joined = new Set<ChildProcess>();

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
      await this.runDetached(t, ["run", "--detach", "--bundle", t.dir, spec.id]);
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
    opts: { leaveRunning?: boolean } = {},
  ): Promise<CheckpointResult> {
    this.tracked(id);
    await mkdir(imagesDir, { recursive: true });
    const args = ["checkpoint", "--image-path", imagesDir, "--work-path", imagesDir];
    if (opts.leaveRunning ?? true) args.push("--leave-running");
    args.push(id);
    const started = performance.now();
    try {
      await this.runc(args);
    } catch (err) {
      throw withLog(err, join(imagesDir, "dump.log"));
    }
    const durationMs = performance.now() - started;
    return { imagesDir, durationMs, imageBytes: await dirBytes(imagesDir) };
  }

  /**
   * `runc restore --detach` from CRIU images into a new container. `spec`
   * must describe the same container as the checkpointed one (same mounts,
   * same namespaces); its id, host mount sources, log file and writable layer
   * seed may differ.
   */
  async restore(spec: ContainerSpec, imagesDir: string): Promise<RestoreResult> {
    const t = await this.prepareBundle(spec);
    const work = join(t.dir, "criu-work");
    await mkdir(work, { recursive: true });
    const started = performance.now();
    try {
      await this.runDetached(t, [
        "restore",
        "--detach",
        "--image-path",
        imagesDir,
        "--work-path",
        work,
        "--bundle",
        t.dir,
        spec.id,
      ]);
    } catch (err) {
      const e = withLog(err, join(work, "restore.log"));
      await this.discard(spec.id);
      throw e;
    }
    const durationMs = performance.now() - started;
    return { state: await this.state(spec.id), durationMs };
  }

  async state(id: string): Promise<ContainerState> {
    const { stdout } = await this.runc(["state", id]);
    const s = JSON.parse(stdout) as ContainerState;
    return { id: s.id, pid: s.pid, status: s.status, bundle: s.bundle };
  }

  /** `runc exec` without a terminal; resolves with the exit code and output. */
  async exec(id: string, argv: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      execFile(
        runcBin,
        ["--root", this.stateDir, "exec", id, ...argv],
        { env: this.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (err && typeof err.code !== "number") return reject(err);
          resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
        },
      );
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
   * `nsenter` remains its parent, so CRIU does not count it in the
   * container's process tree. Killed by `close()` if still running.
   */
  async runInPidNamespaceOf(
    id: string,
    argv: string[],
    opts: { env?: NodeJS.ProcessEnv; logFile?: string } = {},
  ): Promise<ChildProcess> {
    const { pid, status } = await this.state(id);
    if (status !== "running") throw new Error(`container ${id} is ${status}, not running`);
    const child = spawn(
      "nsenter",
      ["--target", String(pid), "--pid", "--", "unshare", "--mount-proc", "--", ...argv],
      {
        env: opts.env ?? process.env,
        stdio: ["ignore", opts.logFile ? "pipe" : "ignore", opts.logFile ? "pipe" : "ignore"],
      },
    );
    if (opts.logFile) {
      const log = createWriteStream(opts.logFile, { flags: "a" });
      child.stdout?.pipe(log, { end: false });
      child.stderr?.pipe(log, { end: false });
      child.once("close", () => log.end());
    }
    this.joined.add(child);
    child.once("exit", () => this.joined.delete(child));
    return child;
  }

  /** `runc delete --force`, then the container's layers and bundle. Idempotent. */
  async delete(id: string): Promise<void> {
    await this.runc(["delete", "--force", id]).catch((err: Error) => {
      if (!/does not exist|not exist/.test(err.message)) throw err;
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
    for (const child of this.joined) child.kill("SIGKILL");
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
  private async runDetached(t: Tracked, args: string[]): Promise<void> {
    const runcLog = join(t.dir, "runc.log");
    const full = ["--root", this.stateDir, "--log", runcLog, "--log-format", "text", ...args];
    let code: number;
    if (t.spec.logFile === undefined) {
      const child = spawn(runcBin, full, { env: this.env, stdio: "ignore" });
      code = await new Promise<number>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (c, sig) => resolve(c ?? (sig ? 128 : 1)));
      });
    } else {
      const script = '{ "$0" "$@" 3>&-; echo "$?" >&3; } 2>&1 | cat 3>&-';
      const child = spawn("sh", ["-c", script, runcBin, ...full], {
        env: this.env,
        stdio: ["ignore", "pipe", "ignore", "pipe"],
      });
      const log = createWriteStream(t.spec.logFile, { flags: "a" });
      child.stdout?.pipe(log);
      t.stdio = child;
      const status = child.stdio[3] as NodeJS.ReadableStream;
      code = await new Promise<number>((resolve, reject) => {
        let text = "";
        child.once("error", reject);
        // The shell keeps fd 3 open until the container ends: read one line, not to the end.
        status.on("data", (d: Buffer) => {
          text += d.toString();
          if (text.includes("\n")) resolve(Number(text.trim()));
        });
        status.once("end", () => resolve(Number(text.trim() || "1")));
      });
    }
    if (code !== 0) {
      const text = await readFile(runcLog, "utf8").catch(() => "");
      throw new Error(`runc ${args[0]} ${t.spec.id} exited ${code}: ${lastLines(text, 15)}`);
    }
  }

  /** Unmounts and removes what prepareBundle made; the container must be gone. */
  private async discard(id: string): Promise<void> {
    const t = this.containers.get(id);
    if (!t) return;
    // The pipeline's `cat` ends with the container; this only covers a container
    // that never started.
    if (t.stdio && t.stdio.exitCode === null) t.stdio.kill("SIGKILL");
    await unmountIfMounted(t.merged);
    await rm(t.dir, { recursive: true, force: true });
    this.containers.delete(id);
  }

  private runc(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run(runcBin, ["--root", this.stateDir, ...args], this.env);
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

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, maxBuffer: 16 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) {
        const detail = stderr.trim() || err.message;
        reject(new Error(`${cmd} ${args.join(" ")}: ${detail}`));
      } else resolve({ stdout, stderr });
    });
  });
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

async function unmountIfMounted(path: string): Promise<void> {
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  // Field 5 of mountinfo is the mount point (octal-escaped spaces do not occur in our paths).
  const mounted = mounts.split("\n").some((l) => l.split(" ")[4] === path);
  if (mounted) await run("umount", ["--lazy", path]);
}

/** Deletes the containers and files of a runtime folder. */
async function cleanupRoot(root: string): Promise<void> {
  const stateDir = join(root, "runc");
  if (existsSync(stateDir)) {
    const { stdout } = await run(runcBin, ["--root", stateDir, "list", "-q"]).catch(() => ({
      stdout: "",
    }));
    for (const id of stdout.split("\n").filter(Boolean)) {
      await run(runcBin, ["--root", stateDir, "delete", "--force", id]).catch(() => {});
    }
  }
  const containers = join(root, "containers");
  if (existsSync(containers)) {
    for (const id of await readdir(containers)) {
      await unmountIfMounted(join(containers, id, "rootfs"));
    }
  }
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
  for (const entry of await readdir(base).catch(() => [] as string[])) {
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
