import { createHash } from "node:crypto";
import type { V1DaemonSet, V1NodeSelectorRequirement } from "@kubernetes/client-node";
import {
  API_VERSION,
  EDGENODE_KIND,
  EDGENODE_LABEL,
  type EdgeNode,
  type LabelSelector,
} from "../api/v1alpha1.ts";

export const AGENT_SERVICE_ACCOUNT = "edgeshift-agent";
export const KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints";
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

export interface AgentSettings {
  namespace: string;
  image: string;
}

/**
 * The edge agent of one EdgeNode: a DaemonSet on exactly that EdgeNode's nodes,
 * owned by the EdgeNode (so it goes when the EdgeNode goes), with the kubelet's
 * checkpoint directory and the registry credentials mounted. Its ServiceAccount
 * may only create nodes/checkpoint, read Migrations and update their status.
 */
export function agentDaemonSet(en: EdgeNode, s: AgentSettings): V1DaemonSet {
  const name = en.metadata.name ?? "";
  const labels = {
    "app.kubernetes.io/name": "edgeshift-agent",
    "app.kubernetes.io/part-of": "edgeshift",
    "app.kubernetes.io/component": "agent",
    [EDGENODE_LABEL]: name,
  };
  const registry = en.spec.registry;
  const env = [
    { name: "EDGESHIFT_NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
    { name: "EDGESHIFT_KUBELET_HOST", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
    { name: "EDGESHIFT_EDGENODE", value: name },
    { name: "EDGESHIFT_CHECKPOINT_DIR", value: KUBELET_CHECKPOINT_DIR },
    { name: "EDGESHIFT_REGISTRY_REPOSITORY", value: registry?.repository ?? "" },
    { name: "EDGESHIFT_REGISTRY_INSECURE", value: String(registry?.insecure ?? false) },
    { name: "EDGESHIFT_IMAGE_RETENTION", value: registry?.imageRetention ?? "Delete" },
  ];
  const volumes: NonNullable<NonNullable<V1DaemonSet["spec"]>["template"]["spec"]>["volumes"] = [
    { name: "checkpoints", hostPath: { path: KUBELET_CHECKPOINT_DIR, type: "DirectoryOrCreate" } },
  ];
  const mounts = [{ name: "checkpoints", mountPath: KUBELET_CHECKPOINT_DIR }];
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
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: {
      name: agentName(name),
      namespace: s.namespace,
      labels,
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: EDGENODE_KIND,
          name,
          uid: en.metadata.uid ?? "",
          controller: true,
        },
      ],
    },
    spec: {
      selector: { matchLabels: { "app.kubernetes.io/component": "agent", [EDGENODE_LABEL]: name } },
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "25%" } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: AGENT_SERVICE_ACCOUNT,
          volumes,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  { matchExpressions: nodeSelectorRequirements(en.spec.nodeSelector) },
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
                // Archives are root-owned 0600 files in a root-owned directory: root, but no capabilities.
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
