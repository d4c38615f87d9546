// The edge agent's trust boundary, enforced by the real API server: each
// EdgeNode's agent has its own ServiceAccount (what the operator makes for
// it), and the bundle's ValidatingAdmissionPolicy lets it write only its own
// part of the status of Migrations on the node its pod-bound token names.
// Every write is made with a real token the API server issued for a pod on a
// Node object, as a compromised edge node would hold it.
import { spawn } from "node:child_process";
import { join } from "node:path";
import {
  CustomObjectsApi,
  KubeConfig,
  type V1ClusterRoleBinding,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { EdgeNode } from "../../operator/api/v1alpha1.ts";
import {
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationStatus,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import {
  agentClusterRoleBinding,
  agentIdentity,
  agentName,
  agentServiceAccount,
} from "../../operator/edgenode/agent.ts";
import { writeMigrationStatus } from "../../operator/kube/migration-status.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { ignoreNotFound, kubeClients, rejection, uniqueName, waitFor } from "../support/kube.ts";
import { repoRoot } from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const kube = kubeClients(kubeconfig);
const SYSTEM = uniqueName("ab-system");
const APPS = uniqueName("ab-apps");
const NODE = uniqueName("ab-node");
const OTHER_NODE = uniqueName("ab-node");
const EDGE = uniqueName("ab-edge");
const OTHER_EDGE = uniqueName("ab-edge");
const POLICY = "edgeshift-agent-writes";
const D = `sha256:${"c".repeat(64)}`;

function kubectlOk(args: string[], input = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectl, ["--kubeconfig", kubeconfig, ...args]);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(" ")}: ${err}`)),
    );
    child.stdin.end(input);
  });
}

const en = (name: string) => ({ metadata: { name }, spec: {} }) as unknown as EdgeNode;
const identities: (V1ServiceAccount | V1ClusterRoleBinding)[] = [];

/** A client holding `token` and nothing else. */
function clientWith(token: string): CustomObjectsApi {
  const admin = kube.kc.getCurrentCluster();
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: admin?.server ?? "", caData: admin?.caData }],
    users: [{ name: "agent", token }],
    contexts: [{ name: "agent", cluster: "c", user: "agent" }],
    currentContext: "agent",
  });
  return kc.makeApiClient(CustomObjectsApi);
}

/** A token bound to an agent pod of `edgeNode` on `node`, as the kubelet would mount it. */
async function agentToken(edgeNode: string, node: string): Promise<string> {
  const pod = await kube.core.createNamespacedPod({
    namespace: SYSTEM,
    body: {
      metadata: { generateName: "ab-agent-" },
      spec: {
        serviceAccountName: agentName(edgeNode),
        nodeName: node,
        containers: [{ name: "agent", image: "busybox" }],
      },
    },
  });
  const tr = await kube.core.createNamespacedServiceAccountToken({
    name: agentName(edgeNode),
    namespace: SYSTEM,
    body: {
      spec: {
        audiences: [],
        expirationSeconds: 600,
        boundObjectRef: {
          apiVersion: "v1",
          kind: "Pod",
          name: pod.metadata?.name ?? "",
          uid: pod.metadata?.uid ?? "",
        },
      },
    },
  });
  return tr.status?.token ?? "";
}

/** A Migration the operator validated: Checkpointing on `node`, for `edgeNode`'s agent. */
async function migration(node: string, edgeNode: string): Promise<Migration> {
  const name = uniqueName("ab-mig");
  const m = (await kube.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: APPS,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Migration",
      metadata: { name },
      spec: { podName: "web", reason: { type: "Manual" } },
    },
  })) as Migration;
  return writeMigrationStatus(kube.custom, m, (s) => {
    s.phase = "Checkpointing";
    s.edgeNode = edgeNode;
    s.agentIdentity = agentIdentity(SYSTEM, edgeNode);
    s.policy = "checkpoint";
    s.sourceNode = node;
    s.targetNode = "cloud-1";
    s.containers = [{ name: "app" }];
    s.timestamps = { created: new Date().toISOString() };
    s.conditions = [
      {
        type: "Succeeded",
        status: "Unknown",
        reason: "InProgress",
        message: "moving",
        lastTransitionTime: new Date().toISOString(),
      },
    ];
  });
}

async function read(m: Migration): Promise<Migration> {
  return (await kube.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: APPS,
    name: m.metadata.name ?? "",
  })) as Migration;
}

/** A merge patch of the Migration object itself (not its status), as `client`. */
const patchAs = (client: CustomObjectsApi, m: Migration, body: object) =>
  client.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: APPS,
      name: m.metadata.name ?? "",
      body,
    },
    mergePatch,
  );

/** What the agent writes after a checkpoint and a push (migration/agent/controller.ts). */
const agentPart = (s: MigrationStatus) => {
  const at = new Date().toISOString();
  s.timestamps = {
    ...s.timestamps,
    frozen: at,
    checkpointStarted: at,
    checkpointed: at,
    imagePushed: at,
    thawed: at,
  };
  s.containers = [
    {
      name: "app",
      archivePath: "/var/lib/kubelet/checkpoints/checkpoint-web_x-app-2026.tar",
      archiveSizeBytes: 1000,
      digest: D,
      imageSizeBytes: 900,
    },
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
};

async function refused(p: Promise<unknown>, message: string): Promise<void> {
  const err = await rejection(p);
  expect(err.body.message ?? "").toContain(POLICY);
  expect(err.body.message ?? "").toContain(message);
}

let agent: CustomObjectsApi;

beforeAll(async () => {
  // Agents in a namespace of this file's own: the policy holds in whatever namespace edgeshift runs.
  for (const name of [SYSTEM, APPS])
    await kube.core.createNamespace({ body: { metadata: { name } } });
  // The bundle's agent RBAC and admission policy, unchanged.
  await kubectlOk([
    "apply",
    "--server-side",
    "-f",
    join(repoRoot, "manifests/base/agent-rbac.yaml"),
  ]);
  for (const name of [NODE, OTHER_NODE])
    await kube.core.createNode({ body: { metadata: { name } } });
  for (const e of [EDGE, OTHER_EDGE]) {
    const sa = agentServiceAccount(en(e), { namespace: SYSTEM });
    const crb = agentClusterRoleBinding(en(e), { namespace: SYSTEM });
    for (const o of [sa, crb]) delete o.metadata?.ownerReferences;
    await kubectlOk(["apply", "--server-side", "-f", "-"], JSON.stringify(sa));
    await kubectlOk(["apply", "--server-side", "-f", "-"], JSON.stringify(crb));
    identities.push(sa, crb);
  }
  agent = clientWith(await agentToken(EDGE, NODE));
  // A policy takes effect once the API server has loaded it: wait until a
  // forbidden write is refused by it.
  const probe = await migration(NODE, EDGE);
  await waitFor(
    async () => {
      try {
        await writeMigrationStatus(agent, await read(probe), (s) => {
          s.phase = "Restoring";
        });
        // Let through before the policy was loaded: put it back, try again.
        await writeMigrationStatus(kube.custom, await read(probe), (s) => {
          s.phase = "Checkpointing";
        });
        return false;
      } catch (err) {
        return String((err as { body?: unknown }).body ?? "").includes(POLICY);
      }
    },
    { timeoutMs: 30_000, intervalMs: 500, description: "the agent policy enforced" },
  );
}, 90_000);

afterAll(async () => {
  await kube.core.deleteCollectionNamespacedPod({ namespace: SYSTEM, gracePeriodSeconds: 0 });
  for (const name of [SYSTEM, APPS]) await ignoreNotFound(kube.core.deleteNamespace({ name }));
  for (const o of identities) {
    await ignoreNotFound(
      kube.objects.delete({
        apiVersion: o.apiVersion,
        kind: o.kind,
        metadata: { name: o.metadata?.name ?? "", namespace: o.metadata?.namespace },
      }),
    );
  }
  for (const name of [NODE, OTHER_NODE]) await ignoreNotFound(kube.core.deleteNode({ name }));
});

describe("an edge agent's writes, with its real pod-bound token", () => {
  it("are let through for its own part of its own node's Migrations", async () => {
    const m = await migration(NODE, EDGE);
    const after = await writeMigrationStatus(agent, m, agentPart);
    expect(after.status?.containers?.[0]?.digest).toBe(D);
    expect(after.status?.phase).toBe("Checkpointing");
    // Its finalizer, on and off.
    const patchFinalizers = (finalizers: string[]) =>
      patchAs(agent, m, { metadata: { finalizers } });
    await patchFinalizers(["edgeshift.dev/checkpoint-images"]);
    await patchFinalizers([]);
    expect((await read(m)).metadata.finalizers ?? []).toEqual([]);
  });

  it("are refused for the operator's fields: phase, an image, nodes, failure, other conditions, containers", async () => {
    const m = await migration(NODE, EDGE);
    const cases: [string, Partial<MigrationStatus>, string][] = [
      ["phase", { phase: "Restoring" }, "phase, nodes, failure"],
      ["targetNode", { targetNode: "attacker-node" }, "phase, nodes, failure"],
      ["failureReason", { failureReason: "Whatever" }, "phase, nodes, failure"],
      ["agentIdentity", { agentIdentity: "system:anonymous" }, "phase, nodes, failure"],
      [
        "image",
        { containers: [{ name: "app", digest: D, image: `evil.example/x@${D}` }] },
        "set an image reference",
      ],
      [
        "the container it freezes",
        { containers: [{ name: "app", containerID: `containerd://${"0".repeat(64)}` }] },
        "change which container it freezes",
      ],
      ["handoff", { handoff: "Fork" }, "phase, nodes, failure"],
      ["downtime", { downtimeSeconds: 0 }, "phase, nodes, failure"],
      [
        "another container",
        { containers: [{ name: "app" }, { name: "sidecar", digest: D }] },
        "add or remove containers",
      ],
      [
        "Succeeded condition",
        {
          conditions: [
            {
              type: "Succeeded",
              status: "True",
              reason: "CutOver",
              message: "done",
              lastTransitionTime: new Date().toISOString(),
            },
          ],
        },
        "only the Checkpointed and ImagePushed conditions",
      ],
      [
        "restore timestamp",
        { timestamps: { restored: new Date().toISOString() } },
        "phase, nodes, failure",
      ],
      // What the operator reads at cutover: the labels the restored pod gets,
      // the pod it may delete, and when the cutover deadline starts.
      [
        "reveal record",
        {
          reveal: {
            ownerKind: "ReplicaSet",
            ownerName: "web",
            ownerUID: "00000000-0000-0000-0000-000000000000",
            labels: { app: "someone-elses-service" },
          },
        },
        "phase, nodes, failure",
      ],
      [
        "sourcePodUID",
        { sourcePodUID: "00000000-0000-0000-0000-000000000001" },
        "phase, nodes, failure",
      ],
      [
        "reveal timestamp",
        { timestamps: { revealed: new Date(Date.now() + 86_400_000).toISOString() } },
        "phase, nodes, failure",
      ],
      // The operator's word that no restored copy runs: the agent thaws on it.
      [
        "release timestamp",
        { timestamps: { released: new Date().toISOString() } },
        "phase, nodes, failure",
      ],
    ];
    for (const [what, change, message] of cases) {
      const mutate = (s: MigrationStatus) => {
        Object.assign(
          s,
          change.timestamps ? { timestamps: { ...s.timestamps, ...change.timestamps } } : change,
        );
      };
      await refused(writeMigrationStatus(agent, await read(m), mutate), message);
      expect((await read(m)).status?.phase, what).toBe("Checkpointing");
    }
    const forbiddenPatch = async (metadata: Record<string, unknown>) =>
      refused(patchAs(agent, m, { metadata }), "only its own finalizer");
    // The spec is immutable for everyone (the CRD's own rule); the policy covers the rest.
    expect((await rejection(patchAs(agent, m, { spec: { podName: "victim" } }))).code).toBe(422);
    await forbiddenPatch({ labels: { "edgeshift.dev/source-node": OTHER_NODE } });
    await forbiddenPatch({ finalizers: ["example.com/forever"] });
    expect((await read(m)).spec.podName).toBe("web");
  });

  it("are refused on another node's Migration and on another EdgeNode's", async () => {
    const otherNode = await migration(OTHER_NODE, EDGE);
    await refused(
      writeMigrationStatus(agent, otherNode, agentPart),
      `on node ${NODE} may write only`,
    );
    const otherEdge = await migration(NODE, OTHER_EDGE);
    await refused(writeMigrationStatus(agent, otherEdge, agentPart), "its own EdgeNode");
    for (const m of [otherNode, otherEdge])
      expect((await read(m)).status?.containers?.[0]?.digest).toBeUndefined();
  });

  it("are refused with a token not bound to a pod on a node", async () => {
    const tr = await kube.core.createNamespacedServiceAccountToken({
      name: agentName(EDGE),
      namespace: SYSTEM,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const unbound = clientWith(tr.status?.token ?? "");
    const m = await migration(NODE, EDGE);
    await refused(writeMigrationStatus(unbound, m, agentPart), "bound to its node");
  });

  it("cannot create or delete a Migration (RBAC)", async () => {
    const err = await rejection(
      agent.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: APPS,
        name: (await migration(NODE, EDGE)).metadata.name ?? "",
      }),
    );
    expect(err.code).toBe(403);
  });
});
