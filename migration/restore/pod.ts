// Builds the pod that brings a migrated workload up on its cloud node, from the
// original pod. Pure: the Migration controller creates what this returns.
import { createHash } from "node:crypto";
import type {
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1OwnerReference,
  V1Pod,
  V1PodSpec,
} from "@kubernetes/client-node";
import { labelValueError, matchesLabelSelector } from "../../operator/api/labels.ts";
import {
  EDGENODE_LABEL,
  type LabelSelector,
  type Migration,
  type RestorePolicy,
  type RevealRecord,
} from "../../operator/api/v1alpha1.ts";

/** On a restore pod: the name of the Migration that made it. */
export const MIGRATION_POD_LABEL = "edgeshift.dev/migration";
/** On a restore pod in the cloud: the edge node the workload came from. */
export const HOME_NODE_LABEL = "edgeshift.dev/home-node";
/**
 * On a restore pod in the cloud, EDGENODE_LABEL names the EdgeNode it came
 * from: the one whose returnToEdge may bring it back. A pod back on the edge
 * carries neither.
 */
export const RETURN_LABELS = [HOME_NODE_LABEL, EDGENODE_LABEL] as const;
/**
 * On a restore pod: its migrated containers' workload images, as JSON
 * {container: image}. Their image in the spec is a checkpoint image; the next
 * move (a return, or out again) pre-pulls these onto its target instead.
 */
export const BASE_IMAGES_ANNOTATION = "edgeshift.dev/base-images";
/** The Job controller counts a finished pod only while it carries this finalizer. */
export const JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking";
/** Set by the Deployment controller on its ReplicaSets' selectors and pods. */
export const POD_TEMPLATE_HASH_LABEL = "pod-template-hash";
/** The Job controller's selector labels (the prefixed one since 1.27, the bare one before). */
export const JOB_CONTROLLER_UID_LABELS = [
  "batch.kubernetes.io/controller-uid",
  "controller-uid",
] as const;
/** Label value that takes the place of a selector value to keep an owner from adopting. */
export const HIDDEN_VALUE = "edgeshift-hidden";

// --- owner -------------------------------------------------------------------------

export type PodOwner =
  | { kind: "None" }
  | { kind: "Job" | "ReplicaSet"; ref: V1OwnerReference }
  | { kind: "Unsupported"; ownerKind: string; ref: V1OwnerReference };

/**
 * Who controls the pod, as far as a migration cares. Only bare pods, Jobs and
 * ReplicaSets (so Deployments) have a cutover; a StatefulSet pod has an
 * identity two copies cannot share, and a DaemonSet pod belongs on its node.
 */
export function ownerKind(pod: V1Pod): PodOwner {
  const ref = (pod.metadata?.ownerReferences ?? []).find((r) => r.controller === true);
  if (!ref) return { kind: "None" };
  const group = ref.apiVersion.includes("/") ? ref.apiVersion.split("/")[0] : "";
  if (ref.kind === "Job" && group === "batch") return { kind: "Job", ref };
  if (ref.kind === "ReplicaSet" && group === "apps") return { kind: "ReplicaSet", ref };
  const ownerKind =
    group === "batch" || group === "apps" || group === "" ? ref.kind : `${ref.kind}.${group}`;
  return { kind: "Unsupported", ownerKind, ref };
}

// --- names ---------------------------------------------------------------------------

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

const SUFFIX_LENGTH = 8;

/**
 * `<pod name>-<8 hex of sha256(migration uid)>`, cut to a DNS label (63): a
 * retry of the same Migration finds the pod an earlier attempt created, and a
 * later Migration of the same pod does not collide with it.
 */
export function restorePodName(podName: string, migrationUid: string): string {
  if (!migrationUid) throw new Error("Migration has no uid: cannot name its restore pod");
  const base = podName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 63 - SUFFIX_LENGTH - 1)
    .replace(/^[^a-z0-9]+/, "")
    .replace(/[^a-z0-9]+$/, "");
  return `${base || "pod"}-${sha256Hex(migrationUid).slice(0, SUFFIX_LENGTH)}`;
}

/**
 * `s` if it is a valid label value, else a valid one derived from it (cut and
 * suffixed with a hash, so distinct names stay distinct). Migration and node
 * names may be up to 253 characters; label values only 63.
 */
export function toLabelValue(s: string): string {
  if (labelValueError(s) === undefined) return s;
  const base = s
    .replace(/[^A-Za-z0-9_.-]/g, "-")
    .slice(0, 63 - SUFFIX_LENGTH - 1)
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[^A-Za-z0-9]+$/, "");
  const hash = sha256Hex(s).slice(0, SUFFIX_LENGTH);
  return base ? `${base}-${hash}` : hash;
}

// --- metadata ------------------------------------------------------------------------

// Annotations that describe the original pod's life rather than the workload:
// copying them would mislead kubelet, the ReplicaSet's scale-down ranking or a
// CNI plugin about the new pod.
const DROPPED_ANNOTATIONS = new Set([
  "kubectl.kubernetes.io/last-applied-configuration",
  "controller.kubernetes.io/pod-deletion-cost",
  "kubernetes.io/limit-ranger",
  "kubernetes.io/psp",
  "cni.projectcalico.org/containerID",
  "cni.projectcalico.org/podIP",
  "cni.projectcalico.org/podIPs",
  "k8s.v1.cni.cncf.io/network-status",
  "k8s.v1.cni.cncf.io/networks-status",
]);
const DROPPED_ANNOTATION_PREFIXES = ["kubernetes.io/config."];

/**
 * The workload image each container of `pod` runs: the one recorded when a
 * migration restored it from a checkpoint image, else its spec's.
 */
export function baseImages(pod: V1Pod): Record<string, string> {
  let recorded: Record<string, unknown> = {};
  const raw = pod.metadata?.labels?.[MIGRATION_POD_LABEL]
    ? pod.metadata?.annotations?.[BASE_IMAGES_ANNOTATION]
    : undefined;
  if (raw) {
    try {
      const v: unknown = JSON.parse(raw);
      if (v && typeof v === "object" && !Array.isArray(v)) recorded = v as Record<string, unknown>;
    } catch {
      // Not ours as written: the spec's images stand.
    }
  }
  const out: Record<string, string> = {};
  for (const c of pod.spec?.containers ?? []) {
    const r = recorded[c.name];
    const image = typeof r === "string" && r !== "" ? r : c.image;
    if (image) out[c.name] = image;
  }
  return out;
}

/** Whether a pod annotation is set by kubelet or a controller and must not be copied. */
export function isManagedAnnotation(key: string): boolean {
  return DROPPED_ANNOTATIONS.has(key) || DROPPED_ANNOTATION_PREFIXES.some((p) => key.startsWith(p));
}

function ourLabel(key: string): boolean {
  return key === MIGRATION_POD_LABEL || key === HOME_NODE_LABEL || key === EDGENODE_LABEL;
}

/**
 * Changes one label so `selector` no longer matches `labels` (in place): the
 * first requirement that one change can break.
 */
function breakSelector(selector: LabelSelector, labels: Record<string, string>): void {
  for (const k of Object.keys(selector.matchLabels ?? {}).sort()) {
    if (Object.hasOwn(labels, k) && !ourLabel(k)) {
      labels[k] = HIDDEN_VALUE;
      return;
    }
  }
  for (const r of selector.matchExpressions ?? []) {
    if (ourLabel(r.key)) continue;
    const values = r.values ?? [];
    if (r.operator === "In" && !values.includes(HIDDEN_VALUE)) {
      labels[r.key] = HIDDEN_VALUE;
      return;
    }
    if (r.operator === "Exists" || r.operator === "In") {
      delete labels[r.key];
      return;
    }
    if (r.operator === "NotIn" && values[0] !== undefined) {
      labels[r.key] = values[0];
      return;
    }
    if (r.operator === "DoesNotExist") {
      labels[r.key] = HIDDEN_VALUE;
      return;
    }
  }
}

/**
 * The labels of a restore pod its owner must not adopt yet. The well-known
 * selector labels go first (a Deployment's ReplicaSet selects on
 * pod-template-hash, a Job on its controller-uid), which leaves the labels
 * Services select on intact. Without them the owner's selector, when known,
 * says which label to change; unknown, every copied label value is replaced.
 */
function hideLabels(
  labels: Record<string, string>,
  kind: "Job" | "ReplicaSet",
  ownerSelector: LabelSelector | undefined,
): void {
  const known = kind === "ReplicaSet" ? [POD_TEMPLATE_HASH_LABEL] : [...JOB_CONTROLLER_UID_LABELS];
  let changed = false;
  for (const k of known) {
    if (Object.hasOwn(labels, k)) {
      delete labels[k];
      changed = true;
    }
  }
  if (ownerSelector) {
    if (matchesLabelSelector(ownerSelector, labels)) breakSelector(ownerSelector, labels);
    if (matchesLabelSelector(ownerSelector, labels)) {
      throw new Error(`Cannot change the labels so the ${kind} selector stops matching`);
    }
    return;
  }
  if (changed) return;
  for (const k of Object.keys(labels)) if (!ourLabel(k)) labels[k] = HIDDEN_VALUE;
}

export type RevealPatch = { metadata: { labels: Record<string, string | null> } };

/**
 * The JSON merge patch that gives a hidden restore pod back the original's
 * owner-selector labels, so the owner adopts it (the Job controller adds its
 * tracking finalizer again on adoption). Undefined when nothing differs, so a
 * repeated reconcile sends nothing.
 */
export function revealToOwner(restorePod: V1Pod, originalPod: V1Pod): RevealPatch | undefined {
  const have = restorePod.metadata?.labels ?? {};
  const want = originalPod.metadata?.labels ?? {};
  const labels: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(want)) {
    if (!ourLabel(k) && have[k] !== v) labels[k] = v;
  }
  for (const k of Object.keys(have)) {
    if (!ourLabel(k) && !Object.hasOwn(want, k)) labels[k] = null;
  }
  return Object.keys(labels).length > 0 ? { metadata: { labels } } : undefined;
}

/**
 * What cutover needs to hand a hidden restore pod to the original's owner,
 * taken from the original when the restore pod is made: its controller and its
 * labels. Undefined for a bare pod (nothing is hidden). Cutover reveals from
 * this record, so it still can after the original is gone.
 */
export function revealRecord(original: V1Pod): RevealRecord | undefined {
  const owner = ownerKind(original);
  if (owner.kind !== "Job" && owner.kind !== "ReplicaSet") return undefined;
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(original.metadata?.labels ?? {})) {
    if (!ourLabel(k)) labels[k] = v;
  }
  return { ownerKind: owner.kind, ownerName: owner.ref.name, ownerUID: owner.ref.uid, labels };
}

// --- spec -------------------------------------------------------------------------------

function sameRequirement(a: V1NodeSelectorRequirement, b: V1NodeSelectorRequirement): boolean {
  return (
    a.key === b.key &&
    a.operator === b.operator &&
    JSON.stringify(a.values ?? []) === JSON.stringify(b.values ?? [])
  );
}

/**
 * Adds "node name In [target]" to every required node selector term: terms
 * are ORed, so the pin must be ANDed into each one, and the pod's own rules
 * stay in force. An affinity instead of spec.nodeName keeps the scheduler in
 * the loop, so capacity is checked at bind time.
 */
function pinToNode(spec: V1PodSpec, targetNode: string): void {
  const pin: V1NodeSelectorRequirement = {
    key: "metadata.name",
    operator: "In",
    values: [targetNode],
  };
  const withPin = (t: V1NodeSelectorTerm): V1NodeSelectorTerm => {
    const fields = t.matchFields ?? [];
    if (fields.some((f) => sameRequirement(f, pin))) return t;
    return { ...t, matchFields: [...fields, pin] };
  };
  const affinity = spec.affinity ?? {};
  const nodeAffinity = affinity.nodeAffinity ?? {};
  const existing = nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  const terms =
    existing && existing.length > 0
      ? existing.map((t) =>
          // An empty term matches no node; pinning it would make it match one.
          (t.matchExpressions?.length ?? 0) + (t.matchFields?.length ?? 0) === 0 ? t : withPin(t),
        )
      : [{ matchFields: [pin] }];
  spec.affinity = {
    ...affinity,
    nodeAffinity: {
      ...nodeAffinity,
      requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
    },
  };
}

/**
 * The pod without the pin an earlier migration gave it (pinToNode's
 * `metadata.name In [its node]`, on a pod that carries MIGRATION_POD_LABEL): a
 * restored pod moves on, and back, by the rules of the pod it was made from,
 * not pinned to where it was restored. Anything else in its affinity stays.
 */
export function unpinned(pod: V1Pod): V1Pod {
  const node = pod.spec?.nodeName;
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (!node || !required || !pod.metadata?.labels?.[MIGRATION_POD_LABEL]) return pod;
  const pin: V1NodeSelectorRequirement = { key: "metadata.name", operator: "In", values: [node] };
  const terms = required.nodeSelectorTerms
    .map((t): V1NodeSelectorTerm => {
      const fields = (t.matchFields ?? []).filter((f) => !sameRequirement(f, pin));
      if (fields.length === (t.matchFields ?? []).length) return t;
      const { matchFields: _, ...rest } = t;
      return fields.length > 0 ? { ...rest, matchFields: fields } : rest;
    })
    // A term that was only the pin matched that node alone: without it, it is gone.
    .filter((t) => (t.matchExpressions?.length ?? 0) + (t.matchFields?.length ?? 0) > 0);
  const out = structuredClone(pod);
  const affinity = out.spec?.affinity ?? {};
  const { requiredDuringSchedulingIgnoredDuringExecution: __, ...nodeAffinity } =
    affinity.nodeAffinity ?? {};
  const next = {
    ...nodeAffinity,
    ...(terms.length > 0
      ? { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } }
      : {}),
  };
  const { nodeAffinity: ___, ...others } = affinity;
  const rebuilt = Object.keys(next).length > 0 ? { ...others, nodeAffinity: next } : others;
  if (out.spec) {
    if (Object.keys(rebuilt).length > 0) out.spec.affinity = rebuilt;
    else delete out.spec.affinity;
  }
  return out;
}

export interface RestorePodInput {
  pod: V1Pod;
  migration: Migration;
  targetNode: string;
  policy: RestorePolicy;
  /** Checkpoint image per migrated container; required for each under `checkpoint`. */
  images: Record<string, string>;
  /** imagePullSecret for the checkpoint registry, in the pod's namespace. */
  pullSecret?: string;
  /** Keep the owner from adopting (and counting) the pod until revealToOwner. */
  hideFromOwner: boolean;
  /**
   * The owner's selector. Needed to hide a pod only when it lacks the owner's
   * well-known selector labels (a ReplicaSet not made by a Deployment, a Job
   * with manualSelector); without it every copied label value is replaced.
   */
  ownerSelector?: LabelSelector;
}

/** Whether an image reference names its image by digest (`…@sha256:<64 hex>`). */
export function isDigestReference(image: string): boolean {
  return /@sha256:[0-9a-f]{64}$/.test(image);
}

/** The containers a Migration moves: those it names, or every app container. */
export function migratedContainers(pod: V1Pod, migration: Migration): string[] {
  const named = migration.spec.containers ?? [];
  return named.length > 0 ? [...named] : (pod.spec?.containers ?? []).map((c) => c.name);
}

/** The restore pod for `migration`, built from the original pod. Throws on inconsistent input. */
export function buildRestorePod(input: RestorePodInput): V1Pod {
  const { pod, migration, targetNode, policy } = input;
  const podName = pod.metadata?.name;
  if (!podName || !pod.spec) throw new Error("Original pod has no name or spec");
  if (!targetNode) throw new Error("No target node");
  if (!migration.metadata.name) throw new Error("Migration has no name");
  const sourceNode = migration.status?.sourceNode || pod.spec.nodeName;
  if (!sourceNode) throw new Error(`Pod ${podName} is not bound to a node`);
  const owner = ownerKind(pod);
  if (owner.kind === "Unsupported") {
    throw new Error(`Pods owned by a ${owner.ownerKind} cannot be migrated`);
  }

  const spec: V1PodSpec = structuredClone(unpinned(pod).spec ?? pod.spec);
  const migrated = new Set(migratedContainers(pod, migration));
  const names = new Set(spec.containers.map((c) => c.name));
  for (const name of migrated) {
    if (!names.has(name)) throw new Error(`Pod ${podName} has no container ${name}`);
  }
  if (policy === "checkpoint") {
    for (const name of Object.keys(input.images)) {
      if (!migrated.has(name)) throw new Error(`Checkpoint image for unmigrated container ${name}`);
    }
    for (const c of spec.containers) {
      if (!migrated.has(c.name)) continue;
      const image = input.images[c.name];
      if (!image) throw new Error(`No checkpoint image for container ${c.name}`);
      c.image = image;
      // A digest names one image for good: the node's copy is the image. And the
      // kubelet pulls again on every container restart under Always, while the
      // checkpoint image leaves the registry once the migration is done, so a
      // restored container that restarts would never start again. Only a tag,
      // which may be reused, is pulled every time.
      c.imagePullPolicy = isDigestReference(image) ? "IfNotPresent" : "Always";
    }
  }

  delete spec.nodeName;
  // The monitor is injected afresh on the cloud node; ephemeral containers
  // cannot be set at create time anyway.
  delete spec.ephemeralContainers;
  // Priority admission recomputes both from priorityClassName and refuses the
  // pod when a copied value differs (the class may have changed since).
  delete spec.priority;
  delete spec.preemptionPolicy;
  pinToNode(spec, targetNode);
  if (input.pullSecret) {
    const secrets = spec.imagePullSecrets ?? [];
    if (!secrets.some((s) => s.name === input.pullSecret)) {
      spec.imagePullSecrets = [...secrets, { name: input.pullSecret }];
    }
  }

  const labels: Record<string, string> = { ...(pod.metadata?.labels ?? {}) };
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(pod.metadata?.annotations ?? {})) {
    if (!isManagedAnnotation(k) && k !== BASE_IMAGES_ANNOTATION) annotations[k] = v;
  }
  if (policy === "checkpoint") {
    // The workload images behind the checkpoint images, for the pod's next move.
    const base = baseImages(pod);
    const moved = Object.fromEntries(Object.entries(base).filter(([name]) => migrated.has(name)));
    annotations[BASE_IMAGES_ANNOTATION] = JSON.stringify(moved);
  }

  let ownerReferences = (pod.metadata?.ownerReferences ?? []).map((r) => ({ ...r }));
  if (input.hideFromOwner && owner.kind !== "None") {
    ownerReferences = ownerReferences.filter((r) => r.controller !== true);
    hideLabels(labels, owner.kind, input.ownerSelector);
  }
  labels[MIGRATION_POD_LABEL] = toLabelValue(migration.metadata.name);
  if (migration.spec.direction === "ToEdge") {
    for (const k of RETURN_LABELS) delete labels[k];
  } else {
    labels[HOME_NODE_LABEL] = toLabelValue(sourceNode);
    const edgeNode = migration.status?.edgeNode;
    if (edgeNode) labels[EDGENODE_LABEL] = toLabelValue(edgeNode);
  }

  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: restorePodName(podName, migration.metadata.uid ?? ""),
      namespace: pod.metadata?.namespace,
      labels,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ...(ownerReferences.length > 0 ? { ownerReferences } : {}),
      // The original's finalizers belong to its controllers; a Job-owned
      // restore pod needs the tracking one to be counted when it succeeds.
      ...(owner.kind === "Job" ? { finalizers: [JOB_TRACKING_FINALIZER] } : {}),
    },
    spec,
  };
}
