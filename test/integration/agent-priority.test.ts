// The edge agent runs at node-critical priority in the operator's namespace:
// the operator applies its DaemonSet with its own ServiceAccount (the shipped
// RBAC), the real DaemonSet controller makes the pod, and the real API
// server's Priority admission resolves the class on it. An eviction by node
// pressure never takes a critical pod, so the agent outlives the workloads it
// has to move.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import {
  AppsV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  SchedulingV1Api,
  type V1Pod,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { EDGENODE_PLURAL, type EdgeNode, GROUP, VERSION } from "../../operator/api/v1alpha1.ts";
import {
  AGENT_PRIORITY_CLASS,
  agentClusterRoleBinding,
  agentDaemonSet,
  agentName,
  agentServiceAccount,
} from "../../operator/edgenode/agent.ts";
import { FIELD_MANAGER, serverSideApply } from "../../operator/kube/patch.ts";
import { ignoreNotFound, loadKubeConfig, uniqueName, waitFor } from "../support/kube.ts";
import { adminClients, createNode } from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  serviceAccountKubeconfig,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const c = adminClients(kubeconfig);
const adminApps = c.kc.makeApiClient(AppsV1Api);
const scheduling = c.kc.makeApiClient(SchedulingV1Api);
const EDGE = uniqueName("prio-edge");
const NODE = uniqueName("prio-node");
const GROUP_LABEL = "edgeshift.test/prio-group";
let saKubeconfig = "";
/** The agent DaemonSet's own selector, once it is built. */
let agentSelector = "";

beforeAll(async () => {
  await installOperatorRbac(kubectl, kubeconfig);
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
});

afterAll(async () => {
  // The EdgeNode owns the agent's ServiceAccount, binding and DaemonSet.
  await ignoreNotFound(
    c.custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGE,
    }),
  );
  // No kubelet runs here to finish a graceful delete.
  const pods = agentSelector
    ? await c.core.listNamespacedPod({
        namespace: OPERATOR_NAMESPACE,
        labelSelector: agentSelector,
      })
    : { items: [] };
  for (const p of pods.items) {
    await ignoreNotFound(
      c.core.deleteNamespacedPod({
        name: p.metadata?.name ?? "",
        namespace: OPERATOR_NAMESPACE,
        gracePeriodSeconds: 0,
      }),
    );
  }
  await ignoreNotFound(c.core.deleteNode({ name: NODE }));
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
});

describe("agent priority", () => {
  it("gets a system-node-critical agent pod admitted in the operator namespace", async () => {
    await createNode(c, NODE, { [GROUP_LABEL]: EDGE });
    const en = (await c.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "EdgeNode",
        metadata: { name: EDGE },
        spec: {
          nodeSelector: { matchLabels: { [GROUP_LABEL]: EDGE } },
          thresholds: { cpu: { triggerPercent: 80 } },
          cloud: { nodeSelector: { matchLabels: { cloud: "true" } } },
          registry: { repository: "registry.example.com/edgeshift/checkpoints" },
        },
      },
    })) as EdgeNode;

    // What the EdgeNode controller applies, with the operator's own identity.
    const op = loadKubeConfig(saKubeconfig);
    const core = op.makeApiClient(CoreV1Api);
    const rbac = op.makeApiClient(RbacAuthorizationV1Api);
    const apps = op.makeApiClient(AppsV1Api);
    const settings = { namespace: OPERATOR_NAMESPACE, image: "registry.local/edgeshift:test" };
    const sa = agentServiceAccount(en, settings);
    const crb = agentClusterRoleBinding(en, settings);
    const ds = agentDaemonSet(en, settings);
    agentSelector = Object.entries(ds.spec?.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    await core.patchNamespacedServiceAccount(
      {
        name: agentName(EDGE),
        namespace: OPERATOR_NAMESPACE,
        body: sa,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      serverSideApply,
    );
    await rbac.patchClusterRoleBinding(
      { name: agentName(EDGE), body: crb, fieldManager: FIELD_MANAGER, force: true },
      serverSideApply,
    );
    const applied = await apps.patchNamespacedDaemonSet(
      {
        name: agentName(EDGE),
        namespace: OPERATOR_NAMESPACE,
        body: ds,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      serverSideApply,
    );
    expect(applied.spec?.template.spec?.priorityClassName).toBe(AGENT_PRIORITY_CLASS);

    // The DaemonSet controller's pod for the node, as the API server admitted it.
    const pod = await waitFor(
      async () => {
        const list = await c.core.listNamespacedPod({
          namespace: OPERATOR_NAMESPACE,
          labelSelector: agentSelector,
        });
        return list.items[0] as V1Pod | undefined;
      },
      {
        timeoutMs: 30_000,
        description: "the DaemonSet controller to create the agent pod",
      },
    );
    const critical = await scheduling.readPriorityClass({ name: AGENT_PRIORITY_CLASS });
    expect(pod.spec?.priorityClassName).toBe("system-node-critical");
    expect(pod.spec?.priority).toBe(critical.value);
    expect(pod.spec?.priority).toBe(2_000_001_000);
    expect(pod.spec?.preemptionPolicy).toBe("PreemptLowerPriority");
    // The DaemonSet's own view: it placed one pod and reports no failed create.
    const status = await waitFor(
      async () => {
        const d = await adminApps.readNamespacedDaemonSet({
          name: agentName(EDGE),
          namespace: OPERATOR_NAMESPACE,
        });
        return (d.status?.currentNumberScheduled ?? 0) >= 1 ? d.status : undefined;
      },
      { timeoutMs: 30_000, description: "the DaemonSet to count its pod" },
    );
    expect(status?.desiredNumberScheduled).toBe(1);
  });
});
