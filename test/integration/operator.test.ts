import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { EDGENODE_PLURAL, type EdgeNode, GROUP, VERSION } from "../../operator/api/v1alpha1.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { monitorKey, monitorSecretName } from "../../operator/monitor/keys.ts";
import { waitUntil } from "../cluster/process.ts";
import {
  adminClients,
  type Clients,
  createNamespace,
  createNode,
  createPod,
  setNodeStatus,
  setPodRunning,
} from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  serviceAccountKubeconfig,
  startOperator,
  testSigningKey,
} from "../support/operator.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const natsUrl = inject("natsUrl");
const server = new URL(inject("kubeServer"));

const GROUP_LABEL = "test.edgeshift.dev/group";
const APPS = "op-apps";
const OTHER = "op-other";

let c: Clients;
let proxy: TcpProxy;
let saKubeconfig: string;
const operators: RunningOperator[] = [];
const finished: RunningOperator[] = [];

function edgeNode(name: string, group: string, extra: Partial<EdgeNode["spec"]> = {}): EdgeNode {
  return {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "EdgeNode",
    metadata: { name },
    spec: {
      nodeSelector: { matchLabels: { [GROUP_LABEL]: group } },
      pods: { namespaces: [APPS] },
      thresholds: { cpu: { triggerPercent: 80 } },
      cloud: { nodeSelector: { matchLabels: { [GROUP_LABEL]: `${group}-cloud` } } },
      restorePolicy: "restart",
      ...extra,
    },
  };
}

const createEdgeNode = (en: EdgeNode) =>
  c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: en,
  });
const getEdgeNode = async (name: string) =>
  (await c.custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    name,
  })) as EdgeNode;
const readPod = (namespace: string, name: string) => c.core.readNamespacedPod({ namespace, name });
const monitors = (p: V1Pod) => (p.spec?.ephemeralContainers ?? []).map((e) => e.name);

async function waitForMonitors(
  namespace: string,
  name: string,
  count: number,
  timeoutMs = 20_000,
): Promise<V1Pod> {
  return waitUntil(
    `${count} monitor(s) in ${namespace}/${name}`,
    async () => {
      const p = await readPod(namespace, name);
      return monitors(p).length === count ? p : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

async function runningPod(
  namespace: string,
  name: string,
  node: string,
  extra: Parameters<typeof createPod>[4] = {},
) {
  await createPod(c, namespace, name, node, extra);
  await setPodRunning(c, namespace, name);
  return Date.now();
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  await installOperatorRbac(kubectl, kubeconfig);
  proxy = new TcpProxy({ host: server.hostname, port: Number(server.port) });
  const port = await proxy.start();
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
    `https://127.0.0.1:${port}`,
  );
  await createNode(c, "op-edge-a", { [GROUP_LABEL]: "op" }, "cri-o://1.30.4");
  await createNode(c, "op-edge-b", { [GROUP_LABEL]: "op" }, "cri-o://1.30.4");
  await createNode(c, "op-cloud-c", { [GROUP_LABEL]: "op-cloud" }, "cri-o://1.30.4");
  await createNamespace(c, APPS);
  await createNamespace(c, OTHER);
  operators.push(await startOperator({ name: "operator-a", kubeconfig: saKubeconfig, natsUrl }));
});

afterAll(async () => {
  for (const op of [...operators, ...finished]) {
    await op.kill();
    await op.cleanup();
  }
  await proxy?.stop();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  for (const en of ["op-edge", "pf-edge"]) {
    await c.custom
      .deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: EDGENODE_PLURAL,
        name: en,
      })
      .catch(() => {});
  }
  for (const ns of [APPS, OTHER]) await c.core.deleteNamespace({ name: ns }).catch(() => {});
  for (const n of ["op-edge-a", "op-edge-b", "op-cloud-c", "pf-new", "pf-mid", "pf-old"]) {
    await c.core.deleteNode({ name: n }).catch(() => {});
  }
});

describe("operator core", () => {
  let uids: Record<string, string> = {};

  it("injects monitors into eligible pods on matched nodes only, without restarting them", async () => {
    // A real DaemonSet (its selector matches no node) as a non-controller owner.
    const ds = await c.kc
      .makeApiClient((await import("@kubernetes/client-node")).AppsV1Api)
      .createNamespacedDaemonSet({
        namespace: APPS,
        body: {
          metadata: { name: "agent" },
          spec: {
            selector: { matchLabels: { app: "agent" } },
            template: {
              metadata: { labels: { app: "agent" } },
              spec: {
                nodeSelector: { "no-such-node": "x" },
                containers: [{ name: "a", image: "busybox" }],
              },
            },
          },
        },
      });
    await createEdgeNode(edgeNode("op-edge", "op"));
    const started = await runningPod(APPS, "web-a", "op-edge-a", {
      containers: ["app", "helper"],
      cpuLimit: "500m",
    });
    await runningPod(APPS, "web-b", "op-edge-b");
    await runningPod(APPS, "optout", "op-edge-a", {
      annotations: { "edgeshift.dev/migrate": "false" },
    });
    await runningPod(APPS, "ds-pod", "op-edge-a", {
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "DaemonSet", name: "agent", uid: ds.metadata?.uid ?? "" },
      ],
    });
    await runningPod(OTHER, "other-ns", "op-edge-a");
    await runningPod(APPS, "on-cloud", "op-cloud-c");

    const webA = await waitForMonitors(APPS, "web-a", 2);
    const latencyMs = Date.now() - started;
    console.log(`[measure] injection latency (pod Running -> monitors present): ${latencyMs} ms`);
    const webB = await waitForMonitors(APPS, "web-b", 1);

    // The monitor targets its container and reads its key from a Secret, never a literal.
    const mon = webA.spec?.ephemeralContainers?.find((e) => e.targetContainerName === "app");
    expect(mon?.env?.find((e) => e.name === "EDGESHIFT_CPU_LIMIT_CORES")?.value).toBe("0.5");
    const keyEnv = mon?.env?.find((e) => e.name === "EDGESHIFT_SIGNING_KEY");
    expect(keyEnv?.value).toBeUndefined();
    expect(keyEnv?.valueFrom?.secretKeyRef?.name).toBe(monitorSecretName(webA.metadata?.uid ?? ""));
    const secret = await c.core.readNamespacedSecret({
      namespace: APPS,
      name: monitorSecretName(webA.metadata?.uid ?? ""),
    });
    expect(secret.metadata?.ownerReferences?.[0]?.uid).toBe(webA.metadata?.uid);
    expect(Buffer.from(secret.data?.app ?? "", "base64").toString()).toBe(
      monitorKey(Buffer.from(testSigningKey, "hex"), webA.metadata?.uid ?? "", "app").toString(
        "hex",
      ),
    );

    // Give the operator time to (wrongly) touch the ineligible pods, then check it did not.
    await new Promise((r) => setTimeout(r, 2000));
    for (const [ns, name] of [
      [APPS, "optout"],
      [APPS, "ds-pod"],
      [OTHER, "other-ns"],
      [APPS, "on-cloud"],
    ] as const) {
      expect(monitors(await readPod(ns, name)), `${ns}/${name}`).toEqual([]);
    }
    uids = { "web-a": webA.metadata?.uid ?? "", "web-b": webB.metadata?.uid ?? "" };
    for (const name of ["web-a", "web-b"]) {
      const p = await readPod(APPS, name);
      expect(p.metadata?.uid).toBe(uids[name]);
      expect(p.status?.containerStatuses?.every((s) => s.restartCount === 0)).toBe(true);
    }

    const en = await waitUntil(
      "EdgeNode status with 2 nodes and 2 monitored pods",
      async () => {
        const e = await getEdgeNode("op-edge");
        return e.status?.matchedNodes === 2 && e.status?.monitoredPods === 2 ? e : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(en.status?.observedGeneration).toBe(en.metadata.generation);
    expect(en.status?.conditions?.find((x) => x.type === "Ready")).toMatchObject({
      status: "True",
      reason: "Reconciled",
    });
    expect(en.status?.nodes?.map((n) => n.name)).toEqual(["op-edge-a", "op-edge-b"]);
    const events = await c.kc
      .makeApiClient((await import("@kubernetes/client-node")).EventsV1Api)
      .listNamespacedEvent({ namespace: APPS, fieldSelector: "regarding.name=web-a" });
    expect(events.items.map((e) => e.reason)).toContain("MonitorInjected");
  });

  it("adds no second monitor after an operator restart, and shuts down cleanly on SIGTERM", async () => {
    const first = operators.pop() as RunningOperator;
    finished.push(first);
    expect(await first.stop()).toBe(0);
    const op = await startOperator({ name: "operator-a2", kubeconfig: saKubeconfig, natsUrl });
    operators.push(op);
    await runningPod(APPS, "web-c", "op-edge-a");
    await waitForMonitors(APPS, "web-c", 1);
    // The restarted operator has reconciled web-a and web-b too by now; still one monitor per container.
    expect(monitors(await readPod(APPS, "web-a"))).toHaveLength(2);
    expect(monitors(await readPod(APPS, "web-b"))).toHaveLength(1);
    expect(await op.metric("edgeshift_monitor_injections_total", { result: "error" })).toBe(0);
  });

  it("recovers its watches after the API connection breaks, without a restart", async () => {
    const op = operators[operators.length - 1] as RunningOperator;
    proxy.break();
    // Shorter than the renew deadline (5 s here): a longer cut rightly costs the leader its lease.
    await new Promise((r) => setTimeout(r, 1500));
    proxy.restore();
    await runningPod(APPS, "web-d", "op-edge-b");
    await waitForMonitors(APPS, "web-d", 1, 45_000);
    expect(await op.metric("edgeshift_informer_restarts_total")).toBeGreaterThan(0);
    expect(op.child.exitCode).toBeNull();
  });

  it("stops a node's watcher when the node leaves the selector, and all watchers when the EdgeNode goes", async () => {
    const op = operators[operators.length - 1] as RunningOperator;
    expect(await op.metric("edgeshift_pod_watchers")).toBe(2);
    await c.core.patchNode(
      { name: "op-edge-b", body: { metadata: { labels: { [GROUP_LABEL]: null } } } },
      mergePatch,
    );
    await waitUntil(
      "EdgeNode to match one node",
      async () => ((await getEdgeNode("op-edge")).status?.matchedNodes === 1 ? true : undefined),
      { timeoutMs: 10_000 },
    );
    expect(await op.metric("edgeshift_pod_watchers")).toBe(1);
    await runningPod(APPS, "web-e", "op-edge-b");
    await new Promise((r) => setTimeout(r, 2000));
    expect(monitors(await readPod(APPS, "web-e"))).toEqual([]);

    await c.custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: "op-edge",
    });
    await waitUntil(
      "all watchers stopped",
      async () => ((await op.metric("edgeshift_pod_watchers")) === 0 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
  });

  it("reports which nodes' runtimes cannot checkpoint", async () => {
    await createNode(c, "pf-new", { [GROUP_LABEL]: "pf" }, "cri-o://1.30.4");
    await createNode(c, "pf-mid", { [GROUP_LABEL]: "pf" }, "containerd://2.1.0");
    await createNode(c, "pf-old", { [GROUP_LABEL]: "pf" }, "containerd://1.7.27");
    // A cloud node of each runtime family: a checkpoint restores only on its own family.
    await createNode(c, "pf-cloud-crio", { [GROUP_LABEL]: "pf-cloud" }, "cri-o://1.30.4");
    await createNode(c, "pf-cloud-ctd", { [GROUP_LABEL]: "pf-cloud" }, "containerd://2.1.0");
    await createEdgeNode(
      edgeNode("pf-edge", "pf", {
        restorePolicy: "checkpoint",
        registry: { repository: "registry.local/edgeshift/checkpoints" },
      }),
    );
    const cond = async () =>
      (await getEdgeNode("pf-edge")).status?.conditions?.find(
        (x) => x.type === "CheckpointSupported",
      );
    const c1 = await waitUntil(
      "CheckpointSupported=False",
      async () => ((await cond())?.status === "False" ? cond() : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    expect(c1?.reason).toBe("SomeNodesUnsupported");
    expect(c1?.message).toContain("pf-old (containerd://1.7.27)");
    expect(c1?.message).not.toContain("pf-new");
    expect(c1?.message).not.toContain("pf-mid");
    const en = await getEdgeNode("pf-edge");
    expect(en.status?.runtimeSupport).toBe("2/3 nodes");
    expect(en.status?.nodes?.find((n) => n.name === "pf-mid")).toMatchObject({
      checkpoint: true,
      restore: true,
    });
    expect(en.status?.nodes?.find((n) => n.name === "pf-old")).toMatchObject({
      checkpoint: false,
      restore: false,
    });

    // The node is upgraded: the condition follows.
    await setNodeStatus(c, "pf-old", "cri-o://1.31.0");
    const c2 = await waitUntil(
      "CheckpointSupported=True",
      async () => ((await cond())?.status === "True" ? cond() : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    expect(c2?.reason).toBe("AllNodesSupported");

    // The EdgeNode names a registry: it gets its node-local agent, owned by it.
    const apps = c.kc.makeApiClient((await import("@kubernetes/client-node")).AppsV1Api);
    const ds = await waitUntil(
      "the agent DaemonSet",
      async () =>
        apps.readNamespacedDaemonSet({
          namespace: OPERATOR_NAMESPACE,
          name: "edgeshift-agent-pf-edge",
        }),
      { timeoutMs: 10_000 },
    );
    const en2 = await getEdgeNode("pf-edge");
    expect(ds.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "EdgeNode",
      uid: en2.metadata.uid,
      controller: true,
    });
    expect(
      ds.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms,
    ).toEqual([{ matchExpressions: [{ key: GROUP_LABEL, operator: "In", values: ["pf"] }] }]);
    // An identity of its own, bound to the agent's ClusterRole, owned by the EdgeNode too.
    expect(ds.spec?.template.spec?.serviceAccountName).toBe("edgeshift-agent-pf-edge");
    const rbac = c.kc.makeApiClient(
      (await import("@kubernetes/client-node")).RbacAuthorizationV1Api,
    );
    const sa = await c.core.readNamespacedServiceAccount({
      namespace: OPERATOR_NAMESPACE,
      name: "edgeshift-agent-pf-edge",
    });
    const crb = await rbac.readClusterRoleBinding({ name: "edgeshift-agent-pf-edge" });
    for (const o of [sa, crb])
      expect(o.metadata?.ownerReferences?.[0]).toMatchObject({
        kind: "EdgeNode",
        uid: en2.metadata.uid,
      });
    expect(crb.roleRef.name).toBe("edgeshift-agent");
    expect(crb.subjects).toEqual([
      { kind: "ServiceAccount", name: "edgeshift-agent-pf-edge", namespace: OPERATOR_NAMESPACE },
    ]);
    // The real garbage collector removes them with their EdgeNode.
    await c.custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: "pf-edge",
    });
    await waitUntil(
      "the agent DaemonSet to be collected",
      async () =>
        apps
          .readNamespacedDaemonSet({
            namespace: OPERATOR_NAMESPACE,
            name: "edgeshift-agent-pf-edge",
          })
          .then(() => undefined)
          .catch(() => true),
      { timeoutMs: 30_000 },
    );
    await waitUntil(
      "the agent's identity to be collected",
      async () =>
        rbac
          .readClusterRoleBinding({ name: "edgeshift-agent-pf-edge" })
          .then(() => undefined)
          .catch(() =>
            c.core
              .readNamespacedServiceAccount({
                namespace: OPERATOR_NAMESPACE,
                name: "edgeshift-agent-pf-edge",
              })
              .then(() => undefined)
              .catch(() => true),
          ),
      { timeoutMs: 30_000 },
    );
  });

  it("fails over to a standby replica when the leader dies", async () => {
    for (const op of operators.splice(0)) {
      finished.push(op);
      expect(await op.stop()).toBe(0);
    }
    await createEdgeNode(edgeNode("op-edge", "op"));
    const a = await startOperator({ name: "replica-1", kubeconfig: saKubeconfig, natsUrl });
    const b = await startOperator({ name: "replica-2", kubeconfig: saKubeconfig, natsUrl });
    operators.push(a, b);
    const coord = c.kc.makeApiClient((await import("@kubernetes/client-node")).CoordinationV1Api);
    const holder = async () =>
      (
        await coord.readNamespacedLease({
          name: "edgeshift-operator",
          namespace: OPERATOR_NAMESPACE,
        })
      ).spec?.holderIdentity;
    const first = await waitUntil(
      "a leader",
      async () => {
        const h = await holder();
        return h === "replica-1" || h === "replica-2" ? h : undefined;
      },
      { timeoutMs: 15_000 },
    );
    const [leader, standby] = first === "replica-1" ? [a, b] : [b, a];
    expect(await leader.metric("edgeshift_leader")).toBe(1);
    expect(await standby.metric("edgeshift_leader")).toBe(0);

    const killedAt = Date.now();
    await leader.kill();
    await waitUntil(
      "the standby to take the lease",
      async () => ((await holder()) === standby.name ? true : undefined),
      {
        timeoutMs: 15_000,
        intervalMs: 50,
      },
    );
    const takeoverMs = Date.now() - killedAt;
    await runningPod(APPS, "web-f", "op-edge-a");
    await waitForMonitors(APPS, "web-f", 1);
    const reconcilingMs = Date.now() - killedAt;
    console.log(
      `[measure] leader failover: lease taken ${takeoverMs} ms after SIGKILL (lease 6 s), new pod injected ${reconcilingMs} ms after`,
    );
    expect(takeoverMs).toBeLessThan(6000 + 3000);
    expect(await standby.metric("edgeshift_leader")).toBe(1);
  });
});
