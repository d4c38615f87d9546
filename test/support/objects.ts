import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1OwnerReference,
  type V1Pod,
} from "@kubernetes/client-node";
import {
  API_VERSION,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationSpec,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { waitUntil } from "../cluster/process.ts";

export interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
}

export function adminClients(kubeconfig: string): Clients {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
}

/** A Node object as a kubelet would register it, with Ready status and the given runtime. */
export async function createNode(
  c: Clients,
  name: string,
  labels: Record<string, string>,
  runtime = "cri-o://1.30.4",
  capacity = { cpu: "4", memory: "8Gi", pods: "110" },
): Promise<void> {
  await c.core.createNode({
    body: { metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } } },
  });
  await setNodeStatus(c, name, runtime, capacity);
}

export async function setNodeStatus(
  c: Clients,
  name: string,
  runtime: string,
  capacity = { cpu: "4", memory: "8Gi", pods: "110" },
): Promise<void> {
  const now = new Date().toISOString();
  await c.core.patchNodeStatus(
    {
      name,
      body: {
        status: {
          capacity,
          allocatable: capacity,
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "KubeletReady",
              message: "test node",
              lastHeartbeatTime: now,
              lastTransitionTime: now,
            },
          ],
          addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
          nodeInfo: {
            architecture: "amd64",
            operatingSystem: "linux",
            containerRuntimeVersion: runtime,
            kubeletVersion: "v1.37.2",
            kubeProxyVersion: "",
            bootID: "",
            kernelVersion: "",
            machineID: "",
            osImage: "",
            systemUUID: "",
          },
        },
      },
    },
    mergePatch,
  );
}

export async function createNamespace(c: Clients, name: string): Promise<void> {
  await c.core.createNamespace({ body: { metadata: { name } } });
  // Pods are refused until the namespace's default ServiceAccount exists.
  await waitUntil(
    `default ServiceAccount in ${name}`,
    async () =>
      (await c.core.readNamespacedServiceAccount({ name: "default", namespace: name }))
        ? true
        : undefined,
    { timeoutMs: 20_000 },
  );
}

/** A pod bound to `node` (no scheduler) with one or more containers. */
export async function createPod(
  c: Clients,
  namespace: string,
  name: string,
  node: string,
  extra: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: V1OwnerReference[];
    containers?: string[];
    cpuLimit?: string;
  } = {},
): Promise<V1Pod> {
  return c.core.createNamespacedPod({
    namespace,
    body: {
      metadata: {
        name,
        labels: extra.labels,
        annotations: extra.annotations,
        ownerReferences: extra.ownerReferences,
      },
      spec: {
        nodeName: node,
        automountServiceAccountToken: false,
        containers: (extra.containers ?? ["app"]).map((cname) => ({
          name: cname,
          image: "registry.local/workload:1",
          resources: extra.cpuLimit
            ? { limits: { cpu: extra.cpuLimit, memory: "256Mi" } }
            : undefined,
        })),
      },
    },
  });
}

/** Marks a pod Running and Ready the way a kubelet would (there is no kubelet here). */
export async function setPodRunning(c: Clients, namespace: string, name: string): Promise<void> {
  const pod = await c.core.readNamespacedPod({ name, namespace });
  const now = new Date().toISOString();
  await c.core.patchNamespacedPodStatus(
    {
      name,
      namespace,
      body: {
        status: {
          phase: "Running",
          startTime: now,
          podIP: "10.244.0.10",
          conditions: [
            { type: "Ready", status: "True", lastTransitionTime: now },
            { type: "ContainersReady", status: "True", lastTransitionTime: now },
          ],
          containerStatuses: (pod.spec?.containers ?? []).map((ct) => ({
            name: ct.name,
            image: ct.image ?? "",
            imageID: "",
            ready: true,
            started: true,
            restartCount: 0,
            state: { running: { startedAt: now } },
          })),
        },
      },
    },
    mergePatch,
  );
}

/** A Migration as a user writes one. */
export async function createMigration(
  c: Clients,
  namespace: string,
  name: string,
  spec: MigrationSpec,
): Promise<void> {
  await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace,
    body: { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: { name }, spec },
  });
}

export async function listMigrations(c: Clients, namespace: string): Promise<Migration[]> {
  return (
    (await c.custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace,
    })) as { items: Migration[] }
  ).items;
}
