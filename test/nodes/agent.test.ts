// The edge agent as users run it: the bundle's DaemonSet pod on edge-1 with its
// ServiceAccount, calling its own node's real kubelet (containerd + runc +
// CRIU), pushing to the cluster's registry. No operator acts here: the test
// holds the operator's Lease and hands the agent Migrations in the state the
// operator leaves them in (Checkpointing), so every effect seen is the agent's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EDGENODE_LABEL,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { agentIdentity } from "../../operator/edgenode/agent.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { waitUntil } from "../cluster/process.ts";
import { getMigration } from "./moves.ts";
import {
  agentPod,
  archivesOn,
  blockTraffic,
  containerId,
  freezeContainer,
  holdCriu,
  killContainer,
  manifestStatus,
  operatorLeader,
  releaseOperatorLease,
  restarts,
  stopOperator,
  waitForHeldCriu,
} from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const NS = () => cluster().appNamespace;
const EDGE = () => cluster().nodes[0]?.name ?? "";
const REPO = () => `${cluster().registry.host}/edgeshift/checkpoints`;
const made: string[] = [];

/** A Migration in the Checkpointing phase, as the operator leaves it for the agent. */
async function checkpointing(name: string, pod: string): Promise<void> {
  const { custom } = clients();
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS(),
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Migration",
      metadata: {
        name,
        labels: { [SOURCE_NODE_LABEL]: EDGE(), [EDGENODE_LABEL]: cluster().edgeNode },
      },
      spec: { podName: pod, containers: ["main"] },
    },
  });
  made.push(name);
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS(),
      name,
      body: {
        status: {
          phase: "Checkpointing",
          sourceNode: EDGE(),
          edgeNode: cluster().edgeNode,
          // The one agent admission lets write the agent's part.
          agentIdentity: agentIdentity(SYSTEM_NAMESPACE, cluster().edgeNode),
          policy: "checkpoint",
          containers: [{ name: "main" }],
        },
      },
    },
    mergePatch,
  );
}

const get = (name: string) => getMigration(NS(), name);
const cond = (m: Migration, type: string) => m.status?.conditions?.find((x) => x.type === type);

async function decided(name: string, type: string): Promise<Migration> {
  return waitUntil(
    `${name} ${type} decided`,
    async () => {
      const m = await get(name);
      const s = cond(m, type)?.status;
      const failed = m.status?.conditions?.some((x) => x.status === "False");
      return s === "True" || s === "False" || failed ? m : undefined;
    },
    { timeoutMs: 90_000, intervalMs: 100 },
  );
}

async function gone(name: string): Promise<void> {
  await waitUntil(
    `Migration ${name} gone`,
    async () =>
      get(name).then(
        () => undefined,
        () => true,
      ),
    { timeoutMs: 60_000 },
  );
}

async function agentLog(): Promise<string> {
  const pod = await agentPod(EDGE());
  return kubectl(["-n", SYSTEM_NAMESPACE, "logs", pod.metadata?.name ?? "", "-c", "agent"]);
}

/** A busybox whose shell holds `mb` MB of touched memory, so its dump takes a while. */
function memoryHog(name: string, mb: number): object {
  const pod = busyboxPod(
    NS(),
    name,
    EDGE(),
    `awk 'BEGIN { s = sprintf("%${mb * 1000 * 1000}s", ""); while (1) system("sleep 1") }'`,
  ) as { spec: { containers: { resources: unknown }[] } };
  const [c] = pod.spec.containers;
  if (c)
    c.resources = {
      requests: { cpu: "10m", memory: `${mb + 32}Mi` },
      limits: { memory: `${2 * mb + 64}Mi` },
    };
  return pod;
}

beforeAll(async () => {
  await stopOperator();
  await agentPod(EDGE());
}, 180_000);

afterAll(async () => {
  const { custom, core } = clients();
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
  // The agent's finalizer goes once it deleted the images: then the operator may lead again.
  for (const name of made) await gone(name).catch(() => {});
  for (const p of ["ag-web", "ag-big", "ag-web2"]) {
    await core
      .deleteNamespacedPod({ namespace: NS(), name: p, gracePeriodSeconds: 0 })
      .catch(() => {});
  }
  await releaseOperatorLease();
  await operatorLeader();
}, 180_000);

describe("edge agent on a real node", () => {
  it("checkpoints through the real kubelet, pushes the image, records it and deletes the archive", async () => {
    await apply(busyboxPod(NS(), "ag-web", EDGE(), "while true; do sleep 1; done"));
    await waitForPod(NS(), "ag-web", "Ready", podReady);
    await checkpointing("ag-ok", "ag-web");
    const m = await decided("ag-ok", "ImagePushed");
    expect(cond(m, "Checkpointed")).toMatchObject({ status: "True", reason: "CheckpointCreated" });
    expect(cond(m, "ImagePushed"), await agentLog()).toMatchObject({
      status: "True",
      reason: "ImagePushed",
    });
    // The operator (stopped here) moves the phase; the agent only reports.
    expect(m.status?.phase).toBe("Checkpointing");
    const entry = m.status?.containers?.find((x) => x.name === "main");
    // The kubelet's own path and name for the archive, as the agent's hostPath sees it.
    expect(entry?.archivePath).toMatch(
      new RegExp(`^/var/lib/kubelet/checkpoints/checkpoint-ag-web_${NS()}-main-\\d{4}-.*\\.tar$`),
    );
    expect(entry?.archiveSizeBytes).toBeGreaterThan(0);
    expect(entry?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The digest only: the operator builds the image reference from the EdgeNode's repository.
    expect(entry?.image).toBeUndefined();
    expect(entry?.imageSizeBytes).toBeGreaterThan(0);
    for (const t of ["checkpointStarted", "checkpointed", "imagePushed"] as const) {
      expect(m.status?.timestamps?.[t], t).toBeDefined();
    }
    // The archive holds process memory: gone from the node once pushed.
    expect(await archivesOn(EDGE(), NS(), "ag-web")).toEqual([]);
    // The registry serves the tagged image with the digest the status names.
    expect(await manifestStatus(REPO(), "ag-ok-main")).toBe(200);
    expect(await manifestStatus(REPO(), entry?.digest ?? "")).toBe(200);
    // The checkpoint left the container running.
    const pod = await waitForPod(NS(), "ag-web", "Ready", podReady);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    expect(await agentLog()).not.toContain(cluster().registry.password);
  });

  it("deletes a Migration's checkpoint image before letting the Migration go", async () => {
    const m = await get("ag-ok");
    expect(m.metadata.finalizers).toContain("edgeshift.dev/checkpoint-images");
    const digest = m.status?.containers?.[0]?.digest ?? "";
    expect(await manifestStatus(REPO(), digest)).toBe(200);
    await clients().custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS(),
      name: "ag-ok",
    });
    await gone("ag-ok");
    expect(await manifestStatus(REPO(), digest)).toBe(404);
    expect(await manifestStatus(REPO(), "ag-ok-main")).toBe(404);
  });

  it("adopts the kubelet's archive after a crash mid-checkpoint: one archive, one image", async () => {
    await apply(memoryHog("ag-big", 256));
    await waitForPod(NS(), "ag-big", "Ready", podReady);
    const agent = await agentPod(EDGE());
    const agentId = containerId(agent, "agent");
    // The dump is held before CRIU starts: a fast one would otherwise end
    // before the test sees it (CI once missed a 2.8 s call polling every 1 ms).
    const release = await holdCriu(EDGE());
    try {
      await checkpointing("ag-crash", "ag-big");
      // The runtime's CRIU call waits: the agent's call is inside the kubelet.
      // Frozen, the agent can no longer read the kubelet's answer nor record anything.
      await waitForHeldCriu(EDGE()).catch(async (err) => {
        const m = await get("ag-crash");
        throw new Error(
          `${err.message}; Migration: ${JSON.stringify(m.status)}; agent:\n${await agentLog()}`,
        );
      });
      await freezeContainer(agentId, true);
    } finally {
      await release();
    }
    try {
      // The kubelet finishes the checkpoint it was asked for.
      await waitUntil(
        "the kubelet's archive",
        async () => ((await archivesOn(EDGE(), NS(), "ag-big")).length === 1 ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      expect((await get("ag-crash")).status?.containers?.[0]?.archivePath).toBeUndefined();
      // The crash: SIGKILL, delivered as the cgroup thaws.
      await killContainer(agent, "agent");
    } finally {
      await freezeContainer(agentId, false).catch(() => {});
    }
    const [archive] = await archivesOn(EDGE(), NS(), "ag-big");
    // The kubelet restarts the agent; the new one finds the archive and goes on.
    const restarted = await waitUntil(
      "the agent restarted",
      async () => {
        const p = await agentPod(EDGE());
        return restarts(p, "agent") > restarts(agent, "agent") ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(restarted.metadata?.name).toBe(agent.metadata?.name);
    const m = await decided("ag-crash", "ImagePushed");
    expect(cond(m, "ImagePushed")?.status, await agentLog()).toBe("True");
    expect(m.status?.containers?.[0]?.archivePath).toBe(`/var/lib/kubelet/checkpoints/${archive}`);
    expect(await agentLog()).toContain("Adopted the archive of an interrupted checkpoint");
    // One archive (pushed, then deleted), one image.
    expect(await archivesOn(EDGE(), NS(), "ag-big")).toEqual([]);
    expect(await manifestStatus(REPO(), "ag-crash-main")).toBe(200);
  });

  it("recovers when killed with the checkpoint call in CRIU: the kubelet cancels the call, one image, no archive left", async () => {
    const agent = await agentPod(EDGE());
    const release = await holdCriu(EDGE());
    try {
      await checkpointing("ag-crash2", "ag-big");
      await waitForHeldCriu(EDGE());
      // SIGKILL with the call open: the connection closes and the kubelet cancels
      // its CRI call; containerd may still finish writing the archive.
      await killContainer(agent, "agent");
    } finally {
      await release();
    }
    await waitUntil(
      "the agent restarted",
      async () => {
        const p = await agentPod(EDGE());
        return restarts(p, "agent") > restarts(agent, "agent") ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const m = await decided("ag-crash2", "ImagePushed");
    expect(cond(m, "ImagePushed")?.status, await agentLog()).toBe("True");
    const adopted = (await agentLog()).includes("Adopted the archive of an interrupted checkpoint");
    console.log(
      `[measure] agent killed while CRIU ran: the restarted agent ${adopted ? "adopted the archive containerd finished after the cancel" : "found no archive and checkpointed again"}`,
    );
    expect(await manifestStatus(REPO(), "ag-crash2-main")).toBe(200);
    expect(await archivesOn(EDGE(), NS(), "ag-big")).toEqual([]);
  });

  it("fails with RegistryUnavailable when the registry is unreachable, and leaves no archive", async () => {
    await apply(busyboxPod(NS(), "ag-web2", EDGE(), "while true; do sleep 1; done"));
    await waitForPod(NS(), "ag-web2", "Ready", podReady);
    const [host = "", port = "0"] = cluster().registry.host.split(":");
    const net = blockTraffic(EDGE(), host, Number(port));
    await net.block();
    let m: Migration;
    try {
      await checkpointing("ag-noreg", "ag-web2");
      m = await decided("ag-noreg", "ImagePushed");
    } finally {
      await net.unblock();
    }
    expect(cond(m, "Checkpointed")?.status).toBe("True");
    expect(cond(m, "ImagePushed"), await agentLog()).toMatchObject({
      status: "False",
      reason: "RegistryUnavailable",
    });
    // The failure itself is the operator's to record (it is stopped here).
    expect(m.status?.failureReason).toBeUndefined();
    expect(await archivesOn(EDGE(), NS(), "ag-web2")).toEqual([]);
    const pod = await waitForPod(NS(), "ag-web2", "Ready", podReady);
    expect(pod.spec?.nodeName).toBe(EDGE());
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  });
});
