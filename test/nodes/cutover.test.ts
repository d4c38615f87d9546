// The Migration controller's cutover on real nodes: what happens to a pod's
// owner (none, ReplicaSet, Job, StatefulSet) when the operator as installed
// (two replicas in edgeshift-system, leader election) moves one of its pods
// from edge-1 to cloud-1, and each way a migration fails before cutover,
// leaving the original running. The real kubelets run the containers, the real
// kube-controller-manager the ReplicaSet, Job and garbage collector, the real
// scheduler places the restored pod. Workloads are pinned to edge-1 by
// spec.nodeName, which the restored pod drops for a node affinity to the target.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { CoordinationV1Api, type V1Pod, Watch } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { migrationFinished } from "../../operator/api/status.ts";
import {
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationSpec,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import * as moves from "./moves.ts";
import { containerPids } from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const SYSTEM = "edgeshift-system";
const OPERATOR = "app.kubernetes.io/name=edgeshift-operator";
const TEST = "test=cutover";
const IDLE = "while true; do sleep 1; done";

const ns = () => cluster().appNamespace;
const edge = () => cluster().nodes[0]?.name ?? "";
const cloud = () => cluster().nodes[1]?.name ?? "";

// --- helpers ------------------------------------------------------------------------

const getMigration = (name: string) => moves.getMigration(ns(), name);
const createMigration = (name: string, spec: MigrationSpec) =>
  moves.createMigration(ns(), name, spec, { test: "cutover" });
const awaitMigration = (name: string, timeoutMs?: number) =>
  moves.awaitMigration(ns(), name, timeoutMs);

async function migrate(name: string, spec: MigrationSpec, timeoutMs?: number): Promise<Migration> {
  await createMigration(name, spec);
  return awaitMigration(name, timeoutMs);
}

const live = (labelSelector: string) => moves.podsOf(ns(), labelSelector);
const gone = (name: string) => moves.gone(ns(), name);
const podRecorder = () => moves.podRecorder(ns());

/** A pod template pinned to edge-1, running `script` in busybox as root. */
function template(app: string, script: string, restartPolicy = "Always") {
  const pod = busyboxPod(ns(), app, edge(), script) as {
    metadata: { labels: Record<string, string> };
    spec: Record<string, unknown>;
  };
  return {
    metadata: { labels: { ...pod.metadata.labels, test: "cutover" } },
    spec: { ...pod.spec, restartPolicy },
  };
}

function deployment(name: string) {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: ns(), labels: { test: "cutover" } },
    spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: template(name, IDLE) },
  };
}

/** edgeshift_migrations_total summed over the operator's pods, by "policy/result". */
async function migrationCounts(): Promise<Record<string, number>> {
  const ops = (
    await clients().core.listNamespacedPod({ namespace: SYSTEM, labelSelector: OPERATOR })
  ).items;
  const out: Record<string, number> = {};
  for (const op of ops) {
    if (!podReady(op)) continue;
    const text = await kubectl([
      "get",
      "--raw",
      `/api/v1/namespaces/${SYSTEM}/pods/${op.metadata?.name}:8080/proxy/metrics`,
    ]);
    for (const line of text.split("\n")) {
      const m = /^edgeshift_migrations_total\{([^}]*)\} (\d+(?:\.\d+)?)/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries(
        [...(m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
      );
      const key = `${labels.policy}/${labels.result}`;
      out[key] = (out[key] ?? 0) + Number(m[2]);
    }
  }
  return out;
}

async function leaseHolder(): Promise<string> {
  const coord = clients().kc.makeApiClient(CoordinationV1Api);
  return (
    (await coord.readNamespacedLease({ namespace: SYSTEM, name: "edgeshift-operator" })).spec
      ?.holderIdentity ?? ""
  );
}

/** Both operator replicas Ready and the Lease held by one of them. */
async function operatorSettled(): Promise<{ leader: string; pods: V1Pod[] }> {
  await kubectl(["-n", SYSTEM, "rollout", "status", "deploy/edgeshift-operator", "--timeout=180s"]);
  return waitUntil(
    "two Ready operator replicas, one of them leader",
    async () => {
      const pods = (
        await clients().core.listNamespacedPod({ namespace: SYSTEM, labelSelector: OPERATOR })
      ).items.filter((p) => !p.metadata?.deletionTimestamp);
      const leader = await leaseHolder();
      return pods.length === 2 &&
        pods.every(podReady) &&
        pods.some((p) => p.metadata?.name === leader)
        ? { leader, pods }
        : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500 },
  );
}

/** Every file of the checkpoint registry's storage: what any push would add to. */
async function registryFiles(): Promise<string[]> {
  const root = cluster().registry.storage;
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function restoreTimeoutMs(deploy: {
  spec?: { template?: { spec?: { containers?: { env?: { name: string; value?: string }[] }[] } } };
}): number {
  const v = deploy.spec?.template?.spec?.containers?.[0]?.env?.find(
    (e) => e.name === "EDGESHIFT_RESTORE_TIMEOUT",
  )?.value;
  if (!v) return 120_000;
  const m = /^(\d+)(ms|s|m)$/.exec(v);
  if (!m) throw new Error(`cannot read EDGESHIFT_RESTORE_TIMEOUT=${v}`);
  return Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] as "ms" | "s" | "m"] ?? 1);
}

// Each test's objects carry test=cutover: removed, and waited for, after each test.
afterEach(async () => {
  for (const kind of ["deployment", "statefulset", "job", "pod", "migration"]) {
    await kubectl([
      "-n",
      ns(),
      "delete",
      kind,
      "-l",
      TEST,
      "--ignore-not-found",
      "--wait=false",
      ...(kind === "job" ? ["--cascade=foreground"] : []),
    ]).catch(() => "");
  }
  await waitUntil(
    "the test's pods and Migrations to be gone",
    async () => {
      const pods = (await clients().core.listNamespacedPod({ namespace: ns() })).items.filter((p) =>
        (p.metadata?.name ?? "").startsWith("cut-"),
      );
      const migs = (
        (await clients().custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: ns(),
          labelSelector: TEST,
        })) as { items: Migration[] }
      ).items;
      return pods.length === 0 && migs.length === 0 ? true : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500 },
  );
});

// --- tests ----------------------------------------------------------------------------

describe("cutover on real nodes", () => {
  it("moves a bare pod to cloud-1 with its checkpoint, keeping its labels, and removes the original", async () => {
    const pod = busyboxPod(ns(), "cut-bare", edge(), IDLE, {
      labels: { test: "cutover", tier: "front" },
    });
    await apply(pod);
    const before = await waitForPod(ns(), "cut-bare", "Ready", podReady);
    const m = await migrate("cut-bare", { podName: "cut-bare", restorePolicy: "checkpoint" });
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status).toMatchObject({
      sourceNode: edge(),
      targetNode: cloud(),
      policy: "checkpoint",
      edgeNode: cluster().edgeNode,
    });
    expect(m.status?.conditions?.find((x) => x.type === "Succeeded")).toMatchObject({
      status: "True",
      reason: "CutOver",
    });
    expect(m.status?.conditions?.find((x) => x.type === "Restored")?.status).toBe("True");
    for (const k of ["created", "checkpointed", "restoreStarted", "restored", "cutOver"] as const)
      expect(m.status?.timestamps?.[k], k).toBeDefined();
    await gone("cut-bare");
    const after = await waitForPod(ns(), m.status?.restoredPod ?? "", "Ready", podReady);
    expect(after.spec?.nodeName).toBe(cloud());
    const own = (l: Record<string, string> | undefined) =>
      Object.fromEntries(Object.entries(l ?? {}).filter(([k]) => !k.startsWith("edgeshift.dev/")));
    expect(after.metadata?.labels?.["edgeshift.dev/migration"]).toBe("cut-bare");
    expect(own(after.metadata?.labels)).toEqual(own(before.metadata?.labels));
    expect(own(before.metadata?.labels)).toMatchObject({ app: "cut-bare", tier: "front" });
    expect((await live("app=cut-bare")).map((p) => p.metadata?.name)).toEqual([
      m.status?.restoredPod,
    ]);
  });

  it("moves a Deployment's pod: the ReplicaSet keeps one replica, on cloud-1, and creates none", async () => {
    await apply(deployment("cut-web"));
    const [orig] = await waitUntil(
      "the cut-web pod Ready",
      async () => {
        const p = await live("app=cut-web");
        return p.length === 1 && podReady(p[0]) ? p : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const rs = orig?.metadata?.ownerReferences?.find((o) => o.kind === "ReplicaSet")?.name ?? "";
    expect(rs).not.toBe("");
    const pods = await podRecorder();
    try {
      const m = await migrate("cut-web", {
        podName: orig?.metadata?.name ?? "",
        restorePolicy: "restart",
      });
      expect(m.status?.phase, m.status?.message).toBe("Succeeded");
      await gone(orig?.metadata?.name ?? "");
      // The ReplicaSet has seen the restored pod as its one replica once its status says so
      // for the generation it last synced.
      const status = await waitUntil(
        "the ReplicaSet to report one Ready replica",
        async () => {
          const r = JSON.parse(await kubectl(["-n", ns(), "get", "rs", rs, "-o", "json"])) as {
            metadata: { generation: number };
            spec: { replicas: number };
            status: {
              replicas?: number;
              readyReplicas?: number;
              availableReplicas?: number;
              observedGeneration?: number;
            };
          };
          return r.status.observedGeneration === r.metadata.generation &&
            r.status.replicas === 1 &&
            r.status.readyReplicas === 1
            ? r
            : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect(status.spec.replicas).toBe(1);
      const now = await live("app=cut-web");
      expect(now.map((p) => [p.metadata?.name, p.spec?.nodeName])).toEqual([
        [m.status?.restoredPod, cloud()],
      ]);
      expect(now[0]?.metadata?.ownerReferences?.find((o) => o.controller)?.name).toBe(rs);
      // Only the original was ever created by the ReplicaSet; the restored pod by edgeshift.
      expect(pods.createdBy(`ReplicaSet/${rs}`)).toEqual([orig?.metadata?.name]);
      expect(pods.names().filter((n) => n.startsWith("cut-web-"))).toEqual([
        orig?.metadata?.name,
        m.status?.restoredPod,
      ]);
    } finally {
      pods.stop();
    }
  });

  it("finishes a ReplicaSet cutover after the leader's process is killed in the middle of it", async () => {
    const { leader } = await operatorSettled();
    const leaderPod = await clients().core.readNamespacedPod({ namespace: SYSTEM, name: leader });
    const containerId = leaderPod.status?.containerStatuses?.[0]?.containerID ?? "";
    const restartsBefore = leaderPod.status?.containerStatuses?.[0]?.restartCount ?? 0;
    const pids = await containerPids(containerId.replace(/^\w+:\/\//, ""));
    expect(pids.length, `processes of ${leader} (${containerId})`).toBeGreaterThan(0);

    await apply(deployment("cut-web2"));
    const [orig] = await waitUntil(
      "the cut-web2 pod Ready",
      async () => {
        const p = await live("app=cut-web2");
        return p.length === 1 && podReady(p[0]) ? p : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const rs = orig?.metadata?.ownerReferences?.find((o) => o.kind === "ReplicaSet")?.name ?? "";
    const pods = await podRecorder();
    // The moment: the first status that says CuttingOver. The leader is stopped
    // (SIGSTOP) right in the watch callback, so it cannot finish while we look.
    let stoppedAt = 0;
    let onCutover: (m: Migration) => void = () => {};
    const caught = new Promise<Migration>((resolve) => {
      onCutover = resolve;
    });
    const watching = await new Watch(clients().kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns()}/${MIGRATION_PLURAL}`,
      { fieldSelector: "metadata.name=cut-web2" },
      (_t, m: Migration) => {
        if (stoppedAt || m.status?.phase !== "CuttingOver") return;
        for (const pid of pids) process.kill(pid, "SIGSTOP");
        stoppedAt = Date.now();
        onCutover(m);
      },
      () => {},
    );
    try {
      await createMigration("cut-web2", {
        podName: orig?.metadata?.name ?? "",
        restorePolicy: "restart",
      });
      const first = await Promise.race([caught, awaitMigration("cut-web2")]);
      expect(stoppedAt, `the watch saw no CuttingOver: ${first.status?.phase}`).toBeGreaterThan(0);
      const frozen = await getMigration("cut-web2");
      // Had the leader written Succeeded before it stopped, this test would not test a resume.
      expect(frozen.status?.phase, "the stopped leader had already finished").toBe("CuttingOver");
      const restored = frozen.status?.restoredPod ?? "";
      console.log(
        `[measure] leader ${leader} stopped at CuttingOver; original ${
          (await live("app=cut-web2")).some((p) => p.metadata?.name === orig?.metadata?.name)
            ? "still live"
            : "already deleted"
        }`,
      );
      for (const pid of pids) process.kill(pid, "SIGKILL");
      const m = await awaitMigration("cut-web2", 180_000);
      expect(m.status?.phase, m.status?.message).toBe("Succeeded");
      expect(Date.parse(m.status?.timestamps?.finished ?? "")).toBeGreaterThan(stoppedAt);
      expect(m.status?.restoredPod).toBe(restored);
      await gone(orig?.metadata?.name ?? "");
      const now = await live("app=cut-web2");
      expect(now.map((p) => [p.metadata?.name, p.spec?.nodeName])).toEqual([[restored, cloud()]]);
      expect(pods.createdBy(`ReplicaSet/${rs}`)).toEqual([orig?.metadata?.name]);
      expect(pods.names().filter((n) => n.startsWith("cut-web2-"))).toEqual([
        orig?.metadata?.name,
        restored,
      ]);
      // The kill was real: the kubelet restarts the leader's container.
      await waitForPod(
        SYSTEM,
        leader,
        "restarted",
        (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) > restartsBefore,
      );
    } finally {
      watching.abort();
      pods.stop();
      // Never leave a stopped operator behind.
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
    await operatorSettled();
  });

  it("moves a Job's pod: the Job counts the restored pod and completes on it", async () => {
    // The work ends when the test says so (a file in the container), not on a clock.
    const job = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: "cut-batch", namespace: ns(), labels: { test: "cutover" } },
      spec: {
        parallelism: 1,
        completions: 1,
        backoffLimit: 0,
        template: template(
          "cut-batch",
          "while [ ! -f /tmp/done ]; do sleep 0.2; done; sleep 2",
          "Never",
        ),
      },
    };
    await apply(job);
    const [orig] = await waitUntil(
      "the cut-batch pod Ready",
      async () => {
        const p = await live("batch.kubernetes.io/job-name=cut-batch");
        return p.length === 1 && podReady(p[0]) ? p : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const pods = await podRecorder();
    try {
      const m = await migrate("cut-batch", {
        podName: orig?.metadata?.name ?? "",
        restorePolicy: "restart",
      });
      expect(m.status?.phase, m.status?.message).toBe("Succeeded");
      await gone(orig?.metadata?.name ?? "");
      const restored = m.status?.restoredPod ?? "";
      const [p] = await live("batch.kubernetes.io/job-name=cut-batch");
      expect([p?.metadata?.name, p?.spec?.nodeName]).toEqual([restored, cloud()]);
      expect(p?.metadata?.ownerReferences?.find((o) => o.controller)?.kind).toBe("Job");
      await kubectl(["-n", ns(), "exec", restored, "-c", "main", "--", "touch", "/tmp/done"]);
      const done = await waitUntil(
        "the Job to complete",
        async () => {
          const j = JSON.parse(
            await kubectl(["-n", ns(), "get", "job", "cut-batch", "-o", "json"]),
          ) as {
            status: {
              succeeded?: number;
              failed?: number;
              conditions?: { type: string; status: string }[];
            };
          };
          return j.status.conditions?.some((c) => c.type === "Complete" && c.status === "True")
            ? j
            : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect(done.status.succeeded).toBe(1);
      expect(done.status.failed ?? 0).toBe(0);
      expect(pods.createdBy("Job/cut-batch")).toEqual([orig?.metadata?.name]);
      expect(pods.names().filter((n) => n.startsWith("cut-batch-"))).toEqual([
        orig?.metadata?.name,
        restored,
      ]);
    } finally {
      pods.stop();
    }
  });

  it("fails with NoTarget when only edge-1 satisfies the pod's nodeSelector, checkpointing nothing", async () => {
    const pod = busyboxPod(ns(), "cut-nowhere", edge(), IDLE, { labels: { test: "cutover" } }) as {
      spec: Record<string, unknown>;
    };
    pod.spec.nodeSelector = { "kubernetes.io/hostname": edge() };
    await apply(pod);
    const before = await waitForPod(ns(), "cut-nowhere", "Ready", podReady);
    const stored = await registryFiles();
    expect(stored.length, "the registry holds the node images").toBeGreaterThan(0);
    const m = await migrate("cut-nowhere", { podName: "cut-nowhere", restorePolicy: "checkpoint" });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("NoTarget");
    expect(m.status?.message).toMatch(new RegExp(cloud()));
    expect(m.status?.timestamps?.checkpointStarted).toBeUndefined();
    expect(m.status?.conditions?.find((c) => c.type === "Checkpointed")).toBeUndefined();
    expect(m.status?.restoredPod).toBeUndefined();
    // The agent never checkpointed nor pushed: the registry holds what it held.
    expect(await registryFiles()).toEqual(stored);
    const [left] = await live("app=cut-nowhere");
    expect([left?.metadata?.uid, left?.spec?.nodeName, left?.status?.phase]).toEqual([
      before.metadata?.uid,
      edge(),
      "Running",
    ]);
    expect(left?.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  });

  it("fails with RestoreTimeout when the restored pod never gets Ready, and removes it", async () => {
    const deploy = JSON.parse(
      await kubectl(["-n", SYSTEM, "get", "deploy", "edgeshift-operator", "-o", "json"]),
    );
    const timeout = restoreTimeoutMs(deploy);
    // Ready on edge-1 only: the readiness probe compares the node the container runs on.
    const pod = busyboxPod(ns(), "cut-stuck", edge(), IDLE, { labels: { test: "cutover" } }) as {
      spec: { containers: Record<string, unknown>[] };
    };
    const c0 = pod.spec.containers[0] ?? {};
    c0.env = [{ name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }];
    c0.readinessProbe = {
      exec: { command: ["sh", "-c", `[ "$NODE" != "${cloud()}" ]`] },
      periodSeconds: 1,
      failureThreshold: 1,
    };
    await apply(pod);
    const before = await waitForPod(ns(), "cut-stuck", "Ready", podReady);
    await createMigration("cut-stuck", { podName: "cut-stuck", restorePolicy: "restart" });
    // The restored pod runs on cloud-1 but is not Ready.
    const running = await waitUntil(
      "the restored pod running, not Ready, on cloud-1",
      async () => {
        const m = await getMigration("cut-stuck");
        if (migrationFinished(m)) return m;
        const name = m.status?.restoredPod;
        const p = name
          ? await clients()
              .core.readNamespacedPod({ namespace: ns(), name })
              .catch(() => undefined)
          : undefined;
        return p?.status?.containerStatuses?.[0]?.state?.running && !podReady(p) ? m : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(running.status?.phase).toBe("Restoring");
    const m = await awaitMigration("cut-stuck", timeout + 60_000);
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("RestoreTimeout");
    expect(m.status?.message).toMatch(/not Ready within/);
    expect(m.status?.restoredPod).toMatch(/^cut-stuck-/);
    await gone(m.status?.restoredPod ?? "");
    const [left] = await live("app=cut-stuck");
    expect([left?.metadata?.uid, left?.spec?.nodeName, podReady(left)]).toEqual([
      before.metadata?.uid,
      edge(),
      true,
    ]);
  }, 300_000);

  it("fails with TargetUnschedulable when the scheduler refuses the restored pod, and removes it", async () => {
    // A host port cloud-1 already has in use: edgeshift's target choice does not look at
    // host ports, the scheduler's NodePorts filter does.
    const withPort = (name: string, node: string) => {
      const p = busyboxPod(ns(), name, node, IDLE, { labels: { test: "cutover" } }) as {
        spec: { containers: Record<string, unknown>[] };
      };
      (p.spec.containers[0] ?? {}).ports = [{ containerPort: 8080, hostPort: 18080 }];
      return p;
    };
    await apply(withPort("cut-blocker", cloud()), withPort("cut-porty", edge()));
    await waitForPod(ns(), "cut-blocker", "Ready", podReady);
    const before = await waitForPod(ns(), "cut-porty", "Ready", podReady);
    const m = await migrate("cut-porty", { podName: "cut-porty", restorePolicy: "restart" });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("TargetUnschedulable");
    expect(m.status?.message).toMatch(/port/i);
    await gone(m.status?.restoredPod ?? "");
    expect((await live("app=cut-porty")).map((p) => [p.metadata?.uid, p.spec?.nodeName])).toEqual([
      [before.metadata?.uid, edge()],
    ]);
  });

  it("removes a Job's refused restored pod, tracking finalizer and all, and the Job keeps its original", async () => {
    // The restored pod of a Job carries the Job's tracking finalizer while hidden from it:
    // when the restore fails it must still go, and the Job must neither count nor replace it.
    const spec = template("cut-jobport", IDLE, "Never") as unknown as {
      spec: { containers: Record<string, unknown>[] };
    };
    (spec.spec.containers[0] ?? {}).ports = [{ containerPort: 8080, hostPort: 18081 }];
    const blocker = busyboxPod(ns(), "cut-blocker2", cloud(), IDLE, {
      labels: { test: "cutover" },
    }) as { spec: { containers: Record<string, unknown>[] } };
    (blocker.spec.containers[0] ?? {}).ports = [{ containerPort: 8080, hostPort: 18081 }];
    await apply(blocker, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: { name: "cut-jobport", namespace: ns(), labels: { test: "cutover" } },
      spec: { parallelism: 1, completions: 1, backoffLimit: 0, template: spec },
    });
    await waitForPod(ns(), "cut-blocker2", "Ready", podReady);
    const [orig] = await waitUntil(
      "the cut-jobport pod Ready",
      async () => {
        const p = await live("batch.kubernetes.io/job-name=cut-jobport");
        return p.length === 1 && podReady(p[0]) ? p : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const pods = await podRecorder();
    try {
      const m = await migrate("cut-jobport", {
        podName: orig?.metadata?.name ?? "",
        restorePolicy: "restart",
      });
      expect(m.status?.phase).toBe("Failed");
      expect(m.status?.failureReason).toBe("TargetUnschedulable");
      await gone(m.status?.restoredPod ?? "");
      const j = JSON.parse(
        await kubectl(["-n", ns(), "get", "job", "cut-jobport", "-o", "json"]),
      ) as { status: { active?: number; failed?: number; succeeded?: number } };
      expect([j.status.active, j.status.failed ?? 0, j.status.succeeded ?? 0]).toEqual([1, 0, 0]);
      expect(
        (await live("batch.kubernetes.io/job-name=cut-jobport")).map((p) => p.metadata?.uid),
      ).toEqual([orig?.metadata?.uid]);
      expect(pods.createdBy("Job/cut-jobport")).toEqual([orig?.metadata?.name]);
    } finally {
      pods.stop();
    }
  });

  it("refuses a StatefulSet's pod with UnsupportedOwner", async () => {
    await apply({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "cut-db", namespace: ns(), labels: { test: "cutover" } },
      spec: {
        replicas: 1,
        serviceName: "cut-db",
        selector: { matchLabels: { app: "cut-db" } },
        template: template("cut-db", IDLE),
      },
    });
    const before = await waitForPod(ns(), "cut-db-0", "Ready", podReady);
    const m = await migrate("cut-db", { podName: "cut-db-0", restorePolicy: "restart" });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("UnsupportedOwner");
    expect(m.status?.message).toMatch(/StatefulSet/);
    expect(m.status?.restoredPod).toBeUndefined();
    expect((await live("app=cut-db")).map((p) => [p.metadata?.uid, p.spec?.nodeName])).toEqual([
      [before.metadata?.uid, edge()],
    ]);
  });

  it("counts migrations by policy and result in the operator's /metrics", async () => {
    await operatorSettled();
    await apply(
      busyboxPod(ns(), "cut-count", edge(), IDLE, { labels: { test: "cutover" } }),
      busyboxPod(ns(), "cut-nocontainer", edge(), IDLE, { labels: { test: "cutover" } }),
    );
    await waitForPod(ns(), "cut-count", "Ready", podReady);
    await waitForPod(ns(), "cut-nocontainer", "Ready", podReady);
    const before = await migrationCounts();
    const ok = await migrate("cut-count", { podName: "cut-count", restorePolicy: "restart" });
    expect(ok.status?.phase, ok.status?.message).toBe("Succeeded");
    const bad = await migrate("cut-nocontainer", {
      podName: "cut-nocontainer",
      restorePolicy: "checkpoint",
      containers: ["nope"],
    });
    expect(bad.status?.failureReason).toBe("ContainerNotFound");
    // The leader increments as it writes the final status: scrape until it shows.
    const after = await waitUntil(
      "the counts to move",
      async () => {
        const c = await migrationCounts();
        return (c["restart/succeeded"] ?? 0) > (before["restart/succeeded"] ?? 0) &&
          (c["checkpoint/failed"] ?? 0) > (before["checkpoint/failed"] ?? 0)
          ? c
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    const delta = Object.fromEntries(
      [...new Set([...Object.keys(before), ...Object.keys(after)])]
        .map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)])
        .filter(([, d]) => d !== 0),
    );
    expect(delta).toEqual({ "restart/succeeded": 1, "checkpoint/failed": 1 });
  });
});
