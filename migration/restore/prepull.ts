// The base images of a checkpoint, pulled onto the target node through its
// kubelet before the restored pod is created. Runtimes do not pull them the
// way pods do: containerd pulls a checkpoint's base image itself during the
// restore, outside the kubelet's pull secrets and the CRI registry mirrors
// (plain HTTP only to localhost), and CRI-O does not pull it at all. A pod that
// names those images on the target node makes its kubelet pull them with the
// original pod's pull secrets, as any pod's images are pulled. Its containers
// never run anything: their command does not exist, so each container fails to
// start once its image is on the node. Pure: the Migration controller creates
// what this returns and reads back its status.
import { createHash } from "node:crypto";
import type { V1Container, V1Node, V1Pod } from "@kubernetes/client-node";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { baseImages, MIGRATION_POD_LABEL, toLabelValue } from "./pod.ts";

/** On a pre-pull pod: what it is for, so nothing mistakes it for the workload. */
export const PREPULL_LABEL = "edgeshift.dev/prepull";
/** A path no image has: the container fails to start, after its image was pulled. */
export const PREPULL_COMMAND = "/.edgeshift-prepull-does-not-run";

export function prepullPodName(podName: string, migrationUid: string): string {
  const hash = createHash("sha256").update(`prepull/${migrationUid}`).digest("hex").slice(0, 8);
  const base = podName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 63 - "-prepull-".length - 8)
    .replace(/^[^a-z0-9]+/, "")
    .replace(/[^a-z0-9]+$/, "");
  return `${base || "pod"}-prepull-${hash}`;
}

/** The pod that pulls the images of `containers` (of `original`) onto `targetNode`. */
export function buildPrepullPod(
  original: V1Pod,
  migration: Migration,
  containers: string[],
  targetNode: string,
): V1Pod {
  const images = prepullImages(original, containers);
  const pull: V1Container[] = images.map((image, i) => ({
    name: `pull-${i}`,
    image,
    imagePullPolicy: "IfNotPresent",
    command: [PREPULL_COMMAND],
    resources: { requests: { cpu: "1m", memory: "1Mi" }, limits: { cpu: "10m", memory: "16Mi" } },
    // Acceptable to the `restricted` Pod Security level, since nothing runs.
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    },
  }));
  const migrationName = migration.metadata.name ?? "";
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: prepullPodName(original.metadata?.name ?? "", migration.metadata.uid ?? ""),
      namespace: original.metadata?.namespace,
      labels: { [PREPULL_LABEL]: "true", [MIGRATION_POD_LABEL]: toLabelValue(migrationName) },
      ownerReferences: [
        {
          apiVersion: migration.apiVersion ?? "edgeshift.dev/v1alpha1",
          kind: migration.kind ?? "Migration",
          name: migrationName,
          uid: migration.metadata.uid ?? "",
          controller: true,
        },
      ],
    },
    spec: {
      nodeName: targetNode,
      restartPolicy: "Never",
      // The same pull credentials as the workload (its ServiceAccount's come with it).
      serviceAccountName: original.spec?.serviceAccountName,
      imagePullSecrets: original.spec?.imagePullSecrets,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 0,
      tolerations: [{ operator: "Exists" }],
      containers: pull,
    },
  };
}

export type PrepullState =
  | { state: "pulling" }
  | { state: "pulled" }
  | { state: "failed"; message: string };

const PULL_FAILURES = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
]);

/** Waiting reasons the kubelet reports only once the image is on the node. */
const AFTER_PULL = new Set([
  "CreateContainerError",
  "CreateContainerConfigError",
  "RunContainerError",
  "StartError",
  "CrashLoopBackOff",
]);

/** Whether every image of a pre-pull pod is on its node, as the kubelet reports it. */
export function prepullState(pod: V1Pod): PrepullState {
  const want = pod.spec?.containers?.length ?? 0;
  const statuses = pod.status?.containerStatuses ?? [];
  if (statuses.length < want) return { state: "pulling" };
  for (const s of statuses) {
    const w = s.state?.waiting;
    if (w && PULL_FAILURES.has(w.reason ?? "")) {
      return {
        state: "failed",
        message: `${s.image}: ${w.reason}${w.message ? `: ${w.message}` : ""}`,
      };
    }
    // Created (and failed to start), running or exited: the image is there.
    const pulled =
      !!s.imageID || !!s.state?.terminated || !!s.state?.running || AFTER_PULL.has(w?.reason ?? "");
    if (!pulled) return { state: "pulling" };
  }
  return { state: "pulled" };
}

/** An image reference as runtimes store it: registry host and tag made explicit. */
export function normalizeImageRef(ref: string): string {
  const slash = ref.indexOf("/");
  const first = slash < 0 ? "" : ref.slice(0, slash);
  const hasHost = first.includes(".") || first.includes(":") || first === "localhost";
  let name = hasHost ? ref : `docker.io/${slash < 0 ? `library/${ref}` : ref}`;
  const lastPart = name.slice(name.lastIndexOf("/") + 1);
  if (!name.includes("@") && !lastPart.includes(":")) name = `${name}:latest`;
  return name;
}

/** Whether the node already reports every one of `images` (its status lists the images it holds). */
export function nodeHasImages(node: V1Node | undefined, images: string[]): boolean {
  const held = new Set(
    (node?.status?.images ?? []).flatMap((i) => i.names ?? []).map(normalizeImageRef),
  );
  return images.every((i) => held.has(normalizeImageRef(i)));
}

/**
 * The images a pre-pull pod of `original` would pull for `containers`: their
 * workload images (a pod a migration restored runs checkpoint images; the
 * images behind them are what a restore needs).
 */
export function prepullImages(original: V1Pod, containers: string[]): string[] {
  const base = baseImages(original);
  return [
    ...new Set(
      (original.spec?.containers ?? [])
        .filter((c) => containers.includes(c.name))
        .map((c) => base[c.name] ?? "")
        .filter(Boolean),
    ),
  ];
}
