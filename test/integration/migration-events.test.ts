// Migration steps are woken by watch events, not by polling. The real operator
// runs with its resync (the sleep of a step that no event woke) set to ten
// minutes. A restart Migration's restored pod is held not Ready (there is no
// kubelet here until the test plays its part): while it waits, the operator
// does not reconcile the Migration again and again. When the pod turns Ready,
// its watch event alone moves the Migration through cutover to Succeeded.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MIGRATION_POD_LABEL } from "../../migration/restore/pod.ts";
import { waitUntil } from "../cluster/process.ts";
import { type EdgeFixture, edgeFixture } from "../support/edge-fixture.ts";
import { createMigration, setPodRunning } from "../support/objects.ts";

let f: EdgeFixture;

/** How many times the operator has reconciled a Migration so far (its own metric). */
const reconciles = () =>
  f.op.metric("edgeshift_reconcile_duration_seconds_count", { queue: "migrations" });

/** The reconcile count once it has not moved for a second (at most 15 s). */
async function quiet(): Promise<number> {
  let last = await reconciles();
  for (let i = 0; i < 15; i++) {
    await new Promise((r) => setTimeout(r, 1_000));
    const now = await reconciles();
    if (now === last) return now;
    last = now;
  }
  return last;
}

beforeAll(async () => {
  f = await edgeFixture({
    prefix: "evt",
    kubeconfig: inject("kubeconfig"),
    kubectl: inject("kubectl"),
    natsUrl: inject("natsUrl"),
    pods: ["evt"],
    spec: { restorePolicy: "restart" },
    operatorEnv: { EDGESHIFT_MIGRATION_RESYNC: "10m", EDGESHIFT_RESTORE_TIMEOUT: "10m" },
  });
});

afterAll(async () => {
  await f?.cleanup();
});

describe("migration steps wait on watch events", () => {
  it("sleeps while the restored pod is not Ready, and cuts over on its Ready event alone", async () => {
    await createMigration(f.c, f.namespace, "evt", { podName: "evt" });
    const restoring = await f.until("evt", "a restored pod", (m) => Boolean(m.status?.restoredPod));
    const name = restoring.status?.restoredPod ?? "";
    const pods = await waitUntil(
      "the restored pod created",
      async () => {
        const list = await f.c.core.listNamespacedPod({
          namespace: f.namespace,
          labelSelector: `${MIGRATION_POD_LABEL}=evt`,
        });
        return list.items.length > 0 ? list.items : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(pods.map((p) => p.metadata?.name)).toEqual([name]);
    // Held: nothing changes for 5 s. A step that polls reconciles every few
    // hundred milliseconds meanwhile; one that waits for events does not. The
    // count starts once the pod's creation has been handled (its own write's
    // event, the pod's first events): no reconcile for a second.
    const before = await quiet();
    await new Promise((r) => setTimeout(r, 5_000));
    const during = (await reconciles()) - before;
    expect(during, `reconciles while nothing changed: ${during}`).toBeLessThanOrEqual(2);
    expect((await f.read("evt")).status?.phase).toBe("Restoring");
    // The test plays the cloud node's kubelet: the pod runs and is Ready.
    await setPodRunning(f.c, f.namespace, name);
    const done = await f.until("evt", "Succeeded", (m) => m.status?.phase === "Succeeded");
    expect(done.status?.message).toContain(name);
    const original = await f.c.core
      .readNamespacedPod({ namespace: f.namespace, name: "evt" })
      .catch(() => undefined);
    expect(original?.metadata?.deletionTimestamp ?? "gone").toBeTruthy();
  }, 90_000);
});
