import { describe, expect, it } from "vitest";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { imageCleanupPod, imageCleanupPodName } from "./image-cleanup.ts";

const D1 = `sha256:${"a".repeat(64)}`;
const D2 = `sha256:${"b".repeat(64)}`;
const migration: Migration = {
  apiVersion: "edgeshift.dev/v1alpha1",
  kind: "Migration",
  metadata: { name: "web-1a2b", namespace: "shop", uid: "9f1c" },
  spec: { podName: "web" },
  status: { sourceNode: "edge-7" },
};
const build = (secret?: string) =>
  imageCleanupPod({
    migration,
    registry: {
      repository: "registry.example:5000/edgeshift/checkpoints",
      insecure: true,
      ...(secret ? { secretRef: { name: secret } } : {}),
    },
    digests: [D1, D2],
    image: "ghcr.io/edgeshift/edgeshift:0.1.0",
    namespace: "edgeshift-system",
  });

describe("imageCleanupPod", () => {
  it("runs image-cleanup for the digests in the operator's namespace, named after the Migration", () => {
    const pod = build("reg");
    expect(pod.metadata?.name).toBe(imageCleanupPodName("9f1c"));
    expect(pod.metadata?.name).toMatch(/^edgeshift-image-cleanup-[0-9a-f]{12}$/);
    expect(pod.metadata?.namespace).toBe("edgeshift-system");
    expect(pod.metadata?.annotations?.["edgeshift.dev/migration"]).toBe("shop/web-1a2b");
    const c = pod.spec?.containers[0];
    expect(c?.args).toEqual(["image-cleanup"]);
    expect(Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]))).toEqual({
      EDGESHIFT_REGISTRY_REPOSITORY: "registry.example:5000/edgeshift/checkpoints",
      EDGESHIFT_REGISTRY_INSECURE: "true",
      EDGESHIFT_CHECKPOINT_DIGESTS: `${D1},${D2}`,
      EDGESHIFT_REGISTRY_AUTH_FILE: "/etc/edgeshift/registry/config.json",
    });
    // The kubelet mounts the Secret: the operator never reads it.
    expect(pod.spec?.volumes).toEqual([
      {
        name: "registry-auth",
        secret: { secretName: "reg", items: [{ key: ".dockerconfigjson", path: "config.json" }] },
      },
    ]);
    expect(c?.volumeMounts).toEqual([
      { name: "registry-auth", mountPath: "/etc/edgeshift/registry", readOnly: true },
    ]);
  });

  it("is restricted-compliant, has no API token and keeps off the source node", () => {
    const pod = build();
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.spec?.containers[0]?.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(
      pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms,
    ).toEqual([{ matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["edge-7"] }] }]);
    expect(pod.spec?.volumes).toBeUndefined();
    expect(pod.spec?.activeDeadlineSeconds).toBeGreaterThan(0);
  });

  it("refuses anything but sha256 digests (they go into the pod's environment)", () => {
    expect(() =>
      imageCleanupPod({
        migration,
        registry: { repository: "r.example/x" },
        digests: ["sha256:abc,evil"],
        image: "i",
        namespace: "n",
      }),
    ).toThrow(/not a sha256 digest/);
  });
});
