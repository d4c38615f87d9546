// A forged image in a Migration's status never becomes a pod. The real
// operator validates a checkpoint Migration of a pod on an edge node; then a
// writer the admission policy does not stop (the test's admin, standing in for
// anyone with status rights or an agent from before the policy) reports the
// checkpoint pushed with an image of its choice. The operator refuses it
// (ImageRejected) and creates no pod; with only a digest reported it builds
// the image itself from the EdgeNode's repository and moves on to Restoring.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { agentIdentity } from "../../operator/edgenode/agent.ts";
import { writeMigrationStatus } from "../../operator/kube/migration-status.ts";
import { type EdgeFixture, edgeFixture } from "../support/edge-fixture.ts";
import { createMigration } from "../support/objects.ts";
import { OPERATOR_NAMESPACE } from "../support/operator.ts";

const REPO = "registry.fi.example:5000/edgeshift/checkpoints";
const D = `sha256:${"d".repeat(64)}`;

let f: EdgeFixture;

const phase = (name: string, want: string) => f.until(name, want, (m) => m.status?.phase === want);

/** The agent's report after a push, with `image` if given (what the policy refuses an agent). */
function pushed(m: Migration, image?: string, container = "app"): Promise<Migration> {
  const at = new Date().toISOString();
  return writeMigrationStatus(f.c.custom, m, (s) => {
    s.timestamps = { ...s.timestamps, checkpointStarted: at, checkpointed: at, imagePushed: at };
    s.containers = [
      { name: container, digest: D, imageSizeBytes: 100, ...(image ? { image } : {}) },
    ];
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
  f = await edgeFixture({
    prefix: "fi",
    kubeconfig: inject("kubeconfig"),
    kubectl: inject("kubectl"),
    natsUrl: inject("natsUrl"),
    pods: ["forged", "honest", "stranger"],
    spec: { restorePolicy: "checkpoint", fallbackToRestart: false, registry: { repository: REPO } },
  });
});

afterAll(async () => {
  await f?.cleanup();
});

describe("checkpoint images the operator runs", () => {
  it("records the one agent identity that may report, and refuses a forged image: ImageRejected, no pod", async () => {
    await createMigration(f.c, f.namespace, "forged", { podName: "forged" });
    const m = await phase("forged", "Checkpointing");
    expect(m.status?.agentIdentity).toBe(agentIdentity(OPERATOR_NAMESPACE, f.edgeNode));
    await pushed(m, `evil.example/payload@${D}`);
    const failed = await phase("forged", "Failed");
    expect(failed.status?.failureReason).toBe("ImageRejected");
    expect(failed.status?.message).toContain(`is not ${REPO}@${D}`);
    const pods = await f.c.core.listPodForAllNamespaces();
    const images = pods.items.flatMap((p) => (p.spec?.containers ?? []).map((x) => x.image));
    expect(images.filter((i) => i?.includes("evil.example"))).toEqual([]);
    expect(
      (await f.c.core.listNamespacedPod({ namespace: f.namespace })).items
        .map((p) => p.metadata?.name)
        .sort(),
    ).toEqual(["forged", "honest", "stranger"]);
  });

  it("builds the image from the EdgeNode's repository and the reported digest", async () => {
    await createMigration(f.c, f.namespace, "honest", { podName: "honest" });
    const m = await phase("honest", "Checkpointing");
    await pushed(m);
    // Restoring next (the restored pod itself waits for the base image's
    // pre-pull, which needs a kubelet): the image is the operator's own.
    const restoring = await phase("honest", "Restoring");
    expect(restoring.status?.containers?.[0]?.image).toBe(`${REPO}@${D}`);
    expect(restoring.status?.failureReason).toBeUndefined();
  });

  it("refuses a report for a container the migration does not move: ImageRejected, no pod", async () => {
    await createMigration(f.c, f.namespace, "stranger", { podName: "stranger" });
    const m = await phase("stranger", "Checkpointing");
    await pushed(m, undefined, "main");
    const failed = await phase("stranger", "Failed");
    expect(failed.status?.failureReason).toBe("ImageRejected");
    expect(failed.status?.message).toBe(
      "the checkpoint reports containers [main], the migration moves [app]",
    );
    const pods = (await f.c.core.listNamespacedPod({ namespace: f.namespace })).items;
    expect(pods.filter((p) => p.metadata?.name?.startsWith("stranger-"))).toEqual([]);
  });
});
