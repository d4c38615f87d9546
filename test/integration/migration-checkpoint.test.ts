// The checkpoint policy through every component that runs here: the operator
// (decision-free: a hand-written Migration), the edge agent with the kubelet
// stand-in, the real registry, the real scheduler and controller manager. The
// operator is killed at two points of one migration and must finish it once.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { freePort, waitUntil } from "../cluster/process.ts";
import { type RunningAgent, startAgent } from "../support/agent.ts";
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
const registry = inject("registry");
const NS = "ck-apps";
const G = "test.edgeshift.dev/group";
const REPO = `${registry.host}/edgeshift/ck`;

let c: Clients;
let dir: string;
let sim: PodLifecycleStandIn;
let saKubeconfig: string;
const agents: RunningAgent[] = [];
const operators: RunningOperator[] = [];

const edgeNode = (name: string, group: string, repository: string) => ({
  apiVersion: "edgeshift.dev/v1alpha1",
  kind: "EdgeNode",
  metadata: { name },
  spec: {
    nodeSelector: { matchLabels: { [G]: group } },
    pods: { namespaces: [NS] },
    thresholds: { cpu: { triggerPercent: 90 } },
    cloud: { nodeSelector: { matchLabels: { [G]: "ck-cloud" } } },
    restorePolicy: "checkpoint",
    fallbackToRestart: false,
    registry: { repository, insecure: true },
  },
});

const podsWith = async (selector: string) =>
  (await c.core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items.filter(
    (p: V1Pod) => !p.metadata?.deletionTimestamp,
  );
const getMig = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name,
  })) as Migration;
const createMig = (name: string, pod: string) =>
  c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "Migration",
      metadata: { name },
      spec: { podName: pod },
    },
  });
const finished = (name: string) =>
  waitUntil(
    `${name} to finish`,
    async () => {
      const m = await getMig(name);
      return m.status?.phase === "Succeeded" || m.status?.phase === "Failed" ? m : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );

async function operator(name: string): Promise<RunningOperator> {
  const op = await startOperator({ name, kubeconfig: saKubeconfig, natsUrl });
  operators.push(op);
  return op;
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  dir = await mkdtemp(join(tmpdir(), "edgeshift-ck-"));
  await installOperatorRbac(kubectl, kubeconfig);
  await createNode(c, "ck-edge", { [G]: "ck-edge" }, "cri-o://1.30.4");
  await createNode(c, "ck-edge-down", { [G]: "ck-edge-down" }, "cri-o://1.30.4");
  await createNode(c, "ck-cloud", { [G]: "ck-cloud" }, "cri-o://1.30.4");
  sim = new PodLifecycleStandIn(c, {
    "ck-edge": "cri-o://1.30.4",
    "ck-edge-down": "cri-o://1.30.4",
    "ck-cloud": "cri-o://1.30.4",
  });
  sim.start();
  await createNamespace(c, NS);
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: edgeNode("ck", "ck-edge", REPO),
  });
  // A registry address nothing listens on.
  const dead = `127.0.0.1:${await freePort()}/edgeshift/down`;
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: edgeNode("ck-down", "ck-edge-down", dead),
  });
  agents.push(
    await startAgent({
      kubeconfig,
      node: "ck-edge",
      edgeNode: "ck",
      repository: REPO,
      registry,
      dir,
    }),
  );
  agents.push(
    await startAgent({
      kubeconfig,
      node: "ck-edge-down",
      edgeNode: "ck-down",
      repository: dead,
      registry,
      dir,
    }),
  );
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createPod(c, NS, "counter", "ck-edge", { labels: { app: "counter" } });
  await createPod(c, NS, "counter2", "ck-edge-down", { labels: { app: "counter2" } });
});

afterAll(async () => {
  sim?.stop();
  for (const op of operators) {
    await op.kill();
    await op.cleanup();
  }
  for (const a of agents) await a.stop();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  for (const en of ["ck", "ck-down"]) {
    await c.custom
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: "edgenodes", name: en })
      .catch(() => {});
  }
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  for (const n of ["ck-edge", "ck-edge-down", "ck-cloud"])
    await c.core.deleteNode({ name: n }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe("checkpoint policy end to end (kubelet stand-in)", () => {
  it("restores from the pushed checkpoint image across operator kills (mid-checkpoint, after push, after the restored pod exists)", async () => {
    const [agent] = agents;
    if (!agent) throw new Error("no agent");
    // A slow checkpoint, so the operator can be killed while the agent works.
    agent.standin.settings.delayMs = 1500;
    let op = await operator("ck-op-1");
    await createMig("counter", "counter");
    await waitUntil(
      "checkpointing",
      async () => ((await getMig("counter")).status?.phase === "Checkpointing" ? true : undefined),
      {
        timeoutMs: 20_000,
        intervalMs: 50,
      },
    );
    await op.kill();
    // Hold the restored pod so the next kill lands after it was created.
    const holdRestored = setInterval(async () => {
      for (const p of await podsWith("app=counter").catch(() => [])) {
        if (p.metadata?.name !== "counter") sim.hold.add(p.metadata?.name ?? "");
      }
    }, 20);
    // With no operator running, the agent finishes checkpoint and push on its own:
    // the next operator starts from "image pushed".
    await waitUntil(
      "the image pushed while no operator runs",
      async () =>
        (await getMig("counter")).status?.conditions?.some(
          (x) => x.type === "ImagePushed" && x.status === "True",
        )
          ? true
          : undefined,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    expect((await getMig("counter")).status?.phase).toBe("Pushing");
    op = await operator("ck-op-2");
    const restoredName = await waitUntil(
      "the restored pod",
      async () =>
        (await podsWith("app=counter")).find((p) => p.metadata?.name !== "counter")?.metadata?.name,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    clearInterval(holdRestored);
    await op.kill();
    op = await operator("ck-op-3");
    sim.hold.delete(restoredName);

    const m = await finished("counter");
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("checkpoint");
    const entry = m.status?.containers?.[0];
    expect(entry?.image).toMatch(
      new RegExp(`^${REPO.replace(/[.]/g, "\\.")}@sha256:[0-9a-f]{64}$`),
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
    // One restored pod, running the checkpoint image; no duplicates from the restarts.
    const pods = await waitUntil(
      "one counter pod",
      async () => {
        const p = await podsWith("app=counter");
        return p.length === 1 ? p : undefined;
      },
      { timeoutMs: 15_000 },
    );
    expect(pods[0]?.metadata?.name).toBe(restoredName);
    expect(pods[0]?.spec?.nodeName).toBe("ck-cloud");
    expect(pods[0]?.spec?.containers[0]?.image).toBe(entry?.image);
    expect(agent.standin.archives).toHaveLength(1);
    expect(await readdir(agent.checkpointDir)).toEqual([]);
    const ever = await c.core.listNamespacedPod({
      namespace: NS,
      labelSelector: "edgeshift.dev/migration=counter",
    });
    expect(ever.items.map((p) => p.metadata?.name)).toEqual([restoredName]);
    // Done: the image (process memory) leaves the registry and the agent's finalizer goes.
    const auth = Buffer.from(`${registry.username}:${registry.password}`).toString("base64");
    await waitUntil(
      "the checkpoint image to be deleted",
      async () => {
        const fin = (await getMig("counter")).metadata.finalizers ?? [];
        const r = await fetch(`${registry.url}/v2/edgeshift/ck/manifests/${entry?.digest}`, {
          method: "HEAD",
          headers: {
            authorization: `Basic ${auth}`,
            accept: "application/vnd.oci.image.index.v1+json",
          },
        });
        return fin.length === 0 && r.status === 404 ? true : undefined;
      },
      { timeoutMs: 15_000 },
    );
  });

  it("fails with RegistryUnavailable when the registry is down, leaving the original running", async () => {
    await createMig("counter2", "counter2");
    const m = await finished("counter2");
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("RegistryUnavailable");
    const pods = await podsWith("app=counter2");
    expect(pods.map((p) => [p.metadata?.name, p.spec?.nodeName, p.status?.phase])).toEqual([
      ["counter2", "ck-edge-down", "Running"],
    ]);
    expect(await readdir(agents[1]?.checkpointDir ?? "")).toEqual([]);
  });
});
