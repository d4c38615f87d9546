// A cluster of real nodes leaves nothing behind when it stops: no process, no
// mount, no namespace (and with them no veth), no cgroup, no directory. Runs a
// second, one-node cluster beside the shared one, with a pod on it, and stops it.
import { existsSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { startNodeCluster } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";

async function namespaceInodes(): Promise<Set<number>> {
  const out = new Set<number>();
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    for (const kind of ["net", "mnt"]) {
      try {
        out.add((await stat(`/proc/${e}/ns/${kind}`)).ino);
      } catch {}
    }
  }
  return out;
}

describe("cluster of real nodes, torn down", () => {
  it("leaves no process, mount, namespace, cgroup or directory behind", async () => {
    const nc = await startNodeCluster({ nodes: [{ name: "solo-1" }], installCrds: false });
    let stopped = false;
    try {
      const kc = ["--kubeconfig", nc.kubeconfig];
      const { execFile } = await import("node:child_process");
      const kubectl = (args: string[]) =>
        new Promise<string>((res, rej) =>
          execFile(nc.kubectl, [...kc, ...args], (e, out, err) =>
            e ? rej(new Error(err)) : res(out),
          ),
        );
      await kubectl([
        "run",
        "sleeper",
        "--image=busybox:1.37",
        "--restart=Never",
        '--overrides={"spec":{"nodeName":"solo-1","terminationGracePeriodSeconds":30}}',
        "--command",
        "--",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 1; done",
      ]);
      await waitUntil(
        "the pod to run",
        async () =>
          (await kubectl(["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"])) === "Running"
            ? true
            : undefined,
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      const inodes: number[] = [];
      for (const pid of nc.holders) {
        for (const kind of ["net", "mnt"]) inodes.push((await stat(`/proc/${pid}/ns/${kind}`)).ino);
      }
      const cgroupProcs = await readFile(
        `/sys/fs/cgroup/pids${nc.cgroupRoots[0]}/system/cgroup.procs`,
        "utf8",
      );
      expect(cgroupProcs.trim().length).toBeGreaterThan(0);
      const dir = nc.dir;

      await nc.stop();
      stopped = true;

      expect(existsSync(dir)).toBe(false);
      const mounts = await readFile("/proc/self/mountinfo", "utf8");
      expect(mounts.includes(dir)).toBe(false);
      for (const pid of nc.holders) expect(existsSync(`/proc/${pid}`)).toBe(false);
      const live = await namespaceInodes();
      for (const ino of inodes) expect(live.has(ino)).toBe(false);
      for (const h of await readdir("/sys/fs/cgroup")) {
        for (const root of nc.cgroupRoots)
          expect(existsSync(`/sys/fs/cgroup/${h}${root}`)).toBe(false);
      }
      const left: string[] = [];
      for (const e of await readdir("/proc")) {
        if (!/^\d+$/.test(e)) continue;
        const cmd = await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "");
        if (cmd.includes(dir)) left.push(cmd.replaceAll("\0", " "));
      }
      expect(left).toEqual([]);
    } finally {
      if (!stopped) await nc.stop();
    }
  });
});
