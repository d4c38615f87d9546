// The real kubelet's checkpoint API (v1.37, containerd 2.x, runc, CRIU) as the
// edge agent's client (migration/kubelet/client.ts) sees it, with real
// ServiceAccount tokens: the kubelet authenticates them with TokenReview and
// authorises `create nodes/checkpoint` with SubjectAccessReview.
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkpointHeld,
  findContainerCgroup,
  freezerState,
} from "../../migration/agent/freezer.ts";
import { validateArchive } from "../../migration/archive/validate.ts";
import { CheckpointError, checkpoint } from "../../migration/kubelet/client.ts";
import { waitUntil } from "../cluster/process.ts";
import {
  archivesOn,
  containerId,
  containerPids,
  freezeContainer,
  node,
  reachFromHost,
} from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const NS = "kubelet-api";
const ROLE = "edgeshift-test-checkpointer";
const POD = "sleeper";
// Counts in its shell's memory and writes each number to a file of its own
// rootfs (carried in the checkpoint's rootfs-diff.tar) ten times a second.
const COUNTER = "counter";
const COUNT = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done";

let dir: string;
let relay: Awaited<ReturnType<typeof reachFromHost>>;
let ca: string;
const tokens = { allowed: "", bystander: "" };
const edge = () => node(cluster().nodes[0]?.name ?? "");

const kubelet = (token: string, over: Partial<Parameters<typeof checkpoint>[1]> = {}) => ({
  host: "127.0.0.1",
  port: relay.port,
  // The kubelet's serving certificate names the node (and its IP), signed by the cluster CA.
  servername: edge().name,
  token,
  ca,
  timeoutSeconds: 30,
  ...over,
});
const target = (pod = POD, container = "main") => ({ namespace: NS, pod, container });

async function failure(p: Promise<unknown>): Promise<CheckpointError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CheckpointError) return err;
    throw err;
  }
  throw new Error("expected the checkpoint call to fail");
}

async function saToken(name: string): Promise<string> {
  const { core } = clients();
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name } } });
  const tr = await core.createNamespacedServiceAccountToken({
    name,
    namespace: NS,
    body: { spec: { expirationSeconds: 3600, audiences: [] } },
  });
  return tr.status?.token ?? "";
}

/** The pid of the edge node's containerd (its config file is in the node's directory). */
async function containerdPid(): Promise<number> {
  const want = join(edge().dir, "containerd.toml");
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const argv = (await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (argv[0]?.endsWith("/containerd") && argv.includes(want)) return Number(e);
  }
  throw new Error(`no containerd with ${want}`);
}

async function rawStatus(path: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port: relay.port,
      servername: edge().name,
      method: "POST",
      path,
      ca,
      headers: { authorization: `Bearer ${token}` },
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  const { core, kc } = clients();
  dir = await mkdtemp(join(tmpdir(), "edgeshift-kubelet-api-"));
  await core.createNamespace({ body: { metadata: { name: NS } } });
  // Pods are admitted once the controller manager made the namespace's default ServiceAccount.
  await waitUntil(
    `the default ServiceAccount of ${NS}`,
    async () =>
      (await core.readNamespacedServiceAccount({ name: "default", namespace: NS }).catch(() => {}))
        ? true
        : undefined,
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  await apply(busyboxPod(NS, POD, edge().name, "sleep 3600"));
  await apply(busyboxPod(NS, COUNTER, edge().name, COUNT));
  tokens.allowed = await saToken("checkpointer");
  tokens.bystander = await saToken("bystander");
  // Exactly what the agent holds: create on nodes/checkpoint, nothing else.
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createClusterRole({
    body: {
      metadata: { name: ROLE },
      rules: [{ apiGroups: [""], resources: ["nodes/checkpoint"], verbs: ["create"] }],
    },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: ROLE },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: ROLE },
      subjects: [{ kind: "ServiceAccount", name: "checkpointer", namespace: NS }],
    },
  });
  // The API server's authorizer has the binding before the kubelet asks it.
  await waitUntil(
    "the checkpointer's binding in the authorizer",
    async () => {
      const out = await kubectl([
        "auth",
        "can-i",
        "create",
        "nodes",
        "--subresource=checkpoint",
        `--as=system:serviceaccount:${NS}:checkpointer`,
      ]).catch(() => "no");
      return out.trim() === "yes" ? true : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 200 },
  );
  const cl = kc.getCurrentCluster();
  ca = cl?.caData
    ? Buffer.from(cl.caData, "base64").toString("utf8")
    : await readFile(cl?.caFile ?? "", "utf8");
  relay = await reachFromHost(edge().ip, 10250, dir);
  await waitForPod(NS, POD, "Ready", podReady);
  await waitForPod(NS, COUNTER, "Ready", podReady);
}, 180_000);

afterAll(async () => {
  const { core, kc } = clients();
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.deleteClusterRoleBinding({ name: ROLE }).catch(() => {});
  await rbac.deleteClusterRole({ name: ROLE }).catch(() => {});
  for (const p of [POD, COUNTER])
    for (const n of await archivesOn(edge().name, NS, p))
      await rm(join(edge().checkpointDir, n), { force: true });
  await core.deleteNamespace({ name: NS }).catch(() => {});
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the real kubelet's checkpoint API with real ServiceAccount tokens", () => {
  it("a ServiceAccount allowed to create nodes/checkpoint gets a containerd archive in /var/lib/kubelet/checkpoints", async () => {
    const before = await archivesOn(edge().name, NS, POD);
    const t0 = performance.now();
    const archive = await checkpoint(target(), kubelet(tokens.allowed));
    const ms = performance.now() - t0;
    // The path is the node's: the kubelet's root dir, as the agent (hostPath) sees it.
    expect(archive.startsWith(`/var/lib/kubelet/checkpoints/checkpoint-${POD}_${NS}-main-`)).toBe(
      true,
    );
    expect(archive).toMatch(/-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\.tar$/);
    const onHost = join(edge().checkpointDir, basename(archive));
    const st = await stat(onHost);
    console.log(
      `[measure] real kubelet checkpoint of a busybox sleep: ${ms.toFixed(0)} ms, ${st.size} bytes, mode ${(st.mode & 0o777).toString(8)}`,
    );
    // Process memory: readable by root only.
    expect(st.mode & 0o077).toBe(0);
    expect(await archivesOn(edge().name, NS, POD)).toEqual([...before, basename(archive)].sort());
    const info = await validateArchive(onHost, { checkpointDir: edge().checkpointDir });
    expect(info.metadata).toMatchObject({ containerName: "main", podName: POD, namespace: NS });
    expect(info.metadata.baseImage).toMatch(/busybox/);
    // The container keeps running: the checkpoint API never stops it.
    const pod = await waitForPod(NS, POD, "Ready", podReady);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    await rm(onHost);
  });

  it("a ServiceAccount without that permission is Forbidden (403)", async () => {
    const err = await failure(checkpoint(target(), kubelet(tokens.bystander)));
    expect([err.reason, err.status]).toEqual(["Forbidden", 403]);
    expect(err.message).not.toContain(tokens.bystander);
  });

  it("a token the API server does not know is Unauthorized (401)", async () => {
    for (const t of ["not-a-real-token", `${tokens.allowed}x`]) {
      const err = await failure(checkpoint(target(), kubelet(t)));
      expect([err.reason, err.status]).toEqual(["Unauthorized", 401]);
      expect(err.message).not.toContain(t);
    }
  });

  it("an unknown pod or container is CheckpointNotEnabled (404)", async () => {
    const k = kubelet(tokens.allowed);
    const pod = await failure(checkpoint(target("nope"), k));
    expect([pod.reason, pod.status]).toEqual(["CheckpointNotEnabled", 404]);
    const ctr = await failure(checkpoint(target(POD, "nope"), k));
    expect([ctr.reason, ctr.status]).toEqual(["CheckpointNotEnabled", 404]);
    console.log(`[measure] kubelet 404 bodies: pod "${pod.message}"; container "${ctr.message}"`);
    expect(await archivesOn(edge().name, NS, POD)).toEqual([]);
  });

  it("answers a timeout that does not parse without checkpointing", async () => {
    const r = await rawStatus(`/checkpoint/${NS}/${POD}/main?timeout=soon`, tokens.allowed);
    console.log(`[measure] kubelet answer to ?timeout=soon: ${r.status} ${r.body.trim()}`);
    expect(r.status).toBe(404);
    expect(await archivesOn(edge().name, NS, POD)).toEqual([]);
  });

  it("a checkpoint slower than the client's deadline is a Timeout", async () => {
    // containerd stopped (SIGSTOP) holds the kubelet's CRI call: the answer
    // cannot come before the client's deadline, whatever the machine's load.
    const pid = await containerdPid();
    process.kill(pid, "SIGSTOP");
    let err: CheckpointError;
    const t0 = performance.now();
    try {
      err = await failure(
        checkpoint(target(), kubelet(tokens.allowed, { requestTimeoutMs: 2000 })),
      );
    } finally {
      process.kill(pid, "SIGCONT");
    }
    const ms = performance.now() - t0;
    expect(err.reason).toBe("Timeout");
    expect(err.message).toMatch(/did not answer within 2000 ms/);
    expect(ms).toBeGreaterThanOrEqual(2000);
    expect(ms).toBeLessThan(10_000);
    // The client gone, the kubelet cancels its CRI call ("context canceled" in
    // its log); containerd, resumed, drops it: the next checkpoint succeeds and
    // is the only archive.
    const archive = await checkpoint(target(), kubelet(tokens.allowed));
    expect(await archivesOn(edge().name, NS, POD)).toEqual([basename(archive)]);
  });

  it("refuses a container frozen beforehand; the agent holds one frozen at the state the checkpoint captured, and a deleted one dies without running again", async () => {
    // What a Freeze hand-off rests on. containerd pauses the container for
    // the dump itself (a container already frozen is "not running" to it) and
    // resumes it after packing the rootfs diff; the agent holds it frozen
    // from CRIU's end on (migration/agent/freezer.ts), so it never runs again.
    const pod = await waitForPod(NS, COUNTER, "Ready", podReady);
    const id = containerId(pod, "main");
    const [pid] = await containerPids(id);
    const count = async () => Number((await readFile(`/proc/${pid}/root/tmp/n`, "utf8")).trim());
    await waitUntil("the counter past 5", async () => ((await count()) > 5 ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    // 1. Frozen beforehand: refused, nothing written.
    await freezeContainer(id, true);
    const refused = await failure(checkpoint(target(COUNTER), kubelet(tokens.allowed))).finally(
      () => freezeContainer(id, false),
    );
    expect(refused.message).toMatch(/OCI runtime pause failed: container not running/);
    expect(await archivesOn(edge().name, NS, COUNTER)).toEqual([]);

    // 2. Held through the checkpoint.
    const cg = await findContainerCgroup("/sys/fs/cgroup", pod.metadata?.uid ?? "", id);
    const t0 = performance.now();
    const held = await checkpointHeld(cg, () =>
      checkpoint(target(COUNTER), kubelet(tokens.allowed)),
    );
    const ms = performance.now() - t0;
    expect(held.gapMs, held.states.join(", ")).toBe(0);
    expect(await freezerState(cg)).toBe("FROZEN");
    // The pod's cgroup is thawed again: only the container is held.
    expect((await readFile(join(cg.podDir, "freezer.state"), "utf8")).trim()).toBe("THAWED");
    const heldAt = await count();
    await new Promise((r) => setTimeout(r, 500));
    expect(await count()).toBe(heldAt);
    // The checkpoint holds exactly that state.
    const onHost = join(edge().checkpointDir, basename(held.value));
    const inArchive = await new Promise<string>((resolve, reject) => {
      execFile(
        "sh",
        ["-c", 'tar -xOf "$1" rootfs-diff.tar | tar -xzO tmp/n', "sh", onHost],
        (err, out) => (err ? reject(err) : resolve(out.trim())),
      );
    });
    expect(Number(inArchive)).toBe(heldAt);
    await rm(onHost);

    // 3. Deleted while held: gone at the kubelet's SIGKILL, without another count.
    const t1 = performance.now();
    // (A frozen task cannot die: had runc not thawed it for the SIGKILL, this would time out.)
    await kubectl(["-n", NS, "delete", "pod", COUNTER, "--grace-period=1", "--timeout=60s"]);
    const goneMs = performance.now() - t1;
    expect(await containerPids(id).catch(() => [])).toEqual([]);
    console.log(
      `[measure] containerd's freezer states during a kubelet checkpoint (ms since the call): ${held.states.join(", ")}; held at count ${heldAt} (the archive's too), gap ${held.gapMs} ms, call ${ms.toFixed(0)} ms; deleted while held (grace 1 s): gone in ${goneMs.toFixed(0)} ms`,
    );
  });
});
