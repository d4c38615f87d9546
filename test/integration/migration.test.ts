// The Migration controller against the real control plane, with the real
// kube-controller-manager (ReplicaSet, Job, garbage collector) and scheduler.
// No kubelet runs here: PodLifecycleStandIn plays the pod lifecycle only.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { AppsV1Api, BatchV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { waitUntil } from "../cluster/process.ts";
import { PodLifecycleStandIn } from "../support/kubelet-sim.ts";
import {
  adminClients,
  type Clients,
  createNamespace,
  createNode,
  createPod,
} from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  serviceAccountKubeconfig,
  startOperator,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const natsUrl = inject("natsUrl");
const NS = "mig-apps";
const G = "test.edgeshift.dev/group";

let c: Clients;
let apps: AppsV1Api;
let batch: BatchV1Api;
let sim: PodLifecycleStandIn;
let op: RunningOperator;
let saKubeconfig: string;
let web2FinishedByFirstOperator = false;

const podsWith = async (selector: string) =>
  (await c.core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
const getMig = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name,
  })) as Migration;

async function migrate(
  name: string,
  pod: string,
  spec: Record<string, unknown> = {},
): Promise<Migration> {
  await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "Migration",
      metadata: { name },
      spec: { podName: pod, ...spec },
    },
  });
  return waitUntil(
    `${name} to finish`,
    async () => {
      const m = await getMig(name);
      return m.status?.phase === "Succeeded" || m.status?.phase === "Failed" ? m : undefined;
    },
    { timeoutMs: 40_000, intervalMs: 200 },
  );
}

async function runningOn(selector: string, nodes: string[]): Promise<V1Pod> {
  return waitUntil(
    `a Running pod ${selector} on ${nodes.join(" or ")}`,
    async () =>
      (await podsWith(selector)).find(
        (p) => nodes.includes(p.spec?.nodeName ?? "") && p.status?.phase === "Running",
      ),
    { timeoutMs: 30_000 },
  );
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  apps = c.kc.makeApiClient(AppsV1Api);
  batch = c.kc.makeApiClient(BatchV1Api);
  await installOperatorRbac(kubectl, kubeconfig);
  await createNode(c, "mig-edge", { [G]: "mig-edge" }, "cri-o://1.30.4");
  await createNode(c, "mig-old", { [G]: "mig-edge" }, "containerd://1.7.27");
  await createNode(c, "mig-cloud", { [G]: "mig-cloud" }, "cri-o://1.30.4");
  // Cordoned until the workloads sit on the edge: the scheduler must put them there.
  await c.core.patchNode(
    { name: "mig-cloud", body: { spec: { unschedulable: true } } },
    mergePatch,
  );
  sim = new PodLifecycleStandIn(c, {
    "mig-edge": "cri-o://1.30.4",
    "mig-old": "containerd://1.7.27",
    "mig-cloud": "cri-o://1.30.4",
  });
  sim.start();
  await createNamespace(c, NS);
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "EdgeNode",
      metadata: { name: "mig" },
      spec: {
        nodeSelector: { matchLabels: { [G]: "mig-edge" } },
        pods: { namespaces: [NS] },
        thresholds: { cpu: { triggerPercent: 90 } },
        cloud: { nodeSelector: { matchLabels: { [G]: "mig-cloud" } } },
        restorePolicy: "checkpoint",
        fallbackToRestart: true,
        registry: { repository: "registry.invalid/edgeshift/checkpoints" },
      },
    },
  });
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  op = await startOperator({
    name: "migration-op",
    kubeconfig: saKubeconfig,
    natsUrl,
    env: { EDGESHIFT_RESTORE_TIMEOUT: "4s", EDGESHIFT_CHECKPOINT_TIMEOUT: "20s" },
  });

  // Workloads, scheduled onto the edge while the cloud node is cordoned.
  await createPod(c, NS, "bare", "mig-edge", { labels: { app: "bare" } });
  await createPod(c, NS, "old", "mig-old", { labels: { app: "old" } });
  await createPod(c, NS, "stuck", "mig-edge", { labels: { app: "stuck" } });
  await createPod(c, NS, "nowhere", "mig-edge", { labels: { app: "nowhere" } });
  const tmpl = (app: string) => ({
    metadata: { labels: { app } },
    spec: {
      containers: [
        {
          name: "app",
          image: "registry.local/workload:1",
          resources: { requests: { cpu: "100m", memory: "64Mi" } },
        },
      ],
    },
  });
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: {
      metadata: { name: "web" },
      spec: { replicas: 1, selector: { matchLabels: { app: "web" } }, template: tmpl("web") },
    },
  });
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: {
      metadata: { name: "web2" },
      spec: { replicas: 1, selector: { matchLabels: { app: "web2" } }, template: tmpl("web2") },
    },
  });
  await batch.createNamespacedJob({
    namespace: NS,
    body: {
      metadata: { name: "batch" },
      spec: {
        parallelism: 1,
        completions: 1,
        backoffLimit: 0,
        template: { ...tmpl("batch"), spec: { ...tmpl("batch").spec, restartPolicy: "Never" } },
      },
    },
  });
  await apps.createNamespacedStatefulSet({
    namespace: NS,
    body: {
      metadata: { name: "db" },
      spec: {
        replicas: 1,
        serviceName: "db",
        selector: { matchLabels: { app: "db" } },
        template: tmpl("db"),
      },
    },
  });
  for (const app of ["bare", "stuck", "nowhere", "web", "web2", "batch", "db", "old"]) {
    await runningOn(`app=${app}`, ["mig-edge", "mig-old"]);
  }
  await c.core.patchNode(
    { name: "mig-cloud", body: { spec: { unschedulable: false } } },
    mergePatch,
  );
});

afterAll(async () => {
  sim?.stop();
  await op?.kill();
  await op?.cleanup();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  await c.custom
    .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: "edgenodes", name: "mig" })
    .catch(() => {});
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  for (const n of ["mig-edge", "mig-old", "mig-cloud"])
    await c.core.deleteNode({ name: n }).catch(() => {});
});

describe("migration controller", () => {
  it("moves a bare pod to the cloud node, keeping its labels, and removes the original", async () => {
    const before = (await podsWith("app=bare"))[0] as V1Pod;
    const m = await migrate("bare", "bare", { restorePolicy: "restart" });
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status).toMatchObject({
      sourceNode: "mig-edge",
      targetNode: "mig-cloud",
      policy: "restart",
      edgeNode: "mig",
    });
    expect(m.status?.conditions?.find((x) => x.type === "Succeeded")).toMatchObject({
      status: "True",
      reason: "CutOver",
    });
    expect(m.status?.conditions?.find((x) => x.type === "Restored")?.status).toBe("True");
    for (const k of ["created", "restoreStarted", "restored", "cutOver", "finished"] as const)
      expect(m.status?.timestamps?.[k]).toBeDefined();
    expect(m.status?.duration).toMatch(/s$/);
    await waitUntil(
      "the original to be gone",
      async () => ((await podsWith("app=bare")).length === 1 ? true : undefined),
      { timeoutMs: 10_000 },
    );
    const [after] = await podsWith("app=bare");
    expect(after?.spec?.nodeName).toBe("mig-cloud");
    expect(after?.metadata?.name).toBe(m.status?.restoredPod);
    expect(after?.metadata?.labels?.app).toBe(before.metadata?.labels?.app);
    expect(after?.metadata?.labels?.["edgeshift.dev/migration"]).toBe("bare");
  });

  it("moves a Deployment's pod: the ReplicaSet keeps one replica, on the cloud node", async () => {
    const [orig] = await podsWith("app=web");
    const m = await migrate("web", orig?.metadata?.name ?? "", { restorePolicy: "restart" });
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    await waitUntil(
      "one web pod",
      async () => ((await podsWith("app=web")).length === 1 ? true : undefined),
      { timeoutMs: 15_000 },
    );
    // Stable for a while: the ReplicaSet neither deletes ours nor recreates the original.
    await new Promise((r) => setTimeout(r, 3000));
    const pods = await podsWith("app=web");
    expect(pods).toHaveLength(1);
    expect(pods[0]?.spec?.nodeName).toBe("mig-cloud");
    expect(pods[0]?.metadata?.ownerReferences?.[0]?.kind).toBe("ReplicaSet");
    const d = await apps.readNamespacedDeployment({ namespace: NS, name: "web" });
    expect(d.spec?.replicas).toBe(1);
  });

  it("finishes a ReplicaSet cutover after the operator is killed in the middle of it", async () => {
    const [orig] = await podsWith("app=web2");
    const name = orig?.metadata?.name ?? "";
    await c.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      body: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "Migration",
        metadata: { name: "web2" },
        spec: { podName: name, restorePolicy: "restart" },
      },
    });
    const phase = await waitUntil(
      "cutover (or the end)",
      async () => {
        const p = (await getMig("web2")).status?.phase;
        return p === "CuttingOver" || p === "Succeeded" || p === "Failed" ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 5 },
    );
    console.log(`[measure] operator killed at phase ${phase}`);
    web2FinishedByFirstOperator = phase === "Succeeded";
    await op.kill();
    await op.cleanup();
    op = await startOperator({
      name: "migration-op-2",
      kubeconfig: saKubeconfig,
      natsUrl,
      env: { EDGESHIFT_RESTORE_TIMEOUT: "4s", EDGESHIFT_CHECKPOINT_TIMEOUT: "20s" },
    });
    const m = await waitUntil(
      "web2 to finish",
      async () => {
        const x = await getMig("web2");
        return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    await waitUntil(
      "one web2 pod",
      async () => ((await podsWith("app=web2")).length === 1 ? true : undefined),
      {
        timeoutMs: 15_000,
      },
    );
    await new Promise((r) => setTimeout(r, 2000));
    const pods = await podsWith("app=web2");
    expect(pods.map((p) => p.spec?.nodeName)).toEqual(["mig-cloud"]);
    const ever = await c.core.listNamespacedPod({
      namespace: NS,
      labelSelector: "edgeshift.dev/migration=web2",
    });
    expect(ever.items).toHaveLength(1);
  });

  it("moves a Job's pod: the Job counts the restored pod and completes on it", async () => {
    const [orig] = await podsWith("batch.kubernetes.io/job-name=batch");
    const m = await migrate("batch", orig?.metadata?.name ?? "", { restorePolicy: "restart" });
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    await new Promise((r) => setTimeout(r, 3000));
    const pods = await podsWith("batch.kubernetes.io/job-name=batch");
    expect(pods.map((p) => p.spec?.nodeName)).toEqual(["mig-cloud"]);
    expect(pods[0]?.metadata?.ownerReferences?.[0]?.kind).toBe("Job");
    await sim.succeed(NS, pods[0]?.metadata?.name ?? "");
    const job = await waitUntil(
      "the Job to complete",
      async () => {
        const j = await batch.readNamespacedJob({ namespace: NS, name: "batch" });
        return j.status?.conditions?.some((x) => x.type === "Complete" && x.status === "True")
          ? j
          : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(job.status?.succeeded).toBe(1);
    expect(job.status?.failed ?? 0).toBe(0);
  });

  it("falls back to restart on a node whose runtime cannot checkpoint", async () => {
    const m = await migrate("old", "old");
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("restart");
    expect(m.status?.message).toBeDefined();
    const events = await c.core.listNamespacedEvent({ namespace: NS });
    expect(
      events.items.some(
        (e) => e.involvedObject?.name === "old" && e.message?.includes("fell back to restart"),
      ),
    ).toBe(true);
  });

  it("fails with NoTarget when no cloud node qualifies, leaving the original running", async () => {
    const m = await migrate("nowhere", "nowhere", {
      restorePolicy: "restart",
      targetNode: "mig-old",
    });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("NoTarget");
    const pods = await podsWith("app=nowhere");
    expect(pods.map((p) => [p.metadata?.name, p.spec?.nodeName, p.status?.phase])).toEqual([
      ["nowhere", "mig-edge", "Running"],
    ]);
  });

  it("fails with RestoreTimeout when the restored pod never gets Ready, and removes it", async () => {
    // The restored pod's name is derived from the Migration's UID: hold every "stuck" pod but the original.
    const hold = setInterval(async () => {
      for (const p of await podsWith("app=stuck").catch(() => [])) {
        if (p.metadata?.name !== "stuck") sim.hold.add(p.metadata?.name ?? "");
      }
    }, 20);
    let m: Migration;
    try {
      m = await migrate("stuck", "stuck", { restorePolicy: "restart" });
    } finally {
      clearInterval(hold);
    }
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("RestoreTimeout");
    expect(m.status?.restoredPod).toMatch(/^stuck-/);
    await waitUntil(
      "only the original left",
      async () => ((await podsWith("app=stuck")).length === 1 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    const [left] = await podsWith("app=stuck");
    expect([left?.metadata?.name, left?.spec?.nodeName, left?.status?.phase]).toEqual([
      "stuck",
      "mig-edge",
      "Running",
    ]);
  });

  it("fails with TargetUnschedulable when the scheduler refuses the restored pod", async () => {
    // A host port the cloud node already has in use: edgeshift's capacity check passes,
    // the scheduler's NodePorts filter does not.
    const withPort = (name: string, node: string) =>
      c.core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name, labels: { app: name } },
          spec: {
            nodeName: node,
            containers: [
              {
                name: "app",
                image: "registry.local/workload:1",
                ports: [{ containerPort: 8080, hostPort: 18080 }],
              },
            ],
          },
        },
      });
    await withPort("blocker", "mig-cloud");
    await withPort("porty", "mig-edge");
    await runningOn("app=porty", ["mig-edge"]);
    const m = await migrate("porty", "porty", { restorePolicy: "restart" });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("TargetUnschedulable");
    expect(m.status?.message).toMatch(/port/i);
    await waitUntil(
      "only the original left",
      async () => ((await podsWith("app=porty")).length === 1 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    expect((await podsWith("app=porty"))[0]?.metadata?.name).toBe("porty");
  });

  it("refuses a StatefulSet's pod with UnsupportedOwner", async () => {
    const m = await migrate("db", "db-0", { restorePolicy: "restart" });
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("UnsupportedOwner");
    expect((await podsWith("app=db")).map((p) => p.metadata?.name)).toEqual(["db-0"]);
  });

  it("counts migrations by policy and result", async () => {
    // The operator was replaced mid-suite: this one counts batch, old and (unless the first
    // operator got there) web2.
    expect(await op.metric("edgeshift_migrations_total", { result: "succeeded" })).toBe(
      web2FinishedByFirstOperator ? 2 : 3,
    );
    expect(await op.metric("edgeshift_migrations_total", { result: "failed" })).toBe(4);
  });
});
