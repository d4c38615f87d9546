// The checkpoint policy through the installed product on real nodes, with the
// operator crashed (SIGKILL to the leader's container) at three points of one
// migration: while the agent checkpoints, after the image is pushed, and after
// the restored pod exists. The moments come from the Migration's status; the
// test holds the operator's Lease between them so no replica acts until it
// hands the Lease back. The migration must still finish once, from the pushed
// image, with exactly one restored pod.
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, describe, expect, it } from "vitest";
import {
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationSpec,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { createMigration, getMigration } from "./moves.ts";
import {
  agentPod,
  archivesOn,
  blockTraffic,
  containerId,
  freezeContainer,
  manifestStatus,
  operatorLeader,
  podsWith,
  releaseOperatorLease,
  restarts,
  stopOperator,
} from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const NS = () => cluster().appNamespace;
const EDGE = () => cluster().nodes[0]?.name ?? "";
const CLOUD = () => cluster().nodes[1]?.name ?? "";
const REPO = () => `${cluster().registry.host}/edgeshift/checkpoints`;
const made: string[] = [];
// The Migration's pods except the pre-pull pod it may start on the target first.
const RESTORED = (m: string) => `edgeshift.dev/migration=${m},!edgeshift.dev/prepull`;

const COUNTER = 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done';

const get = (name: string) => getMigration(NS(), name);

async function create(name: string, spec: MigrationSpec): Promise<void> {
  await createMigration(NS(), name, spec);
  made.push(name);
}

const until = (name: string, what: string, ok: (m: Migration) => boolean, timeoutMs = 120_000) =>
  waitUntil(
    `${name} ${what}`,
    async () => {
      const m = await get(name);
      return ok(m) ? m : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
const finished = (m: Migration) => m.status?.phase === "Succeeded" || m.status?.phase === "Failed";

async function ensureLeader(): Promise<V1Pod> {
  await releaseOperatorLease();
  return operatorLeader();
}

afterAll(async () => {
  const { custom, core } = clients();
  await ensureLeader().catch(() => {});
  for (const name of made) {
    await custom
      .deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS(),
        name,
      })
      .catch(() => {});
  }
  for (const sel of ["app=ck-counter", "app=ck-counter2"]) {
    for (const p of await podsWith(NS(), sel).catch(() => [] as V1Pod[])) {
      await core
        .deleteNamespacedPod({
          namespace: NS(),
          name: p.metadata?.name ?? "",
          gracePeriodSeconds: 0,
        })
        .catch(() => {});
    }
  }
}, 180_000);

describe("checkpoint policy across operator crashes, real nodes", () => {
  it("restores from the pushed image across operator kills (mid-checkpoint, after push, after the restored pod exists)", async () => {
    await apply(busyboxPod(NS(), "ck-counter", EDGE(), COUNTER));
    await waitForPod(NS(), "ck-counter", "Ready", podReady);
    await operatorLeader();
    const agent = await agentPod(EDGE());
    const agentId = containerId(agent, "agent");
    const log: string[] = [];

    // 1. Mid-checkpoint: the agent frozen holds the Migration in Checkpointing.
    await freezeContainer(agentId, true);
    try {
      await create("ck-counter", { podName: "ck-counter", fallbackToRestart: false });
      await until("ck-counter", "Checkpointing", (m) => m.status?.phase === "Checkpointing");
      const killed = await stopOperator();
      log.push(`killed ${killed.metadata?.name} in Checkpointing`);
    } finally {
      await freezeContainer(agentId, false);
    }

    // With no operator leading, the agent checkpoints and pushes on its own; the
    // operator's next move (the restored pod) waits for a leader.
    let m = await until(
      "ck-counter",
      "image pushed",
      (x) =>
        x.status?.conditions?.some((c) => c.type === "ImagePushed" && c.status !== "Unknown") ??
        false,
    );
    expect(m.status?.conditions?.find((c) => c.type === "ImagePushed")?.status).toBe("True");
    // Only the operator moves the phase (admission refuses it the agent).
    expect(m.status?.phase).toBe("Checkpointing");
    expect(await podsWith(NS(), RESTORED("ck-counter"))).toEqual([]);

    // 2. After the push: a leader takes over, and is killed as soon as it acts.
    let leader = await ensureLeader();
    const restoredName = await waitUntil(
      "the restored pod",
      async () => (await podsWith(NS(), RESTORED("ck-counter")))[0]?.metadata?.name,
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    // 3. After the restored pod exists: the Lease held, the leader killed.
    leader = await stopOperator();
    m = await get("ck-counter");
    log.push(
      `killed ${leader.metadata?.name} with ${restoredName} existing, phase ${m.status?.phase}`,
    );
    expect(m.status?.phase).toBe("Restoring");
    const cut = await ensureLeader();
    log.push(`leader now ${cut.metadata?.name}, restarted ${restarts(cut, "operator")} time(s)`);
    console.log(`[measure] ${log.join("; ")}`);

    m = await until("ck-counter", "finished", finished);
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("checkpoint");
    const entry = m.status?.containers?.[0];
    expect(entry?.image).toMatch(
      new RegExp(`^${REPO().replace(/[.]/g, "\\.")}@sha256:[0-9a-f]{64}$`),
    );
    for (const k of [
      "created",
      "checkpointStarted",
      "checkpointed",
      "imagePushed",
      "restoreStarted",
      "restored",
      "cutOver",
      "finished",
    ] as const) {
      expect(m.status?.timestamps?.[k], k).toBeDefined();
    }
    // One restored pod, from the checkpoint image, on the cloud node; the original gone.
    const pods = await waitUntil(
      "one counter pod",
      async () => {
        const p = await podsWith(NS(), "app=ck-counter");
        return p.length === 1 ? p : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(pods[0]?.metadata?.name).toBe(restoredName);
    expect(pods[0]?.spec?.nodeName).toBe(CLOUD());
    expect(pods[0]?.spec?.containers[0]?.image).toBe(entry?.image);
    const ever = await clients().core.listNamespacedPod({
      namespace: NS(),
      labelSelector: RESTORED("ck-counter"),
    });
    expect(ever.items.map((p) => p.metadata?.name)).toEqual([restoredName]);
    // The restored process goes on counting (its memory came along).
    await waitForPod(NS(), restoredName, "Ready", podReady);
    const logs = await kubectl(["-n", NS(), "logs", restoredName]);
    expect(logs).toMatch(/^tick 1$/m);
    expect(await archivesOn(EDGE(), NS(), "ck-counter")).toEqual([]);
    // Done: the image (process memory) leaves the registry and the agent's finalizer goes.
    await waitUntil(
      "the checkpoint image deleted and the finalizer gone",
      async () =>
        ((await get("ck-counter")).metadata.finalizers ?? []).length === 0 &&
        (await manifestStatus(REPO(), entry?.digest ?? "")) === 404
          ? true
          : undefined,
      { timeoutMs: 60_000 },
    );
  });

  it("fails with RegistryUnavailable when the edge node cannot reach the registry, leaving the original running", async () => {
    await ensureLeader();
    await apply(busyboxPod(NS(), "ck-counter2", EDGE(), COUNTER));
    await waitForPod(NS(), "ck-counter2", "Ready", podReady);
    const [host = "", port = "0"] = cluster().registry.host.split(":");
    const net = blockTraffic(EDGE(), host, Number(port));
    await net.block();
    let m: Migration;
    try {
      await create("ck-counter2", { podName: "ck-counter2", fallbackToRestart: false });
      m = await until("ck-counter2", "finished", finished);
    } finally {
      await net.unblock();
    }
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason, m.status?.message).toBe("RegistryUnavailable");
    const pods = await podsWith(NS(), "app=ck-counter2");
    expect(pods.map((p) => [p.metadata?.name, p.spec?.nodeName, p.status?.phase])).toEqual([
      ["ck-counter2", EDGE(), "Running"],
    ]);
    expect(pods[0]?.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    expect(await podsWith(NS(), RESTORED("ck-counter2"))).toEqual([]);
    expect(await archivesOn(EDGE(), NS(), "ck-counter2")).toEqual([]);
  });
});
