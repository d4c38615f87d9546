// Migrations the operator refuses up front, with the reason in status, before
// anything is checkpointed or created: the real operator against the real API
// server (no kubelets). A hand-written Migration obeys the EdgeNode's pod
// selection and the opt-out annotation as the decision engine does; a hostPath
// volume is refused (on the cloud node the path is another directory); and a
// checkpoint Migration whose source node has no Ready agent (here no kubelet
// ever runs one) fails AgentUnavailable after the agent's grace period instead
// of waiting out the checkpoint timeout.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  EDGENODE_PLURAL,
  type EdgeNode,
  GROUP,
  MIGRATE_ANNOTATION,
  MIGRATION_PLURAL,
  type Migration,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { CHECKPOINT_RESTORE_ANNOTATION } from "../../operator/edgenode/preflight.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { AGENT_GRACE_MS } from "../../operator/migration/agent-availability.ts";
import { waitUntil } from "../cluster/process.ts";
import {
  adminClients,
  type Clients,
  createMigration,
  createNamespace,
  createNode,
  createPod,
  setPodRunning,
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
const NS = "rf-apps";
const OTHER = "rf-other";
const GROUP_LABEL = "test.edgeshift.dev/group";
const EDGE = "rf-edge";
const EDGE_NODE = "rf-edge-1";
const MOVABLE = { tier: "movable" };

let c: Clients;
let op: RunningOperator;
let saKubeconfig: string;

const read = async (namespace: string, name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace,
    name,
  })) as Migration;

const failed = (namespace: string, name: string, timeoutMs = 30_000) =>
  waitUntil(
    `${namespace}/${name} Failed`,
    async () => {
      const m = await read(namespace, name);
      return m.status?.phase === "Failed" ? m : undefined;
    },
    { timeoutMs },
  );

const podNames = async (namespace: string) =>
  (await c.core.listNamespacedPod({ namespace })).items.map((p) => p.metadata?.name).sort();

async function runningPod(
  namespace: string,
  name: string,
  extra: Parameters<typeof createPod>[4] = {},
): Promise<void> {
  await createPod(c, namespace, name, EDGE_NODE, extra);
  await setPodRunning(c, namespace, name);
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  await installOperatorRbac(kubectl, kubeconfig);
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createNode(c, EDGE_NODE, { [GROUP_LABEL]: "rf" }, "containerd://2.3.7");
  await createNode(c, "rf-cloud-1", { [GROUP_LABEL]: "rf-cloud" }, "containerd://2.3.7");
  await c.core.patchNode(
    {
      name: "rf-cloud-1",
      body: { metadata: { annotations: { [CHECKPOINT_RESTORE_ANNOTATION]: "enabled" } } },
    },
    mergePatch,
  );
  await createNamespace(c, NS);
  await createNamespace(c, OTHER);
  const en: EdgeNode = {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "EdgeNode",
    metadata: { name: EDGE },
    spec: {
      nodeSelector: { matchLabels: { [GROUP_LABEL]: "rf" } },
      pods: { namespaces: [NS], selector: { matchLabels: MOVABLE } },
      thresholds: { cpu: { triggerPercent: 80 } },
      cloud: { nodeSelector: { matchLabels: { [GROUP_LABEL]: "rf-cloud" } } },
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
      registry: { repository: "registry.rf.example:5000/edgeshift/checkpoints" },
    },
  };
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: en,
  });
  await runningPod(NS, "opted-out", {
    labels: MOVABLE,
    annotations: { [MIGRATE_ANNOTATION]: "false" },
  });
  await runningPod(NS, "unlabelled");
  await runningPod(OTHER, "elsewhere", { labels: MOVABLE });
  await runningPod(NS, "plain", { labels: MOVABLE });
  await c.core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: { name: "host-logs", labels: MOVABLE },
      spec: {
        nodeName: EDGE_NODE,
        automountServiceAccountToken: false,
        volumes: [
          { name: "scratch", emptyDir: {} },
          { name: "logs", hostPath: { path: "/var/log/rf", type: "DirectoryOrCreate" } },
        ],
        containers: [
          {
            name: "app",
            image: "registry.local/workload:1",
            volumeMounts: [
              { name: "scratch", mountPath: "/scratch" },
              { name: "logs", mountPath: "/logs" },
            ],
          },
        ],
      },
    },
  });
  await setPodRunning(c, NS, "host-logs");
  op = await startOperator({ name: "refusals-op", kubeconfig: saKubeconfig, natsUrl });
});

afterAll(async () => {
  await op?.kill();
  await op?.cleanup();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  for (const namespace of [NS, OTHER]) {
    await c.core
      .deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 })
      .catch(() => {});
    await c.core.deleteNamespace({ name: namespace }).catch(() => {});
  }
  await c.custom
    .deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGE,
    })
    .catch(() => {});
  for (const name of [EDGE_NODE, "rf-cloud-1"]) await c.core.deleteNode({ name }).catch(() => {});
});

describe("Migrations refused up front", () => {
  it("refuses a hand-written Migration of an opted-out pod: OptedOut, and nothing else happens", async () => {
    const before = await c.core.readNamespacedPod({ namespace: NS, name: "opted-out" });
    await createMigration(c, NS, "opted-out", { podName: "opted-out" });
    const m = await failed(NS, "opted-out");
    expect(m.status?.failureReason).toBe("OptedOut");
    expect(m.status?.message).toBe(
      `pod opted-out is not migrated: it is annotated ${MIGRATE_ANNOTATION}: "false"`,
    );
    // Refused before validation wrote anything: no nodes, no containers, no agent label.
    expect(m.status?.targetNode).toBeUndefined();
    expect(m.status?.containers ?? []).toEqual([]);
    expect(m.metadata.labels?.[SOURCE_NODE_LABEL]).toBeUndefined();
    // No restored or pre-pull pod anywhere; the original is as it was.
    const everywhere = await c.core.listPodForAllNamespaces();
    expect(
      everywhere.items
        .filter((p) => p.spec?.nodeName === "rf-cloud-1")
        .map((p) => p.metadata?.name),
    ).toEqual([]);
    expect(await podNames(NS)).toEqual(["host-logs", "opted-out", "plain", "unlabelled"]);
    const after = await c.core.readNamespacedPod({ namespace: NS, name: "opted-out" });
    expect(after.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
  });

  it("refuses pods outside the EdgeNode's spec.pods: NotSelected, naming the rule", async () => {
    await createMigration(c, NS, "unlabelled", { podName: "unlabelled" });
    await createMigration(c, OTHER, "elsewhere", { podName: "elsewhere" });
    const labels = await failed(NS, "unlabelled");
    expect(labels.status?.failureReason).toBe("NotSelected");
    expect(labels.status?.message).toBe(
      `pod unlabelled is not one of EdgeNode ${EDGE}'s pods (spec.pods): its labels do not match spec.pods.selector`,
    );
    const ns = await failed(OTHER, "elsewhere");
    expect(ns.status?.failureReason).toBe("NotSelected");
    expect(ns.status?.message).toContain(`namespace ${OTHER} is not in spec.pods.namespaces`);
    expect(await podNames(OTHER)).toEqual(["elsewhere"]);
  });

  it("refuses a pod with a hostPath volume: VolumeUnavailable, naming the volume", async () => {
    await createMigration(c, NS, "host-logs", { podName: "host-logs" });
    const m = await failed(NS, "host-logs");
    expect(m.status?.failureReason).toBe("VolumeUnavailable");
    expect(m.status?.message).toContain("volume logs (hostPath /var/log/rf)");
    // The emptyDir is no reason.
    expect(m.status?.message).not.toContain("scratch");
    expect(await podNames(NS)).toEqual(["host-logs", "opted-out", "plain", "unlabelled"]);
  });

  it(
    "fails a checkpoint Migration whose source node has no Ready agent: AgentUnavailable, not CheckpointTimeout",
    async () => {
      await createMigration(c, NS, "plain", { podName: "plain" });
      // A pod the EdgeNode selects passes validation and waits for its agent.
      const checkpointing = await waitUntil(
        "plain Checkpointing",
        async () => {
          const m = await read(NS, "plain");
          return m.status?.phase === "Checkpointing" ? m : undefined;
        },
        { timeoutMs: 30_000 },
      );
      expect(checkpointing.status?.sourceNode).toBe(EDGE_NODE);
      const m = await failed(NS, "plain", AGENT_GRACE_MS + 30_000);
      expect(m.status?.failureReason, await op.logs()).toBe("AgentUnavailable");
      expect(m.status?.message).toMatch(/edge agent pod .*rf-edge-1/);
      // Not before the agent's grace period: both times are the operator's.
      const at = (x: Migration) =>
        Date.parse(
          String(x.status?.conditions?.find((k) => k.type === "Succeeded")?.lastTransitionTime),
        );
      expect(at(m) - at(checkpointing)).toBeGreaterThanOrEqual(AGENT_GRACE_MS);
      // The base-image pre-pull on the cloud node is rolled back; the original stays.
      await waitUntil(
        "only the original pods",
        async () => ((await podNames(NS)).length === 4 ? true : undefined),
        { timeoutMs: 10_000 },
      );
      expect(await podNames(NS)).toEqual(["host-logs", "opted-out", "plain", "unlabelled"]);
    },
    AGENT_GRACE_MS + 60_000,
  );
});
