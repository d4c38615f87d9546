// The source container's freezer: what makes a migration a move. Frozen, none
// of its processes runs again until it is thawed (or killed: runc thaws a
// frozen cgroup after SIGKILL, so a deleted frozen original dies without
// running another instruction). The agent finds the container's cgroup from
// the pod's UID and the container's ID, both recorded by the operator, never
// from a path anyone wrote: it walks the node's cgroup tree (mounted from the
// host) for a directory named after them, with every name checked first.
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** cgroup v1 (a freezer hierarchy) or v2 (cgroup.freeze in the unified tree). */
export type CgroupVersion = 1 | 2;

export class FreezeError extends Error {
  override name = "FreezeError";
}

const CONTAINER_ID = /^[0-9a-f]{64}$/;
const POD_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_DEPTH = 8;

/** "containerd://<64 hex>" (or a bare id) as the kubelet reports it, to the bare id. */
export function bareContainerId(reported: string): string {
  const id = reported.replace(/^[a-z0-9-]+:\/\//, "");
  if (!CONTAINER_ID.test(id)) throw new FreezeError(`"${reported}" is not a container ID`);
  return id;
}

export async function cgroupVersion(root: string): Promise<CgroupVersion> {
  if (await isFile(join(root, "cgroup.controllers"))) return 2;
  if (await isDir(join(root, "freezer"))) return 1;
  throw new FreezeError(`${root} is neither a cgroup v2 tree nor a v1 root with a freezer`);
}

/** A container's cgroup: where it is frozen and thawed. */
export interface ContainerCgroup {
  version: CgroupVersion;
  dir: string;
  /** The pod's cgroup, the container's parent. */
  podDir: string;
}

/**
 * The container's cgroup directory under `root` (the host's /sys/fs/cgroup):
 * the directory named after the container (cgroupfs driver: `<id>`; systemd:
 * `cri-containerd-<id>.scope`, `crio-<id>.scope`) inside the pod's (`pod<uid>`
 * or `...-pod<uid with underscores>.slice`).
 */
export async function findContainerCgroup(
  root: string,
  podUID: string,
  containerID: string,
): Promise<ContainerCgroup> {
  if (!POD_UID.test(podUID)) throw new FreezeError(`"${podUID}" is not a pod UID`);
  const id = bareContainerId(containerID);
  const version = await cgroupVersion(root);
  const base = version === 2 ? root : join(root, "freezer");
  const podNames = [`pod${podUID}`, `pod${podUID.replaceAll("-", "_")}`];
  const isPod = (n: string) => podNames.some((p) => n === p || n.endsWith(`-${p}.slice`));
  const isContainer = (n: string) => n === id || n.endsWith(`-${id}.scope`);
  // The container's directory sits right inside the pod's.
  const walk = async (dir: string, depth: number): Promise<string | undefined> => {
    if (depth > MAX_DEPTH) return undefined;
    const entries = (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter((e) =>
      e.isDirectory(),
    );
    for (const e of entries) {
      if (!isPod(e.name)) continue;
      const inner = await readdir(join(dir, e.name), { withFileTypes: true }).catch(() => []);
      const c = inner.find((x) => x.isDirectory() && isContainer(x.name));
      if (c) return join(dir, e.name, c.name);
    }
    for (const e of entries) {
      if (isPod(e.name)) continue;
      const found = await walk(join(dir, e.name), depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  const dir = await walk(base, 0);
  if (!dir)
    throw new FreezeError(
      `no cgroup for container ${id.slice(0, 12)} of pod ${podUID} under ${base} (has the container restarted or gone?)`,
    );
  return { version, dir, podDir: dirname(dir) };
}

/** FROZEN, FREEZING or THAWED, as the kernel reports it. */
export async function freezerState(cg: ContainerCgroup): Promise<"FROZEN" | "FREEZING" | "THAWED"> {
  if (cg.version === 1) {
    const s = (await readFile(join(cg.dir, "freezer.state"), "utf8")).trim();
    if (s === "FROZEN" || s === "FREEZING" || s === "THAWED") return s;
    throw new FreezeError(`unexpected freezer.state "${s}" in ${cg.dir}`);
  }
  const events = await readFile(join(cg.dir, "cgroup.events"), "utf8");
  const frozen = /^frozen 1$/m.test(events);
  const asked = (await readFile(join(cg.dir, "cgroup.freeze"), "utf8")).trim() === "1";
  return frozen ? "FROZEN" : asked ? "FREEZING" : "THAWED";
}

/**
 * Freezes (or thaws) the cgroup and returns once the kernel reports every
 * task in the wanted state; a freeze that does not settle within `timeoutMs`
 * (a task stuck in an uninterruptible wait) is thawed again and throws.
 */
export async function setFrozen(
  cg: ContainerCgroup,
  frozen: boolean,
  timeoutMs = 5_000,
): Promise<void> {
  const want = frozen ? "FROZEN" : "THAWED";
  const write = (v: boolean) =>
    cg.version === 1
      ? writeFile(join(cg.dir, "freezer.state"), v ? "FROZEN" : "THAWED")
      : writeFile(join(cg.dir, "cgroup.freeze"), v ? "1" : "0");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // v1 may stay FREEZING until asked again; writing again is harmless.
    await write(frozen);
    if ((await freezerState(cg)) === want) return;
    if (Date.now() > deadline) {
      if (frozen) await write(false).catch(() => {});
      throw new FreezeError(`${cg.dir} did not become ${want} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** Whether the container is frozen by its own freezer (not only through its pod's). */
export async function selfFrozen(cg: ContainerCgroup): Promise<boolean> {
  if (cg.version === 2)
    return (await readFile(join(cg.dir, "cgroup.freeze"), "utf8")).trim() === "1";
  const self = await readFile(join(cg.dir, "freezer.self_freezing"), "utf8").catch(() => "");
  return self.trim() === "1" && (await freezerState(cg)) === "FROZEN";
}

async function podFrozen(cg: ContainerCgroup): Promise<boolean> {
  const file = cg.version === 2 ? "cgroup.freeze" : "freezer.self_freezing";
  return (await readFile(join(cg.podDir, file), "utf8").catch(() => "")).trim() === "1";
}

/**
 * A hold an agent left half-done (it died between freezing the pod's cgroup
 * and holding the container by itself): the container is held by itself and
 * the pod's cgroup thawed, as checkpointHeld would have ended. Returns whether
 * there was one.
 */
export async function recoverHold(cg: ContainerCgroup): Promise<boolean> {
  if (!(await podFrozen(cg))) return false;
  await setFrozen(cg, true);
  await (cg.version === 1
    ? writeFile(join(cg.podDir, "freezer.state"), "THAWED")
    : writeFile(join(cg.podDir, "cgroup.freeze"), "0"));
  return true;
}

/** What holding the container at its checkpointed state took. */
export interface Held<T> {
  value: T;
  /** When the container was held (epoch ms): it ran no further from then on. */
  heldAt: number;
  /**
   * How long it ran after the dump before it was held, in ms: 0 when it was
   * held before the runtime resumed it; otherwise from the resume (as seen) to
   * the freeze (the state it reached meanwhile is not in the checkpoint).
   */
  gapMs: number;
  /** The container's own freezer states seen during the call, with ms since its start. */
  states: string[];
}

/**
 * Runs `call` (the kubelet's checkpoint of this container) so that the
 * container never runs again after the state it captures, and leaves it
 * frozen. containerd's checkpoint refuses a container frozen beforehand ("OCI
 * runtime pause failed: container not running") and pauses, dumps and resumes
 * it itself; its own freezer then goes FROZEN (containerd's pause: runc
 * writes FROZEN until it reads FROZEN, thawing now and then while it stays
 * FREEZING), THAWED (CRIU has seized the tasks by ptrace and thaws: its only
 * thaw), FROZEN (CRIU done: it leaves the freezer as it found it, then
 * detaches) and THAWED (containerd's resume, after it packed the rootfs diff).
 * At the second FROZEN the pod's cgroup is frozen too, so the resume releases
 * nothing; once the call returns the container is frozen on its own and the
 * pod's cgroup thawed (the pod's other containers run on). Should the resume
 * come first, the container is frozen at once and the gap reported.
 */
export async function checkpointHeld<T>(
  cg: ContainerCgroup,
  call: () => Promise<T>,
  pollMs = 1,
): Promise<Held<T>> {
  const file = join(cg.dir, cg.version === 1 ? "freezer.state" : "cgroup.freeze");
  const frozenValue = cg.version === 1 ? "FROZEN" : "1";
  const freezePod = (frozen: boolean) =>
    cg.version === 1
      ? writeFileSync(join(cg.podDir, "freezer.state"), frozen ? "FROZEN" : "THAWED")
      : writeFileSync(join(cg.podDir, "cgroup.freeze"), frozen ? "1" : "0");
  const t0 = performance.now();
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(16);
  const read = () =>
    buf
      .subarray(0, readSync(fd, buf, 0, buf.length, 0))
      .toString()
      .trim();
  const states: string[] = [];
  let phase = 0; // 0 before the pause, 1 paused, 2 held by CRIU, 3 CRIU done: pod frozen
  let heldAt = 0;
  let thawSeenAt = 0;
  let last = "";
  let done = false;
  const watch = (async () => {
    while (!done && phase < 3) {
      const st = read();
      if (st !== last) {
        states.push(`${(performance.now() - t0).toFixed(1)} ${st}`);
        last = st;
        const frozen = st === frozenValue || st === "FREEZING";
        if (!frozen && phase >= 1) thawSeenAt = Date.now();
        // runc's pause may go FREEZING, THAWED, FREEZING... (it thaws now and
        // then while new tasks keep it FREEZING) and returns at the first
        // FROZEN: only that is the pause done. CRIU's own write comes after.
        if (phase === 0 && st === frozenValue) phase = 1;
        else if (phase === 1 && !frozen) phase = 2;
        else if (phase === 2 && frozen) {
          freezePod(true);
          heldAt = Date.now();
          phase = 3;
        }
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  })();
  let value: T;
  try {
    value = await call();
  } catch (err) {
    done = true;
    await watch;
    closeSync(fd);
    // Nothing to hold: the pod runs on.
    if (phase === 3) freezePod(false);
    throw err;
  }
  done = true;
  await watch;
  closeSync(fd);
  if (phase !== 3) {
    // Not caught before the resume: freeze now, and say how long it ran
    // (from the last thaw seen; from the call's return if none was).
    const returnedAt = Date.now();
    await setFrozen(cg, true);
    heldAt = Date.now();
    return { value, heldAt, gapMs: heldAt - (thawSeenAt || returnedAt), states };
  }
  try {
    await setFrozen(cg, true);
  } finally {
    freezePod(false);
  }
  return { value, heldAt, gapMs: 0, states };
}
