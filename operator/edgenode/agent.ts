import { createHash } from "node:crypto";
import type {
  V1ClusterRoleBinding,
  V1DaemonSet,
  V1NodeSelectorRequirement,
  V1OwnerReference,
  V1ServiceAccount,
} from "@kubernetes/client-node";
import {
  API_VERSION,
  EDGENODE_KIND,
  EDGENODE_LABEL,
  EDGENODE_SPEC_DEFAULTS,
  type EdgeNode,
  type LabelSelector,
} from "../api/v1alpha1.ts";

/** The ClusterRole every EdgeNode's agent identity is bound to (manifests/base/agent-rbac.yaml). */
export const AGENT_CLUSTER_ROLE = "edgeshift-agent";
/** Built into every cluster; the API server resolves it to priority 2000001000. */
export const AGENT_PRIORITY_CLASS = "system-node-critical";
export const KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints";
/** Where the agent sees the host's /sys/fs/cgroup (the freezer of the containers it moves). */
export const HOST_CGROUP_DIR = "/host/sys/fs/cgroup";
/** Where a kubeletTLS.caBundle ConfigMap is mounted in the agent. */
export const KUBELET_CA_DIR = "/etc/edgeshift/kubelet-ca";
const REGISTRY_AUTH_DIR = "/etc/edgeshift/registry";

/** The agent DaemonSet's name for an EdgeNode: a DNS label, stable, distinct per EdgeNode. */
export function agentName(edgeNode: string): string {
  const name = `edgeshift-agent-${edgeNode}`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(edgeNode).digest("hex").slice(0, 8);
  return `${name.slice(0, 54).replace(/[-.]+$/, "")}-${hash}`;
}

/** A pod LabelSelector over node labels, as the node affinity the scheduler understands. */
export function nodeSelectorRequirements(sel: LabelSelector): V1NodeSelectorRequirement[] {
  const reqs: V1NodeSelectorRequirement[] = Object.entries(sel.matchLabels ?? {}).map(
    ([key, value]) => ({
      key,
      operator: "In",
      values: [value],
    }),
  );
  for (const e of sel.matchExpressions ?? []) {
    reqs.push({
      key: e.key,
      operator: e.operator,
      values: e.values?.length ? e.values : undefined,
    });
  }
  return reqs;
}

/**
 * The username the API server gives the agent of `edgeNode` (its own
 * ServiceAccount, named like its DaemonSet). The operator records it in each
 * Migration's status.agentIdentity; the admission policy lets only that
 * identity, on the Migration's source node, write the agent's part.
 */
export function agentIdentity(namespace: string, edgeNode: string): string {
  return `system:serviceaccount:${namespace}:${agentName(edgeNode)}`;
}

function ownedBy(en: EdgeNode): V1OwnerReference[] {
  return [
    {
      apiVersion: API_VERSION,
      kind: EDGENODE_KIND,
      name: en.metadata.name ?? "",
      uid: en.metadata.uid ?? "",
      controller: true,
    },
  ];
}

/** The labels that select an EdgeNode's agent pods (its DaemonSet's selector). */
export function agentPodSelector(edgeNode: string): Record<string, string> {
  return { "app.kubernetes.io/component": "agent", [EDGENODE_LABEL]: edgeNode };
}

/** On the pods of the cloud-side agent DaemonSet (returnToEdge), besides agentPodSelector's. */
export const CLOUD_AGENT_LABEL = { "edgeshift.dev/agent-nodes": "cloud" } as const;

/** The cloud-side agent DaemonSet of `edgeNode` (returnToEdge); it runs as agentName's identity. */
export function cloudAgentName(edgeNode: string): string {
  return agentName(`${edgeNode}-cloud`);
}

function agentLabels(en: EdgeNode): Record<string, string> {
  return {
    "app.kubernetes.io/name": "edgeshift-agent",
    "app.kubernetes.io/part-of": "edgeshift",
    ...agentPodSelector(en.metadata.name ?? ""),
  };
}

/** One identity per EdgeNode: one node's agent cannot act as another EdgeNode's. Owned by the EdgeNode. */
export function agentServiceAccount(
  en: EdgeNode,
  s: Pick<AgentSettings, "namespace">,
): V1ServiceAccount {
  return {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: {
      name: agentName(en.metadata.name ?? ""),
      namespace: s.namespace,
      labels: agentLabels(en),
      ownerReferences: ownedBy(en),
    },
  };
}

/** The EdgeNode's agent identity bound to the agent ClusterRole; goes with the EdgeNode. */
export function agentClusterRoleBinding(
  en: EdgeNode,
  s: Pick<AgentSettings, "namespace">,
): V1ClusterRoleBinding {
  const name = agentName(en.metadata.name ?? "");
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name, labels: agentLabels(en), ownerReferences: ownedBy(en) },
    roleRef: {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: AGENT_CLUSTER_ROLE,
    },
    subjects: [{ kind: "ServiceAccount", name, namespace: s.namespace }],
  };
}

export interface AgentSettings {
  namespace: string;
  image: string;
}

/**
 * The edge agent of one EdgeNode: a DaemonSet on exactly that EdgeNode's nodes
 * (side cloud, with returnToEdge: a second one on its cloud nodes, where the
 * pods that may return are checkpointed; toggling it leaves the edge agents be),
 * owned by the EdgeNode (so it goes when the EdgeNode goes), with the kubelet's
 * checkpoint directory and the registry credentials mounted. Its ServiceAccount
 * (agentServiceAccount) may only create nodes/checkpoint, read Migrations and
 * write the agent's part of their status on its own node.
 */
export function agentDaemonSet(
  en: EdgeNode,
  s: AgentSettings,
  side: "edge" | "cloud" = "edge",
): V1DaemonSet {
  const name = en.metadata.name ?? "";
  const labels = { ...agentLabels(en), ...(side === "cloud" ? CLOUD_AGENT_LABEL : {}) };
  const registry = en.spec.registry;
  const env = [
    { name: "EDGESHIFT_NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
    { name: "EDGESHIFT_KUBELET_HOST", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
    { name: "EDGESHIFT_EDGENODE", value: name },
    { name: "EDGESHIFT_CHECKPOINT_DIR", value: KUBELET_CHECKPOINT_DIR },
    { name: "EDGESHIFT_REGISTRY_REPOSITORY", value: registry?.repository ?? "" },
    { name: "EDGESHIFT_REGISTRY_INSECURE", value: String(registry?.insecure ?? false) },
    { name: "EDGESHIFT_IMAGE_RETENTION", value: registry?.imageRetention ?? "Delete" },
    {
      name: "EDGESHIFT_FENCE_TIMEOUT_SECONDS",
      value: String(en.spec.freezeTimeoutSeconds ?? EDGENODE_SPEC_DEFAULTS.freezeTimeoutSeconds),
    },
  ];
  const volumes: NonNullable<NonNullable<V1DaemonSet["spec"]>["template"]["spec"]>["volumes"] = [
    { name: "checkpoints", hostPath: { path: KUBELET_CHECKPOINT_DIR, type: "DirectoryOrCreate" } },
    // Handoff Freeze: the agent freezes and thaws the source container's cgroup.
    { name: "cgroup", hostPath: { path: "/sys/fs/cgroup", type: "Directory" } },
  ];
  const mounts = [
    { name: "checkpoints", mountPath: KUBELET_CHECKPOINT_DIR },
    { name: "cgroup", mountPath: HOST_CGROUP_DIR },
  ];
  env.push({ name: "EDGESHIFT_CGROUP_ROOT", value: HOST_CGROUP_DIR });
  if (registry?.secretRef) {
    // Mounted by the kubelet: the agent itself has no right to read Secrets.
    volumes.push({
      name: "registry-auth",
      secret: {
        secretName: registry.secretRef.name,
        items: [{ key: ".dockerconfigjson", path: "config.json" }],
      },
    });
    mounts.push({
      name: "registry-auth",
      mountPath: REGISTRY_AUTH_DIR,
      readOnly: true,
    } as (typeof mounts)[number]);
    env.push({ name: "EDGESHIFT_REGISTRY_AUTH_FILE", value: `${REGISTRY_AUTH_DIR}/config.json` });
  }
  const kubeletTLS = en.spec.kubeletTLS;
  env.push({ name: "EDGESHIFT_KUBELET_TLS_MODE", value: kubeletTLS?.mode ?? "ClusterCA" });
  if (kubeletTLS?.mode === "CABundle" && kubeletTLS.caBundle) {
    // A ConfigMap in the operator's namespace, mounted by the kubelet.
    volumes.push({
      name: "kubelet-ca",
      configMap: {
        name: kubeletTLS.caBundle.configMapName,
        items: [{ key: kubeletTLS.caBundle.key ?? "ca.crt", path: "ca.crt" }],
      },
    });
    mounts.push({
      name: "kubelet-ca",
      mountPath: KUBELET_CA_DIR,
      readOnly: true,
    } as (typeof mounts)[number]);
    env.push({ name: "EDGESHIFT_KUBELET_CA_FILE", value: `${KUBELET_CA_DIR}/ca.crt` });
  }
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: side === "cloud" ? cloudAgentName(name) : agentName(name),
      namespace: s.namespace,
      labels,
      ownerReferences: ownedBy(en),
    },
    spec: {
      selector: {
        matchLabels: {
          ...agentPodSelector(name),
          ...(side === "cloud" ? CLOUD_AGENT_LABEL : {}),
        },
      },
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "25%" } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: agentName(name),
          // The agent serves the very migration that node pressure triggers: the
          // kubelet never evicts a critical pod, and preemption takes others first.
          priorityClassName: AGENT_PRIORITY_CLASS,
          volumes,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: nodeSelectorRequirements(
                      side === "cloud" ? en.spec.cloud.nodeSelector : en.spec.nodeSelector,
                    ),
                  },
                ],
              },
            },
          },
          // An agent must run on every edge node, tainted or not.
          tolerations: [{ operator: "Exists" }],
          containers: [
            {
              name: "agent",
              image: s.image,
              args: ["agent"],
              ports: [{ name: "metrics", containerPort: 8081 }],
              env,
              volumeMounts: mounts,
              resources: { requests: { cpu: "10m", memory: "64Mi" }, limits: { memory: "256Mi" } },
              securityContext: {
                // Archives are root-owned 0600 files in a root-owned directory, and the
                // freezer's files are root's: root, but no capabilities.
                runAsUser: 0,
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
            },
          ],
        },
      },
    },
  };
}
