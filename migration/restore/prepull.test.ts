import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { BASE_IMAGES_ANNOTATION, MIGRATION_POD_LABEL } from "./pod.ts";
import {
  buildPrepullPod,
  nodeHasImages,
  normalizeImageRef,
  PREPULL_COMMAND,
  prepullPodName,
  prepullState,
} from "./prepull.ts";

const original: V1Pod = {
  metadata: { name: "web", namespace: "shop", uid: "u1" },
  spec: {
    nodeName: "edge-1",
    serviceAccountName: "web",
    imagePullSecrets: [{ name: "pull" }],
    containers: [
      { name: "app", image: "registry.example/app:1", command: ["/app"] },
      { name: "side", image: "registry.example/side:2" },
      { name: "again", image: "registry.example/app:1" },
    ],
  },
};
const migration = {
  apiVersion: "edgeshift.dev/v1alpha1",
  kind: "Migration",
  metadata: { name: "web-m", namespace: "shop", uid: "m-uid" },
  spec: { podName: "web" },
} as Migration;

describe("buildPrepullPod", () => {
  it("pulls each migrated container's image once, on the target, with the pod's pull credentials", () => {
    const p = buildPrepullPod(original, migration, ["app", "again"], "cloud-1");
    expect(p.metadata?.name).toBe(prepullPodName("web", "m-uid"));
    expect(p.spec?.nodeName).toBe("cloud-1");
    expect(p.spec?.containers.map((c) => c.image)).toEqual(["registry.example/app:1"]);
    expect(p.spec?.containers[0]?.command).toEqual([PREPULL_COMMAND]);
    expect(p.spec?.imagePullSecrets).toEqual([{ name: "pull" }]);
    expect(p.spec?.serviceAccountName).toBe("web");
    expect(p.spec?.automountServiceAccountToken).toBe(false);
    expect(p.spec?.restartPolicy).toBe("Never");
    expect(p.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "Migration", uid: "m-uid" });
    const sc = p.spec?.containers[0]?.securityContext;
    expect(sc).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false });
  });

  it("pulls a restored pod's workload images, not the checkpoint images it runs", () => {
    const restored: V1Pod = {
      metadata: {
        name: "web-1a2b",
        namespace: "shop",
        labels: { [MIGRATION_POD_LABEL]: "web-m" },
        annotations: {
          [BASE_IMAGES_ANNOTATION]: JSON.stringify({ app: "registry.example/app:1" }),
        },
      },
      spec: {
        nodeName: "cloud-1",
        containers: [
          { name: "app", image: `registry.example/ckpt@sha256:${"a".repeat(64)}` },
          { name: "side", image: "registry.example/side:2" },
        ],
      },
    };
    const p = buildPrepullPod(restored, migration, ["app", "side"], "edge-1");
    expect(p.spec?.containers.map((c) => c.image)).toEqual([
      "registry.example/app:1",
      "registry.example/side:2",
    ]);
  });

  it("names are DNS labels and differ per migration", () => {
    const long = prepullPodName("x".repeat(80), "a");
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
    expect(prepullPodName("web", "a")).not.toBe(prepullPodName("web", "b"));
  });
});

describe("prepullState", () => {
  const pod = (statuses: NonNullable<V1Pod["status"]>["containerStatuses"]): V1Pod => ({
    spec: { containers: [{ name: "pull-0", image: "i" }] },
    status: { containerStatuses: statuses },
  });
  const st = (state: object, imageID = "") => ({
    name: "pull-0",
    image: "i",
    imageID,
    ready: false,
    restartCount: 0,
    state,
  });

  it("is pulling until the kubelet reports the container", () => {
    expect(prepullState(pod(undefined)).state).toBe("pulling");
    expect(prepullState(pod([st({ waiting: { reason: "ContainerCreating" } })])).state).toBe(
      "pulling",
    );
  });

  it("is pulled once the container exists, failed to start or ran", () => {
    expect(
      prepullState(pod([st({ terminated: { exitCode: 128, reason: "StartError" } })])).state,
    ).toBe("pulled");
    expect(prepullState(pod([st({ waiting: { reason: "CreateContainerError" } })])).state).toBe(
      "pulled",
    );
    expect(prepullState(pod([st({ waiting: {} }, "sha256:abc")])).state).toBe("pulled");
  });

  it("fails with the kubelet's reason when the image cannot be pulled", () => {
    const s = prepullState(
      pod([st({ waiting: { reason: "ErrImagePull", message: "not found" } })]),
    );
    expect(s).toEqual({ state: "failed", message: "i: ErrImagePull: not found" });
  });
});

describe("images already on the target", () => {
  it("normalizes references as runtimes store them", () => {
    expect(normalizeImageRef("busybox:1.37")).toBe("docker.io/library/busybox:1.37");
    expect(normalizeImageRef("busybox")).toBe("docker.io/library/busybox:latest");
    expect(normalizeImageRef("org/app")).toBe("docker.io/org/app:latest");
    expect(normalizeImageRef("10.0.0.1:5000/app")).toBe("10.0.0.1:5000/app:latest");
    expect(normalizeImageRef("ghcr.io/x/y@sha256:ab")).toBe("ghcr.io/x/y@sha256:ab");
  });

  it("finds every image in the node's status, or not", () => {
    const node = {
      status: {
        images: [
          { names: ["docker.io/library/busybox:1.37", "docker.io/library/busybox@sha256:1"] },
        ],
      },
    };
    expect(nodeHasImages(node, ["busybox:1.37"])).toBe(true);
    expect(nodeHasImages(node, ["busybox:1.37", "node:24"])).toBe(false);
    expect(nodeHasImages(undefined, ["busybox:1.37"])).toBe(false);
  });
});
