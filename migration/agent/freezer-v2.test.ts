// The same freezer on the kernel's cgroup v2 freezer (cgroup.freeze and
// cgroup.events): these machines run cgroup v1 for their controllers, with the
// unified (v2) hierarchy mounted beside them at /sys/fs/cgroup/unified, where
// the v2 freezer works without any controller. A process put in a cgroup laid
// out as the kubelet's is found in the v2 tree, held at the runtime's
// checkpoint sequence as written under cgroup v2 (1 for the pause, 0 when CRIU
// has seized the tasks, 1 when CRIU is done, 0 for containerd's resume),
// recovered from a half-done hold, and killed while frozen without running on.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  cgroupVersion,
  checkpointHeld,
  findContainerCgroup,
  freezerState,
  recoverHold,
  selfFrozen,
  setFrozen,
} from "./freezer.ts";

// The unified tree beside v1 controllers (these machines), or a v2-only host's root.
const ROOT = existsSync("/sys/fs/cgroup/unified/cgroup.procs")
  ? "/sys/fs/cgroup/unified"
  : "/sys/fs/cgroup";
const made: string[] = [];
const procs: ChildProcess[] = [];
const files: string[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) p.kill("SIGKILL");
  for (const f of files.splice(0)) await rm(f, { force: true });
  for (const d of made.splice(0).reverse()) {
    await writeFile(join(d, "cgroup.freeze"), "0").catch(() => {});
    // What is left in it (a shell's sleep) goes with it.
    await writeFile(join(d, "cgroup.kill"), "1").catch(() => {});
    for (let i = 0; i < 100; i++) {
      if (
        await rmdir(d).then(
          () => true,
          () => false,
        )
      )
        break;
      await sleep(20);
    }
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const count = async (file: string) =>
  Number((await readFile(file, "utf8").catch(() => "0")).trim());

async function until<T>(what: string, f: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = await f();
    if (v !== undefined) return v;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** `<top>/kubepods/pod<uid>/<id>` in the v2 tree, a shell counting into a file in it. */
async function podContainer() {
  const uid = randomUUID();
  const id = randomBytes(32).toString("hex");
  const top = `edgeshift-unit2-${randomBytes(4).toString("hex")}`;
  let dir = ROOT;
  for (const part of [top, "kubepods", `pod${uid}`, id]) {
    dir = join(dir, part);
    await mkdir(dir);
    made.push(dir);
  }
  const file = join("/tmp", `${top}.n`);
  files.push(file);
  const p = spawn(
    "sh",
    ["-c", `i=0; while :; do i=$((i+1)); echo $i > ${file}; sleep 0.02; done`],
    {
      stdio: "ignore",
    },
  );
  procs.push(p);
  await writeFile(join(dir, "cgroup.procs"), String(p.pid));
  await until("counting", async () => ((await count(file)) > 3 ? true : undefined));
  const cg = await findContainerCgroup(ROOT, uid, id);
  return { dir, file, p, cg };
}

describe.skipIf(!existsSync(join(ROOT, "cgroup.controllers")))(
  "the container freezer on cgroup v2",
  () => {
    it("finds the container in the v2 tree, freezes it (it stops) and thaws it (it counts on)", async () => {
      const { dir, file, cg } = await podContainer();
      expect(await cgroupVersion(ROOT)).toBe(2);
      expect(cg).toMatchObject({ version: 2, dir });
      await setFrozen(cg, true);
      expect(await freezerState(cg)).toBe("FROZEN");
      expect(await selfFrozen(cg)).toBe(true);
      const at = await count(file);
      await sleep(200);
      expect(await count(file)).toBe(at);
      await setFrozen(cg, false);
      expect(await freezerState(cg)).toBe("THAWED");
      await until("counting on", async () => ((await count(file)) > at ? true : undefined));
    });

    it("holds the container through the runtime's v2 sequence: the pod frozen at CRIU's end, the container by itself after the resume", async () => {
      const { dir, file, cg } = await podContainer();
      const own = (v: "0" | "1") => writeFile(join(dir, "cgroup.freeze"), v);
      const pod = async () => (await readFile(join(cg.podDir, "cgroup.freeze"), "utf8")).trim();
      let atDump = -1;
      let podAtCriu = "";
      const held = await checkpointHeld(cg, async () => {
        await own("1"); // containerd's pause
        await sleep(40);
        await own("0"); // CRIU has seized the tasks
        await sleep(40);
        podAtCriu = await pod();
        await own("1"); // CRIU done
        await sleep(60);
        atDump = await count(file);
        await own("0"); // containerd resumes
        await sleep(40);
        return "archive";
      });
      expect(held.value).toBe("archive");
      expect(held.gapMs).toBe(0);
      expect(podAtCriu, held.states.join(", ")).toBe("0");
      expect(held.states.map((s) => s.split(" ")[1])).toEqual(["0", "1", "0", "1"]);
      // Held by itself, its pod thawed, and it never ran after the dump's end.
      expect(await selfFrozen(cg)).toBe(true);
      expect(await pod()).toBe("0");
      await sleep(200);
      expect(await count(file)).toBe(atDump);
    });

    it("finishes a hold a killed agent left half-done: the container held by itself, its pod thawed", async () => {
      const { file, cg } = await podContainer();
      expect(await recoverHold(cg)).toBe(false);
      await writeFile(join(cg.podDir, "cgroup.freeze"), "1");
      await until("the pod frozen", async () =>
        /^frozen 1$/m.test(await readFile(join(cg.podDir, "cgroup.events"), "utf8"))
          ? true
          : undefined,
      );
      const at = await count(file);
      expect(await selfFrozen(cg)).toBe(false);
      expect(await recoverHold(cg)).toBe(true);
      expect(await selfFrozen(cg)).toBe(true);
      expect((await readFile(join(cg.podDir, "cgroup.freeze"), "utf8")).trim()).toBe("0");
      await sleep(200);
      expect(await count(file)).toBe(at);
    });

    it("a SIGKILL to a frozen process ends it without its running on (v2 delivers it while frozen)", async () => {
      const { file, p, cg } = await podContainer();
      await setFrozen(cg, true);
      const at = await count(file);
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGKILL");
      await exited;
      expect(await count(file)).toBe(at);
    });
  },
);
