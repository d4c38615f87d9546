// A forged image in a Migration's status never becomes a pod. The real
// operator validates a checkpoint Migration of a pod on an edge node; then a
// writer the admission policy does not stop (the test's admin, standing in for
// anyone with status rights or an agent from before the policy) reports the
// checkpoint pushed with an image of its choice. The operator refuses it
// (ImageRejected) and creates no pod; with only a digest reported it builds
// the image itself from the EdgeNode's repository and moves on to Restoring.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  EDGENODE_PLURAL,
  type EdgeNode,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { agentIdentity } from "../../operator/edgenode/agent.ts";
import { CHECKPOINT_RESTORE_ANNOTATION } from "../../operator/edgenode/preflight.ts";
import { writeMigrationStatus } from "../../operator/kube/migration-status.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
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
const NS = "fi-apps";
const GROUP_LABEL = "test.edgeshift.dev/group";
const EDGE = "fi-edge";
const REPO = "registry.fi.example:5000/edgeshift/checkpoints";
const D = `sha256:${"d".repeat(64)}`;

let c: Clients;
let op: RunningOperator;
let saKubeconfig: string;

const read = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name,
  })) as Migration;

const phase = (name: string, want: string) =>
  waitUntil(
    `${name} ${want}`,
    async () => {
      const m = await read(name);
      return m.status?.phase === want ? m : undefined;
    },
    { timeoutMs: 30_000 },
  );

/** The agent's report after a push, with `image` if given (what the policy refuses an agent). */
function pushed(m: Migration, image?: string): Promise<Migration> {
  const at = new Date().toISOString();
  return writeMigrationStatus(c.custom, m, (s) => {
    s.timestamps = { ...s.timestamps, checkpointStarted: at, checkpointed: at, imagePushed: at };
    s.containers = [{ name: "main", digest: D, imageSizeBytes: 100, ...(image ? { image } : {}) }];
    s.conditions = [
      ...(s.conditions ?? []),
      {
        type: "Checkpointed",
        status: "True",
        reason: "CheckpointCreated",
        message: "ok",
        lastTransitionTime: at,
      },
      {
        type: "ImagePushed",
        status: "True",
        reason: "ImagePushed",
        message: "ok",
        lastTransitionTime: at,
      },
    ];
  });
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  await installOperatorRbac(kubectl, kubeconfig);
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createNode(c, "fi-edge-1", { [GROUP_LABEL]: "fi" }, "containerd://2.3.7");
  await createNode(c, "fi-cloud-1", { [GROUP_LABEL]: "fi-cloud" }, "containerd://2.3.7");
  await c.core.patchNode(
    {
      name: "fi-cloud-1",
      body: { metadata: { annotations: { [CHECKPOINT_RESTORE_ANNOTATION]: "enabled" } } },
    },
    mergePatch,
  );
  await createNamespace(c, NS);
  const en: EdgeNode = {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "EdgeNode",
    metadata: { name: EDGE },
    spec: {
      nodeSelector: { matchLabels: { [GROUP_LABEL]: "fi" } },
      pods: { namespaces: [NS] },
      thresholds: { cpu: { triggerPercent: 80 } },
      cloud: { nodeSelector: { matchLabels: { [GROUP_LABEL]: "fi-cloud" } } },
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
      registry: { repository: REPO },
    },
  };
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: en,
  });
  for (const pod of ["forged", "honest"]) {
    await createPod(c, NS, pod, "fi-edge-1");
    await setPodRunning(c, NS, pod);
  }
  op = await startOperator({ name: "forged-image-op", kubeconfig: saKubeconfig, natsUrl });
});

afterAll(async () => {
  await op?.kill();
  await op?.cleanup();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  await c.core
    .deleteCollectionNamespacedPod({ namespace: NS, gracePeriodSeconds: 0 })
    .catch(() => {});
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  await c.custom
    .deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGE,
    })
    .catch(() => {});
  for (const name of ["fi-edge-1", "fi-cloud-1"]) await c.core.deleteNode({ name }).catch(() => {});
});

describe("checkpoint images the operator runs", () => {
  it("records the one agent identity that may report, and refuses a forged image: ImageRejected, no pod", async () => {
    await createMigration(c, NS, "forged", { podName: "forged" });
    const m = await phase("forged", "Checkpointing");
    expect(m.status?.agentIdentity).toBe(agentIdentity(OPERATOR_NAMESPACE, EDGE));
    await pushed(m, `evil.example/payload@${D}`);
    const failed = await phase("forged", "Failed");
    expect(failed.status?.failureReason).toBe("ImageRejected");
    expect(failed.status?.message).toContain(`is not ${REPO}@${D}`);
    const pods = await c.core.listPodForAllNamespaces();
    const images = pods.items.flatMap((p) => (p.spec?.containers ?? []).map((x) => x.image));
    expect(images.filter((i) => i?.includes("evil.example"))).toEqual([]);
    expect(
      (await c.core.listNamespacedPod({ namespace: NS })).items.map((p) => p.metadata?.name).sort(),
    ).toEqual(["forged", "honest"]);
  });

  it("builds the image from the EdgeNode's repository and the reported digest", async () => {
    await createMigration(c, NS, "honest", { podName: "honest" });
    const m = await phase("honest", "Checkpointing");
    await pushed(m);
    // Restoring next (the restored pod itself waits for the base image's
    // pre-pull, which needs a kubelet): the image is the operator's own.
    const restoring = await phase("honest", "Restoring");
    expect(restoring.status?.containers?.[0]?.image).toBe(`${REPO}@${D}`);
    expect(restoring.status?.failureReason).toBeUndefined();
  });
});
