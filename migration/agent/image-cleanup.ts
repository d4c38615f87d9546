// The pod that removes a Migration's checkpoint images when its edge agent
// cannot (see operator/migration/controller.ts imagesLeftByAgent). The
// operator holds no right to read Secrets: the kubelet mounts the EdgeNode's
// registry Secret into this pod, as it does for the agents. Pure, so the pod is
// unit-tested; the program is migration/agent/image-cleanup-main.ts.
import { createHash } from "node:crypto";
import type { V1Pod } from "@kubernetes/client-node";
import type { Migration, RegistrySpec } from "../../operator/api/v1alpha1.ts";

export const IMAGE_CLEANUP_COMPONENT = "image-cleanup";
const AUTH_DIR = "/etc/edgeshift/registry";
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** `edgeshift-image-cleanup-<12 hex of the Migration's uid>`: one per Migration, found again by name. */
export function imageCleanupPodName(migrationUid: string): string {
  if (!migrationUid) throw new Error("Migration has no uid");
  return `edgeshift-image-cleanup-${createHash("sha256").update(migrationUid).digest("hex").slice(0, 12)}`;
}

export interface ImageCleanupInput {
  migration: Migration;
  registry: RegistrySpec;
  digests: string[];
  /** The edgeshift image (it has the program). */
  image: string;
  /** The operator's namespace, where the registry Secret is. */
  namespace: string;
}

export function imageCleanupPod(input: ImageCleanupInput): V1Pod {
  const { migration: m, registry } = input;
  for (const d of input.digests) {
    if (!DIGEST.test(d)) throw new Error(`not a sha256 digest: ${JSON.stringify(d)}`);
  }
  const source = m.status?.sourceNode;
  const env = [
    { name: "EDGESHIFT_REGISTRY_REPOSITORY", value: registry.repository },
    { name: "EDGESHIFT_REGISTRY_INSECURE", value: String(registry.insecure ?? false) },
    { name: "EDGESHIFT_CHECKPOINT_DIGESTS", value: input.digests.join(",") },
  ];
  const pod: V1Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: imageCleanupPodName(m.metadata.uid ?? ""),
      namespace: input.namespace,
      labels: {
        "app.kubernetes.io/part-of": "edgeshift",
        "app.kubernetes.io/component": IMAGE_CLEANUP_COMPONENT,
      },
      annotations: { "edgeshift.dev/migration": `${m.metadata.namespace}/${m.metadata.name}` },
    },
    spec: {
      restartPolicy: "OnFailure",
      activeDeadlineSeconds: 600,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // Not on the edge node whose agent could not do it (it may be cut off).
      ...(source
        ? {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    {
                      matchFields: [{ key: "metadata.name", operator: "NotIn", values: [source] }],
                    },
                  ],
                },
              },
            },
          }
        : {}),
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: "cleanup",
          image: input.image,
          args: ["image-cleanup"],
          env,
          resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          },
        },
      ],
    },
  };
  if (registry.secretRef) {
    const spec = pod.spec as NonNullable<V1Pod["spec"]>;
    spec.volumes = [
      {
        name: "registry-auth",
        secret: {
          secretName: registry.secretRef.name,
          items: [{ key: ".dockerconfigjson", path: "config.json" }],
        },
      },
    ];
    const c = spec.containers[0] as NonNullable<V1Pod["spec"]>["containers"][number];
    c.volumeMounts = [{ name: "registry-auth", mountPath: AUTH_DIR, readOnly: true }];
    c.env?.push({ name: "EDGESHIFT_REGISTRY_AUTH_FILE", value: `${AUTH_DIR}/config.json` });
  }
  return pod;
}
