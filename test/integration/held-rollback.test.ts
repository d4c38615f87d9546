// A Freeze migration rolled back (failed, or deleted in flight) after its
// restored pod exists: the original is held frozen on the edge node, and the
// restored copy may still run on the cloud node. The agent must not thaw the
// original before that copy is gone, or two copies run. So the operator
// deletes the restored pod gracefully (its kubelet removes it once its
// containers have stopped), records status.timestamps.released only when it
// is gone, and keeps the Migration (its finalizer) until the agent reports the
// original thawed: a Migration that vanished would leave the original frozen
// for good. The test plays both kubelets and the agent (there is none here);
// the operator is the real one with the shipped RBAC.
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { writeMigrationStatus } from "../../operator/kube/migration-status.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { CLEANUP_FINALIZER } from "../../operator/migration/controller.ts";
import { waitUntil } from "../cluster/process.ts";
import { type EdgeFixture, edgeFixture } from "../support/edge-fixture.ts";
import { createMigration, setPodRunning } from "../support/objects.ts";

const REPO = "registry.hr.example:5000/edgeshift/checkpoints";
const D = `sha256:${"e".repeat(64)}`;

let f: EdgeFixture;

const phase = (name: string, want: string) => f.until(name, want, (m) => m.status?.phase === want);

/** The agent's report: held frozen at the end of the dump, the image pushed. */
function heldAndPushed(m: Migration, container = "app"): Promise<Migration> {
  const at = new Date().toISOString();
  return writeMigrationStatus(f.c.custom, m, (s) => {
    s.timestamps = {
      ...s.timestamps,
      checkpointStarted: at,
      frozen: at,
      checkpointed: at,
      imagePushed: at,
    };
    s.containers = [{ name: container, digest: D, imageSizeBytes: 100, freezeGapMilliseconds: 0 }];
    s.conditions = [
      ...(s.conditions ?? []),
      ...(["Checkpointed", "ImagePushed"] as const).map((type) => ({
        type,
        status: "True" as const,
        reason: type === "Checkpointed" ? "CheckpointCreated" : "ImagePushed",
        message: "ok",
        lastTransitionTime: at,
      })),
    ];
  });
}

/** The agent's report that the original runs again. */
function thawed(m: Migration): Promise<Migration> {
  return writeMigrationStatus(f.c.custom, m, (s) => {
    s.timestamps = { ...s.timestamps, thawed: new Date().toISOString() };
  });
}

async function readPod(name: string): Promise<V1Pod | undefined> {
  return f.c.core.readNamespacedPod({ namespace: f.namespace, name }).catch(() => undefined);
}

/** Up to the restored pod scheduled onto the cloud node, the original held. */
async function restoring(name: string): Promise<{ m: Migration; restored: string }> {
  await createMigration(f.c, f.namespace, name, { podName: name });
  await heldAndPushed(await phase(name, "Checkpointing"));
  const m = await f.until(name, "the restored pod recorded", (x) => Boolean(x.status?.restoredPod));
  const restored = m.status?.restoredPod ?? "";
  await waitUntil(
    `${restored} scheduled`,
    async () => ((await readPod(restored))?.spec?.nodeName === f.cloud ? true : undefined),
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return { m, restored };
}

/** Waits for the operator's graceful delete; the pod stays until its (absent) kubelet confirms. */
async function terminating(pod: string): Promise<V1Pod> {
  return waitUntil(
    `${pod} terminating`,
    async () => {
      const p = await readPod(pod);
      return p?.metadata?.deletionTimestamp ? p : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

/** What the cloud kubelet does once the pod's containers have stopped. */
async function kubeletRemoves(pod: string): Promise<void> {
  await f.c.core.deleteNamespacedPod({ namespace: f.namespace, name: pod, gracePeriodSeconds: 0 });
}

async function gone(name: string): Promise<void> {
  await waitUntil(
    `${name} gone`,
    async () =>
      (await f.c.custom
        .getNamespacedCustomObject({
          group: "edgeshift.dev",
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: f.namespace,
          name,
        })
        .then(() => undefined)
        .catch(() => true)) ?? undefined,
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

beforeAll(async () => {
  f = await edgeFixture({
    prefix: "hr",
    kubeconfig: inject("kubeconfig"),
    kubectl: inject("kubectl"),
    natsUrl: inject("natsUrl"),
    pods: ["deleted", "broken", "refused", "cut"],
    spec: {
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
      handoff: "Freeze",
      registry: { repository: REPO },
    },
  });
  // The base image is on the cloud node already: no pre-pull pod to play.
  await f.c.core.patchNodeStatus(
    { name: f.cloud, body: { status: { images: [{ names: ["registry.local/workload:1"] }] } } },
    mergePatch,
  );
});

afterAll(async () => {
  await f?.cleanup();
});

describe("a held original released on rollback", () => {
  it("deleted in flight: the restored pod is stopped by its kubelet before the release, and the Migration stays until the original is thawed", async () => {
    const { restored } = await restoring("deleted");
    await f.c.custom.deleteNamespacedCustomObject({
      group: "edgeshift.dev",
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: f.namespace,
      name: "deleted",
    });
    // Deleted gracefully, not forced: it is still there, its containers running.
    await terminating(restored);
    let m = await f.read("deleted");
    expect(m.metadata.deletionTimestamp).toBeDefined();
    expect(m.metadata.finalizers).toContain(CLEANUP_FINALIZER);
    expect(m.status?.timestamps?.released).toBeUndefined();
    await kubeletRemoves(restored);
    m = await f.until("deleted", "released", (x) => Boolean(x.status?.timestamps?.released));
    expect(Date.parse(m.status?.timestamps?.released ?? "")).toBeGreaterThan(0);
    // Still there: the agent has not thawed the original yet.
    expect(m.metadata.finalizers).toContain(CLEANUP_FINALIZER);
    await thawed(m);
    await gone("deleted");
    expect(await readPod("deleted")).toBeDefined();
  });

  it("failed: released only once the restored pod is gone, and the cleanup finalizer kept until the thaw", async () => {
    const { restored } = await restoring("broken");
    const now = new Date().toISOString();
    await f.c.core.patchNamespacedPodStatus(
      {
        namespace: f.namespace,
        name: restored,
        body: {
          status: {
            phase: "Running",
            containerStatuses: [
              {
                name: "app",
                image: "x",
                imageID: "",
                ready: false,
                restartCount: 1,
                state: { waiting: { reason: "CrashLoopBackOff", message: "back-off" } },
                lastState: { terminated: { exitCode: 1, reason: "Error", finishedAt: now } },
              },
            ],
          },
        },
      },
      mergePatch,
    );
    let m = await phase("broken", "Failed");
    expect(m.status?.failureReason).toBe("RestoreFailed");
    await terminating(restored);
    m = await f.read("broken");
    expect(m.status?.timestamps?.released).toBeUndefined();
    expect(m.metadata.finalizers).toContain(CLEANUP_FINALIZER);
    await kubeletRemoves(restored);
    m = await f.until("broken", "released", (x) => Boolean(x.status?.timestamps?.released));
    expect(m.metadata.finalizers).toContain(CLEANUP_FINALIZER);
    await thawed(m);
    await f.until(
      "broken",
      "the cleanup finalizer released",
      (x) => !x.metadata.finalizers?.includes(CLEANUP_FINALIZER),
    );
  });

  it("cut over: the held original is deleted with a 1 s grace period, not its own 30 s (it cannot act on a SIGTERM)", async () => {
    const { restored } = await restoring("cut");
    await setPodRunning(f.c, f.namespace, restored);
    const original = await terminating("cut");
    expect(original.spec?.terminationGracePeriodSeconds).toBe(30);
    expect(original.metadata?.deletionGracePeriodSeconds).toBe(1);
  });

  it("failed before any restored pod was created: released at once", async () => {
    await createMigration(f.c, f.namespace, "refused", { podName: "refused" });
    const m = await phase("refused", "Checkpointing");
    // Held, then a report for a container this migration does not move: ImageRejected.
    await heldAndPushed(m, "other");
    const failed = await f.until("refused", "released", (x) =>
      Boolean(x.status?.timestamps?.released),
    );
    expect(failed.status?.phase).toBe("Failed");
    expect(failed.status?.failureReason).toBe("ImageRejected");
    // Its name recorded, never created.
    expect(await readPod(failed.status?.restoredPod ?? "")).toBeUndefined();
  });
});
