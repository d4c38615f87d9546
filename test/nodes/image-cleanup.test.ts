// Checkpoint images leave the registry even when the edge agent that pushed
// them cannot remove them: here the edge node is cut off from the registry
// (iptables in its network namespace) right after the push, the migration
// succeeds all the same (cloud-1 pulls the image), and the agent's finalizer
// stays. After the grace the operator runs its image-cleanup pod, off the edge
// node, with the EdgeNode's registry Secret mounted, and the finalizer goes.
import { afterEach, describe, expect, it } from "vitest";
import { IMAGE_FINALIZER } from "../../migration/registry/cleanup.ts";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { waitUntil } from "../cluster/process.ts";
import * as moves from "./moves.ts";
import { blockTraffic, manifestStatus } from "./node-control.ts";
import { apply, busyboxPod, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const ID = "imgclean";
const ns = () => cluster().appNamespace;
const edge = () => cluster().nodes[0]?.name ?? "";
const REPO = () => `${cluster().registry.host}/edgeshift/checkpoints`;
let unblock: (() => Promise<void>) | undefined;

afterEach(async () => {
  await unblock?.();
  unblock = undefined;
  await moves.cleanUp(ns(), ID, ["ic-web"]);
});

const pushed = (m: Migration) =>
  m.status?.conditions?.some((c) => c.type === "ImagePushed" && c.status === "True") ?? false;

describe("checkpoint images when the edge agent cannot remove them", () => {
  it("are removed by the operator's cleanup pod once the agent is cut off from the registry", async () => {
    await apply(
      busyboxPod(ns(), "ic-web", edge(), "i=0; while true; do i=$((i+1)); echo $i; sleep 1; done", {
        labels: { test: ID },
      }),
    );
    await waitForPod(ns(), "ic-web", "Ready", podReady);
    await moves.createMigration(
      ns(),
      "ic-web",
      { podName: "ic-web", restorePolicy: "checkpoint" },
      { test: ID },
    );
    await waitUntil(
      "the checkpoint image pushed",
      async () => {
        const m = await moves.getMigration(ns(), "ic-web");
        if (m.status?.phase === "Failed") throw new Error(`Failed: ${m.status.message}`);
        return pushed(m) ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    const [host = "", port = "0"] = cluster().registry.host.split(":");
    const net = blockTraffic(edge(), host, Number(port));
    await net.block();
    unblock = () => net.unblock();

    const done = await moves.awaitMigration(ns(), "ic-web");
    expect(done.status?.phase, done.status?.message).toBe("Succeeded");
    const digest = done.status?.containers?.[0]?.digest ?? "";
    expect(digest).toMatch(/^sha256:/);
    // The agent cannot reach the registry: its finalizer stays, and so does the image.
    expect(done.metadata.finalizers ?? []).toContain(IMAGE_FINALIZER);
    expect(await manifestStatus(REPO(), digest)).toBe(200);

    const released = await waitUntil(
      "the image finalizer released",
      async () => {
        const m = await moves.getMigration(ns(), "ic-web");
        return (m.metadata.finalizers ?? []).includes(IMAGE_FINALIZER) ? undefined : m;
      },
      { timeoutMs: 300_000, intervalMs: 1000 },
    );
    expect(released.status?.phase).toBe("Succeeded");
    expect(await manifestStatus(REPO(), digest)).toBe(404);
    const events = await moves.eventMessages(
      ns(),
      { kind: "Migration", name: "ic-web" },
      "CheckpointImagesDeleted",
    );
    expect(events.join("\n")).toMatch(/in the edge agent's place/);
    // The cleanup pod is gone with its work.
    const left = await kubectl([
      "-n",
      SYSTEM_NAMESPACE,
      "get",
      "pods",
      "-l",
      "app.kubernetes.io/component=image-cleanup",
      "-o",
      "name",
    ]);
    expect(left.trim()).toBe("");
  }, 480_000);
});
