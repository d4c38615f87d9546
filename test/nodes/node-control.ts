// Acting on the real nodes from a test, the way an operator of the machine
// would: a container's processes found through its cgroup (the nodes share the
// host's pid namespace) and killed or frozen, the operator's leader-election
// Lease held so no replica leads, the edge node's traffic to a host blocked with
// iptables in the node's network namespace, and the kubelet's port reached from
// the host through a relay into the cluster network.
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { CoordinationV1Api, V1MicroTime, type V1Pod } from "@kubernetes/client-node";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { type HostRelay, relayTcpToUnix } from "../cluster/forward.ts";
import { criuHoldFile, nodeHandle } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";
import { clients, cluster } from "./support.ts";

const run = promisify(execFile);
export const LEASE = "edgeshift-operator";
const HOLDER = "edgeshift-test-holds-the-lease";

export function node(name: string) {
  const a = cluster().nodes.find((n) => n.name === name);
  if (!a) throw new Error(`no node ${name} in the cluster`);
  return nodeHandle(a);
}

export function containerId(pod: V1Pod, container: string): string {
  const id = pod.status?.containerStatuses?.find((c) => c.name === container)?.containerID ?? "";
  const m = /^[a-z]+:\/\/([0-9a-f]{64})$/.exec(id);
  if (!m?.[1]) throw new Error(`${pod.metadata?.name}/${container} has no running container`);
  return m[1];
}

/** The container's cgroup directory in one v1 hierarchy (pids, freezer, ...). */
export async function containerCgroup(hierarchy: string, id: string): Promise<string> {
  const root = join("/sys/fs/cgroup", hierarchy);
  const walk = async (d: string, depth: number): Promise<string | undefined> => {
    if (depth > 6) return undefined;
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name === id) return join(d, e.name);
      if (depth === 0 && !e.name.startsWith("edgeshift-")) continue;
      const found = await walk(join(d, e.name), depth + 1);
      if (found) return found;
    }
    return undefined;
  };
  const found = await walk(root, 0);
  if (!found) throw new Error(`no ${hierarchy} cgroup for container ${id}`);
  return found;
}

export async function containerPids(id: string): Promise<number[]> {
  const dir = await containerCgroup("pids", id);
  return (await readFile(join(dir, "cgroup.procs"), "utf8"))
    .split("\n")
    .filter(Boolean)
    .map(Number);
}

/** SIGKILL to every process of the container: a crash, as the OOM killer would do it. */
export async function killContainer(pod: V1Pod, container: string): Promise<number[]> {
  const pids = await containerPids(containerId(pod, container));
  for (const p of pids) {
    try {
      process.kill(p, "SIGKILL");
    } catch {}
  }
  return pids;
}

/** Freezes (or thaws) the container's processes through the v1 freezer. */
export async function freezeContainer(id: string, frozen: boolean): Promise<void> {
  const dir = await containerCgroup("freezer", id);
  const want = frozen ? "FROZEN" : "THAWED";
  await writeFile(join(dir, "freezer.state"), want);
  await waitUntil(
    `container ${id.slice(0, 12)} ${want}`,
    async () =>
      (await readFile(join(dir, "freezer.state"), "utf8")).trim() === want ? true : undefined,
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

export async function podsWith(namespace: string, selector: string): Promise<V1Pod[]> {
  return (
    await clients().core.listNamespacedPod({ namespace, labelSelector: selector })
  ).items.filter((p) => !p.metadata?.deletionTimestamp);
}

/** The edge agent's pod on `nodeName`, running. */
export async function agentPod(nodeName: string): Promise<V1Pod> {
  return waitUntil(
    `the agent pod on ${nodeName} running`,
    async () =>
      (await podsWith(SYSTEM_NAMESPACE, "app.kubernetes.io/component=agent")).find(
        (p) =>
          p.spec?.nodeName === nodeName &&
          p.status?.containerStatuses?.find((c) => c.name === "agent")?.state?.running,
      ),
    { timeoutMs: 120_000, intervalMs: 250 },
  );
}

export function restarts(pod: V1Pod, container: string): number {
  return pod.status?.containerStatuses?.find((c) => c.name === container)?.restartCount ?? 0;
}

function coordination() {
  return clients().kc.makeApiClient(CoordinationV1Api);
}

/** The operator pod holding the Lease now (the leader). */
export async function operatorLeader(): Promise<V1Pod> {
  return waitUntil(
    "an operator leader",
    async () => {
      const lease = await coordination()
        .readNamespacedLease({ name: LEASE, namespace: SYSTEM_NAMESPACE })
        .catch(() => undefined);
      const holder = lease?.spec?.holderIdentity;
      if (!holder || holder === HOLDER) return undefined;
      const pod = await clients()
        .core.readNamespacedPod({ name: holder, namespace: SYSTEM_NAMESPACE })
        .catch(() => undefined);
      return pod?.status?.containerStatuses?.[0]?.state?.running ? pod : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
}

/**
 * Takes the operator's Lease for the test (an hour long), so no replica leads:
 * standbys wait for it, and a leader loses it at its next renewal. Resolves once
 * the Lease is the test's.
 */
export async function holdOperatorLease(): Promise<void> {
  const api = coordination();
  await waitUntil(
    "the operator's Lease held by the test",
    async () => {
      const lease = await api.readNamespacedLease({ name: LEASE, namespace: SYSTEM_NAMESPACE });
      try {
        await api.replaceNamespacedLease({
          name: LEASE,
          namespace: SYSTEM_NAMESPACE,
          body: {
            metadata: {
              name: LEASE,
              namespace: SYSTEM_NAMESPACE,
              resourceVersion: lease.metadata?.resourceVersion,
            },
            spec: {
              ...lease.spec,
              holderIdentity: HOLDER,
              leaseDurationSeconds: 3600,
              renewTime: new V1MicroTime(),
              acquireTime: new V1MicroTime(),
            },
          },
        });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === 409) return undefined;
        throw err;
      }
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

/** Hands the Lease back as a leader releasing it would: the next replica to retry takes it. */
export async function releaseOperatorLease(): Promise<void> {
  const api = coordination();
  await waitUntil(
    "the operator's Lease released",
    async () => {
      const lease = await api.readNamespacedLease({ name: LEASE, namespace: SYSTEM_NAMESPACE });
      if (lease.spec?.holderIdentity !== HOLDER) return true;
      try {
        await api.replaceNamespacedLease({
          name: LEASE,
          namespace: SYSTEM_NAMESPACE,
          body: {
            metadata: {
              name: LEASE,
              namespace: SYSTEM_NAMESPACE,
              resourceVersion: lease.metadata?.resourceVersion,
            },
            spec: {
              ...lease.spec,
              holderIdentity: "",
              leaseDurationSeconds: 1,
              renewTime: new V1MicroTime(),
            },
          },
        });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === 409) return undefined;
        throw err;
      }
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

/**
 * Holds the Lease and crashes the leader (SIGKILL to its container): from then
 * on no operator replica acts until `releaseOperatorLease`. Returns the killed pod.
 */
export async function stopOperator(): Promise<V1Pod> {
  const leader = await operatorLeader();
  await holdOperatorLease();
  await killContainer(leader, "operator");
  return leader;
}

/**
 * iptables in the node's network namespace: REJECT its (and its pods') TCP to
 * host:port (a peer that is down), or DROP it (a dead link: connections hang).
 */
export function blockTraffic(
  nodeName: string,
  host: string,
  port: number,
  how: "REJECT" | "DROP" = "REJECT",
) {
  const n = node(nodeName);
  const target = how === "REJECT" ? ["REJECT", "--reject-with", "tcp-reset"] : ["DROP"];
  const rule = (chain: string) => [
    chain,
    "-d",
    host,
    "-p",
    "tcp",
    "--dport",
    String(port),
    "-j",
    ...target,
  ];
  return {
    async block() {
      for (const chain of ["OUTPUT", "FORWARD"]) await n.exec(["iptables", "-I", ...rule(chain)]);
    },
    async unblock() {
      for (const chain of ["OUTPUT", "FORWARD"]) {
        await n.exec(["iptables", "-D", ...rule(chain)]).catch(() => {});
      }
    },
  };
}

/** A 127.0.0.1 port that reaches `host:port` on the cluster network (e.g. a kubelet's 10250). */
export async function reachFromHost(
  host: string,
  port: number,
  dir: string,
): Promise<HostRelay & { port: number }> {
  const [first] = cluster().nodes;
  if (!first) throw new Error("no nodes");
  const sock = join(dir, `relay-${host}-${port}-${process.pid}.sock`);
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      "nsenter",
      "-t",
      String(first.clusterPid),
      "-n",
      "--",
      process.execPath,
      join(import.meta.dirname, "../cluster/forward.ts"),
      sock,
      host,
      String(port),
    ],
    { stdio: "ignore" },
  );
  await waitUntil(`relay to ${host}:${port}`, async () => (existsSync(sock) ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 50,
  });
  const relay = await relayTcpToUnix(sock);
  return {
    port: relay.port,
    async close() {
      await relay.close();
      child.kill("SIGKILL");
    },
  };
}

/** What the checkpoint registry answers to HEAD on a manifest (by tag or digest). */
export async function manifestStatus(repository: string, reference: string): Promise<number> {
  const reg = cluster().registry;
  const name = repository.slice(repository.indexOf("/") + 1);
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString("base64");
  const r = await fetch(`${reg.hostUrl}/v2/${name}/manifests/${reference}`, {
    method: "HEAD",
    headers: {
      authorization: `Basic ${auth}`,
      accept: "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
    },
  });
  return r.status === 200 ? 200 : r.status;
}

/** Files in the node's /var/lib/kubelet/checkpoints whose name is for `pod` in `namespace`. */
export async function archivesOn(nodeName: string, namespace: string, pod: string) {
  const dir = node(nodeName).checkpointDir;
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(`checkpoint-${pod}_${namespace}-`));
}

/**
 * Holds the node's next CRIU calls before CRIU starts (the wrapper of
 * test/cluster/install-criu.sh waits while the hold file exists), so a test can
 * act while the kubelet's checkpoint call is open however fast the dump would be.
 * The returned function releases the hold.
 */
export async function holdCriu(nodeName: string): Promise<() => Promise<void>> {
  const a = cluster().nodes.find((n) => n.name === nodeName);
  if (!a) throw new Error(`no node ${nodeName}`);
  const file = criuHoldFile(a.dir);
  await writeFile(file, "");
  return () => rm(file, { force: true });
}

/**
 * Resolves once the runtime's CRIU call waits in the hold of holdCriu(): the
 * process found is the wrapper's shell, CRIU proper has not started.
 */
export async function waitForHeldCriu(nodeName: string, timeoutMs = 60_000): Promise<number> {
  const pid = await waitForCriu(nodeName, timeoutMs);
  const argv0 = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0")[0] ?? "";
  if (!argv0.endsWith("sh"))
    throw new Error(
      `CRIU (${argv0}) ran on ${nodeName} without waiting for the hold: does containerd pass EDGESHIFT_TEST_CRIU_HOLD on?`,
    );
  return pid;
}

/**
 * Resolves once a CRIU process runs on the node: the
 * kubelet's checkpoint call is then inside containerd + runc, and its answer
 * has not been written yet.
 */
export async function waitForCriu(nodeName: string, timeoutMs = 60_000): Promise<number> {
  const a = cluster().nodes.find((n) => n.name === nodeName);
  if (!a) throw new Error(`no node ${nodeName}`);
  // Every process of a node (containerd's shims and what they run, CRIU among
  // them) is in the node's cgroup tree; the namespace holder is in <root>/system.
  // (Not the mount namespace: CRIU leaves it for one of its own as it starts.)
  const pidsCgroup = (text: string) => /^\d+:pids:(.*)$/m.exec(text)?.[1] ?? "";
  const holder = pidsCgroup(await readFile(`/proc/${a.pid}/cgroup`, "utf8"));
  const root = holder.replace(/\/system$/, "/");
  if (!root.startsWith("/edgeshift-")) throw new Error(`node ${nodeName}: cgroup ${holder}`);
  return waitUntil(
    `criu running on ${nodeName}`,
    async () => {
      // runc runs CRIU as `criu swrk <fd>` (here through a dynamic loader, so the
      // name is in argv, not in comm); pgrep scans /proc far faster than a loop here.
      const { stdout } = await run("pgrep", ["-f", "criu swrk"]).catch(() => ({ stdout: "" }));
      for (const pid of stdout.split("\n").filter(Boolean)) {
        const cg = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
        if (pidsCgroup(cg).startsWith(root)) return Number(pid);
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 1 },
  );
}

/**
 * CRIU's own errors for a failed checkpoint on `nodeName`: containerd passes on
 * only its dump log's path (in a Migration's message), and the log is on the node.
 */
export async function criuDumpErrors(
  nodeName: string,
  message: string | undefined,
): Promise<string> {
  const path = /path= (\S+criu-dump\.log)/.exec(message ?? "")?.[1];
  const a = cluster().nodes.find((n) => n.name === nodeName);
  if (!path || !a) return "(no dump log named)";
  return nodeHandle(a)
    .exec(["sh", "-c", `grep -E 'Error|Warn' "${path}" | grep -v RLIMIT_NOFILE | head -n 8`])
    .then((r) => r.stdout.trim())
    .catch(() => "(the dump log is gone)");
}
