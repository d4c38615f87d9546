// On this machine's real cgroup v1 freezer (root, no systemd): a process put in
// a cgroup laid out as the kubelet's cgroupfs and systemd drivers name them is
// found by its pod UID and container ID, frozen (it stops counting), thawed
// (it counts on), and a SIGKILL sent while frozen takes effect only at the
// thaw, without the process running again: what the Freeze hand-off rests on.
// The cgroup v2 branch runs on the kernel's v2 freezer in freezer-v2.test.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  bareContainerId,
  checkpointHeld,
  findContainerCgroup,
  freezerState,
  recoverHold,
  selfFrozen,
  setFrozen,
} from "./freezer.ts";

const ROOT = "/sys/fs/cgroup";
const made: string[] = [];
const procs: ChildProcess[] = [];
const files: string[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) p.kill("SIGKILL");
  for (const f of files.splice(0)) await rm(f, { force: true, recursive: true });
  for (const d of made.splice(0).reverse()) {
    await writeFile(join(d, "freezer.state"), "THAWED").catch(() => {});
    for (let i = 0; i < 50; i++) {
      if (
        await rmdir(d).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
});

async function cgroup(...parts: string[]): Promise<string> {
  let d = join(ROOT, "freezer");
  for (const p of parts) {
    d = join(d, p);
    await mkdir(d).catch(() => {});
    made.push(d);
  }
  return d;
}

/** A shell counting into a file, every 20 ms, inside `dir`. */
async function counter(dir: string, file: string): Promise<ChildProcess> {
  const p = spawn(
    "sh",
    ["-c", `i=0; while :; do i=$((i+1)); echo $i > ${file}; sleep 0.02; done`],
    {
      stdio: "ignore",
    },
  );
  procs.push(p);
  files.push(file);
  await writeFile(join(dir, "cgroup.procs"), String(p.pid));
  return p;
}

const count = async (file: string) =>
  Number((await readFile(file, "utf8").catch(() => "0")).trim());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = await f();
    if (v !== undefined) return v;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A container cgroup `pod<uid>/<id>` under a fresh top-level cgroup, with a
 * counting shell in it unless `counting` is false; found as the agent finds it.
 */
async function podContainer(counting = true) {
  const uid = randomUUID();
  const id = randomBytes(32).toString("hex");
  const top = `edgeshift-unit-${randomBytes(4).toString("hex")}`;
  const dir = await cgroup(top, `pod${uid}`, id);
  const file = join("/tmp", `${top}.n`);
  const p = counting ? await counter(dir, file) : undefined;
  if (p) await until("counting", async () => ((await count(file)) > 3 ? true : undefined));
  const cg = await findContainerCgroup(ROOT, uid, id);
  return { dir, file, p, cg };
}

describe("the container freezer", () => {
  it("accepts only container IDs and pod UIDs as the kubelet reports them", async () => {
    const id = randomBytes(32).toString("hex");
    expect(bareContainerId(`containerd://${id}`)).toBe(id);
    expect(bareContainerId(id)).toBe(id);
    expect(() => bareContainerId("containerd://../../etc")).toThrow(/not a container ID/);
    await expect(findContainerCgroup(ROOT, "../x", id)).rejects.toThrow(/not a pod UID/);
  });

  it("finds a cgroupfs-driver container by pod UID and container ID, freezes it and thaws it", async () => {
    const uid = randomUUID();
    const id = randomBytes(32).toString("hex");
    const top = `edgeshift-unit-${randomBytes(4).toString("hex")}`;
    const dir = await cgroup(top, "kubepods", "besteffort", `pod${uid}`, id);
    // A sibling container of another pod with the same layout is not it.
    await cgroup(
      top,
      "kubepods",
      "besteffort",
      `pod${randomUUID()}`,
      randomBytes(32).toString("hex"),
    );
    const file = join("/tmp", `${top}.n`);
    await counter(dir, file);
    await until("counting", async () => ((await count(file)) > 3 ? true : undefined));

    const cg = await findContainerCgroup(ROOT, uid, `containerd://${id}`);
    expect(cg).toEqual({ version: 1, dir, podDir: dirname(dir) });
    await setFrozen(cg, true);
    expect(await freezerState(cg)).toBe("FROZEN");
    const at = await count(file);
    await sleep(300);
    expect(await count(file)).toBe(at);
    await setFrozen(cg, false);
    expect(await freezerState(cg)).toBe("THAWED");
    await until("counting on", async () => ((await count(file)) > at ? true : undefined));
  });

  it("finds a systemd-driver container (cri-containerd-<id>.scope in a pod slice)", async () => {
    const uid = randomUUID();
    const id = randomBytes(32).toString("hex");
    const top = `edgeshift-unit-${randomBytes(4).toString("hex")}.slice`;
    const podSlice = `kubepods-besteffort-pod${uid.replaceAll("-", "_")}.slice`;
    const dir = await cgroup(
      top,
      "kubepods-besteffort.slice",
      podSlice,
      `cri-containerd-${id}.scope`,
    );
    expect(await findContainerCgroup(ROOT, uid, id)).toEqual({
      version: 1,
      dir,
      podDir: dirname(dir),
    });
  });

  it("says so when the container has no cgroup (restarted or gone)", async () => {
    const uid = randomUUID();
    const top = `edgeshift-unit-${randomBytes(4).toString("hex")}`;
    await cgroup(top, "kubepods", `pod${uid}`, randomBytes(32).toString("hex"));
    await expect(findContainerCgroup(ROOT, uid, randomBytes(32).toString("hex"))).rejects.toThrow(
      /no cgroup for container .* of pod/,
    );
  });

  it("a SIGKILL to a frozen process takes effect at the thaw, and the process runs no further", async () => {
    const { file, p, cg } = await podContainer();
    if (!p) throw new Error("no counter");
    await setFrozen(cg, true);
    const at = await count(file);
    const exited = new Promise<string | null>((r) => p.once("exit", (_c, sig) => r(sig)));
    p.kill("SIGKILL");
    await sleep(300);
    expect(p.exitCode === null && p.signalCode === null, "still there while frozen").toBe(true);
    await setFrozen(cg, false);
    expect(await exited).toBe("SIGKILL");
    expect(await count(file)).toBe(at);
  });

  // The runtime's side is scripted here: the freezer writes containerd makes
  // around a kubelet checkpoint, in the order measured on the real nodes
  // (test/nodes/kubelet-checkpoint.test.ts runs the real thing).
  const runtime =
    (dir: string, resumeAfterMs: number, pauseRetries = false) =>
    async () => {
      const state = (v: string) => writeFile(join(dir, "freezer.state"), v);
      if (pauseRetries) {
        // runc's pause thaws now and then while the cgroup stays FREEZING.
        await state("FROZEN");
        await state("THAWED");
        await sleep(10);
      }
      await state("FROZEN"); // containerd pauses it
      await sleep(60);
      await state("THAWED"); // CRIU holds the tasks by ptrace
      await sleep(60);
      await state("FROZEN"); // CRIU done: as it found it
      await sleep(resumeAfterMs);
      await state("THAWED"); // containerd resumes it after packing the rootfs diff
      return "archive";
    };

  it("holds the container from the end of the dump through the runtime's resume, and thaws its pod", async () => {
    const { dir, file, cg } = await podContainer();
    let atDump = -1;
    const held = await checkpointHeld(cg, async () => {
      const call = runtime(dir, 100);
      const out = call();
      // The count while CRIU's dump ends (the second FROZEN).
      await sleep(150);
      atDump = await count(file);
      return out;
    });
    expect(held.value).toBe("archive");
    expect(held.gapMs).toBe(0);
    // (A v1 freeze may show FREEZING on its way: the same as FROZEN here.)
    const seen = held.states
      .map((x) => (x.split(" ")[1] === "FREEZING" ? "FROZEN" : x.split(" ")[1]))
      .filter((x, k, all) => k === 0 || x !== all[k - 1]);
    expect(seen, held.states.join()).toEqual(["THAWED", "FROZEN", "THAWED", "FROZEN"]);
    expect(await freezerState(cg)).toBe("FROZEN");
    expect((await readFile(join(cg.podDir, "freezer.state"), "utf8")).trim()).toBe("THAWED");
    await sleep(300);
    expect(await count(file)).toBe(atDump);
    await setFrozen(cg, false);
    await until("counting on", async () => ((await count(file)) > atDump ? true : undefined));
  });

  it("freezes at once and reports the gap when the runtime resumed before it could be held", async () => {
    const { dir, cg } = await podContainer();
    // One FROZEN phase only (the end of the dump not seen apart from the pause).
    const held = await checkpointHeld(cg, async () => {
      await writeFile(join(dir, "freezer.state"), "FROZEN");
      await sleep(60);
      await writeFile(join(dir, "freezer.state"), "THAWED");
      await sleep(40);
      return "archive";
    });
    expect(held.gapMs).toBeGreaterThanOrEqual(30);
    expect(await freezerState(cg)).toBe("FROZEN");
  });

  it("leaves the container and its pod running when the checkpoint fails", async () => {
    const { dir, cg } = await podContainer(false);
    await expect(
      checkpointHeld(cg, async () => {
        await runtime(dir, 50)();
        throw new Error("criu failed");
      }),
    ).rejects.toThrow("criu failed");
    expect(await freezerState(cg)).toBe("THAWED");
    expect((await readFile(join(cg.podDir, "freezer.state"), "utf8")).trim()).toBe("THAWED");
  });

  it("finishes a hold a killed agent left half-done: the container held by itself, its pod thawed", async () => {
    const { file, cg } = await podContainer();
    expect(await recoverHold(cg)).toBe(false);
    // Killed right after freezing the pod's cgroup.
    await writeFile(join(cg.podDir, "freezer.state"), "FROZEN");
    await until("the pod frozen", async () =>
      (await readFile(join(cg.podDir, "freezer.state"), "utf8")).trim() === "FROZEN"
        ? true
        : undefined,
    );
    const at = await count(file);
    expect(await selfFrozen(cg)).toBe(false);
    expect(await recoverHold(cg)).toBe(true);
    expect(await selfFrozen(cg)).toBe(true);
    expect((await readFile(join(cg.podDir, "freezer.state"), "utf8")).trim()).toBe("THAWED");
    await sleep(200);
    expect(await count(file)).toBe(at);
  });

  it("takes runc's pause retries (FREEZING, THAWED, ...) for one pause, and freezes the pod only after CRIU's own thaw", async () => {
    // Seen on the real nodes about one checkpoint in six with a forking
    // workload: FREEZING, THAWED, FROZEN (the pause done), THAWED (CRIU),
    // FROZEN (CRIU done). The kernel cannot be made to stay FREEZING on
    // demand, so the runtime's writes are replayed into plain files here.
    const d = await mkdtemp(join(tmpdir(), "edgeshift-freezer-"));
    files.push(d);
    const cg = { version: 1 as const, dir: join(d, "ctr"), podDir: d };
    await mkdir(cg.dir);
    const own = (v: string) => writeFile(join(cg.dir, "freezer.state"), v);
    const pod = async () => (await readFile(join(d, "freezer.state"), "utf8")).trim();
    await own("THAWED");
    await writeFile(join(d, "freezer.state"), "THAWED");
    let podAtCriu = "";
    const held = await checkpointHeld(cg, async () => {
      await own("FREEZING");
      await sleep(20);
      await own("THAWED"); // runc thaws between tries
      await sleep(20);
      await own("FREEZING");
      await sleep(20);
      await own("FROZEN"); // the pause done
      await sleep(30);
      await own("THAWED"); // CRIU has seized the tasks
      await sleep(30);
      podAtCriu = await pod();
      await own("FROZEN"); // CRIU done
      await sleep(30);
      const podHeld = await pod();
      await own("THAWED"); // containerd resumes
      return podHeld;
    });
    expect(podAtCriu, held.states.join(", ")).toBe("THAWED");
    expect(held.value).toBe("FROZEN");
    expect(held.gapMs).toBe(0);
    expect((await readFile(join(cg.dir, "freezer.state"), "utf8")).trim()).toBe("FROZEN");
    expect(await pod()).toBe("THAWED");
  });
});
