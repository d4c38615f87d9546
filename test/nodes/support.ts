// What the real-node tests share: kubectl and API clients for the cluster the
// global setup started, and waits on the state of the world.
import { CoreV1Api, CustomObjectsApi, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { inject } from "vitest";
import { stringify } from "yaml";
import { EDGENODE_PLURAL, type EdgeNode, GROUP, VERSION } from "../../operator/api/v1alpha1.ts";
import { kubectlRunner } from "../cluster/bundle.ts";
import { waitUntil } from "../cluster/process.ts";

export function cluster() {
  return inject("nodeCluster");
}

export function kubectl(args: string[], input?: string): Promise<string> {
  return kubectlRunner(cluster())(args, input);
}

export async function apply(...objects: object[]): Promise<void> {
  await kubectl(
    ["apply", "--server-side", "-f", "-"],
    objects.map((o) => stringify(o)).join("---\n"),
  );
}

export function clients() {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster().kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
}

export function podReady(p: V1Pod | undefined): boolean {
  return p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

export async function waitForPod(
  namespace: string,
  name: string,
  what: string,
  ok: (p: V1Pod) => boolean,
  timeoutMs = 120_000,
): Promise<V1Pod> {
  const { core } = clients();
  return waitUntil(
    `${namespace}/${name} ${what}`,
    async () => {
      const p = await core.readNamespacedPod({ namespace, name }).catch(() => undefined);
      return p && ok(p) ? p : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** A busybox pod pinned to a node, running `script` with sh. */
export function busyboxPod(
  namespace: string,
  name: string,
  node: string,
  script: string,
  extra: { labels?: Record<string, string>; ports?: number[] } = {},
): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels: { app: name, ...extra.labels } },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: "main",
          image: "busybox:1.37",
          imagePullPolicy: "IfNotPresent",
          command: ["sh", "-c", script],
          ports: (extra.ports ?? []).map((p) => ({ containerPort: p })),
          resources: {
            requests: { cpu: "10m", memory: "16Mi" },
            limits: { cpu: "500m", memory: "128Mi" },
          },
        },
      ],
    },
  };
}

/** The EdgeNode the global setup applied, as the API server has it now. */
export async function sharedEdgeNode(): Promise<EdgeNode> {
  return (await clients().custom.getClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    name: cluster().edgeNode,
  })) as EdgeNode;
}

/** JSON-patches the shared EdgeNode's spec; resolves once the operator has seen the change. */
export async function patchEdgeNode(ops: object[]): Promise<void> {
  if (ops.length === 0) return;
  await clients().custom.patchClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    name: cluster().edgeNode,
    body: ops,
  });
  await waitUntil(
    "the operator to see the EdgeNode's change",
    async () => {
      const en = await sharedEdgeNode();
      return en.status?.observedGeneration === en.metadata.generation ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}
