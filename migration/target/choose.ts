// Picks the cloud node a migrated pod is restored on. Pure: the caller passes
// the nodes and the pods bound to them (from informer caches).
//
// The checks mirror the kube-scheduler filters that would otherwise refuse the
// restore pod (NodeUnschedulable, TaintToleration, NodeAffinity,
// NodeResourcesFit), plus what CRIU needs (same CPU architecture), so a
// migration that cannot land fails up front with `NoTarget` instead of after a
// checkpoint with a Pending pod. The restore pod still goes through the
// scheduler, which re-checks capacity at bind time.
import type {
  V1Container,
  V1Node,
  V1NodeSelectorRequirement,
  V1NodeSelectorTerm,
  V1Pod,
  V1Taint,
  V1Toleration,
} from "@kubernetes/client-node";
import { matchesLabelSelector } from "../../operator/api/labels.ts";
import type { LabelSelector } from "../../operator/api/v1alpha1.ts";
import { nodeRuntimeSupport, restoreRefusal } from "../../operator/edgenode/preflight.ts";
import { parseQuantity } from "../../operator/kube/quantity.ts";
import { unpinned } from "../restore/pod.ts";

export const ARCH_LABEL = "kubernetes.io/arch";
/** Upper bound of the NoTarget / TargetNotSuitable message (a condition message, not a log). */
export const MAX_MESSAGE_LENGTH = 1024;

export interface ChooseTargetInput {
  pod: V1Pod;
  sourceNode: V1Node;
  candidates: V1Node[];
  /** Pods bound to each node (spec.nodeName), keyed by node name. */
  podsByNode: Map<string, V1Pod[]>;
  /** The nodes a target may be: the EdgeNode's cloud.nodeSelector, or (side edge) its nodeSelector. */
  cloudSelector: LabelSelector;
  /** Which way the pod moves, for the messages: default cloud (a move out), edge for a return. */
  side?: "cloud" | "edge";
  /** The target must be able to checkpoint too (a return: the pod can move out again). */
  targetMustCheckpoint?: boolean;
  /** Migration spec.targetNode: honoured only when it passes every check. */
  targetNode?: string;
  /**
   * The pod moves with a checkpoint: the target's runtime must restore it
   * (same runtime family as the source, restore on or confirmed by the
   * admin's annotation; see operator/edgenode/preflight.ts).
   */
  checkpoint?: boolean;
}

export type ChooseTargetResult =
  | { ok: true; node: string; reason: string }
  | { ok: false; reason: "NoTarget" | "TargetNotSuitable"; message: string };

/** cpu in millicores, memory in bytes: integers, as the scheduler compares them. */
export interface Resources {
  cpu: number;
  memory: number;
}

// --- requests ------------------------------------------------------------------

// Quantities are compared as integers (millicores, bytes) the way the scheduler
// does (Quantity.MilliValue / Value round up); rounding first keeps float noise
// such as 0.3 * 1000 = 300.00000000000006 from adding a unit.
function ceilUnits(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - r) < 1e-6 ? r : Math.ceil(x);
}

function milliCpu(q: string | undefined): number {
  const v = parseQuantity(q);
  return v === undefined || v < 0 ? 0 : ceilUnits(v * 1000);
}

function bytes(q: string | undefined): number {
  const v = parseQuantity(q);
  return v === undefined || v < 0 ? 0 : ceilUnits(v);
}

function containerRequests(c: V1Container): Resources {
  // The API server defaults a missing request to the limit; do the same for
  // objects that did not come through it (and for old cached copies).
  const req = c.resources?.requests ?? {};
  const lim = c.resources?.limits ?? {};
  return {
    cpu: milliCpu(req.cpu ?? lim.cpu),
    memory: bytes(req.memory ?? lim.memory),
  };
}

function add(a: Resources, b: Resources): Resources {
  return { cpu: a.cpu + b.cpu, memory: a.memory + b.memory };
}

function max(a: Resources, b: Resources): Resources {
  return { cpu: Math.max(a.cpu, b.cpu), memory: Math.max(a.memory, b.memory) };
}

/**
 * The pod's effective requests as the scheduler computes them
 * (k8s.io/component-helpers resource.PodRequests): app containers and
 * restartable (sidecar) init containers add up; each regular init container
 * runs alone next to the sidecars started before it, so the pod needs the
 * larger of the two; pod overhead comes on top.
 */
export function podRequests(pod: V1Pod): Resources {
  let apps: Resources = { cpu: 0, memory: 0 };
  for (const c of pod.spec?.containers ?? []) apps = add(apps, containerRequests(c));
  let sidecars: Resources = { cpu: 0, memory: 0 };
  let init: Resources = { cpu: 0, memory: 0 };
  for (const c of pod.spec?.initContainers ?? []) {
    const r = containerRequests(c);
    if (c.restartPolicy === "Always") {
      sidecars = add(sidecars, r);
      init = max(init, sidecars);
    } else {
      init = max(init, add(r, sidecars));
    }
  }
  const overhead = pod.spec?.overhead ?? {};
  return add(max(add(apps, sidecars), init), {
    cpu: milliCpu(overhead.cpu),
    memory: bytes(overhead.memory),
  });
}

function isTerminated(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return phase === "Succeeded" || phase === "Failed";
}

// --- node checks -------------------------------------------------------------------

/** Kubernetes' Toleration.ToleratesTaint (k8s.io/api/core/v1/toleration.go). */
export function toleratesTaint(toleration: V1Toleration, taint: V1Taint): boolean {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.key && toleration.key !== taint.key) return false;
  switch (toleration.operator ?? "Equal") {
    case "":
    case "Equal":
      return (toleration.value ?? "") === (taint.value ?? "");
    case "Exists":
      return true;
    default:
      return false;
  }
}

/** The NoSchedule/NoExecute taints of `node` none of `tolerations` tolerates. */
export function untoleratedTaints(node: V1Node, tolerations: V1Toleration[]): V1Taint[] {
  return (node.spec?.taints ?? []).filter(
    (t) =>
      (t.effect === "NoSchedule" || t.effect === "NoExecute") &&
      !tolerations.some((tol) => toleratesTaint(tol, t)),
  );
}

/** The node's CPU architecture: the well-known label, else what the kubelet reports. */
export function nodeArchitecture(node: V1Node): string | undefined {
  return node.metadata?.labels?.[ARCH_LABEL] || node.status?.nodeInfo?.architecture || undefined;
}

function isReady(node: V1Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function requirementMatches(r: V1NodeSelectorRequirement, value: string | undefined): boolean {
  const values = r.values ?? [];
  switch (r.operator) {
    case "In":
      return value !== undefined && values.includes(value);
    case "NotIn":
      return value === undefined || !values.includes(value);
    case "Exists":
      return value !== undefined;
    case "DoesNotExist":
      return value === undefined;
    case "Gt":
    case "Lt": {
      // Both sides must be integers, as in apimachinery's selector.
      if (value === undefined || values.length !== 1) return false;
      if (!/^-?\d+$/.test(value) || !/^-?\d+$/.test(values[0] ?? "")) return false;
      const a = BigInt(value);
      const b = BigInt(values[0] ?? "0");
      return r.operator === "Gt" ? a > b : a < b;
    }
    default:
      return false;
  }
}

export function termMatches(term: V1NodeSelectorTerm, node: V1Node): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  // An empty term selects nothing (v1.NodeSelectorTerm semantics).
  if (exprs.length === 0 && fields.length === 0) return false;
  const labels = node.metadata?.labels ?? {};
  for (const r of exprs) {
    if (!requirementMatches(r, Object.hasOwn(labels, r.key) ? labels[r.key] : undefined)) {
      return false;
    }
  }
  for (const r of fields) {
    // metadata.name is the only node field a selector may use.
    const value = r.key === "metadata.name" ? node.metadata?.name : undefined;
    if (r.key !== "metadata.name" || !requirementMatches(r, value)) return false;
  }
  return true;
}

/**
 * Whether the pod's own placement rules (spec.nodeSelector and required node
 * affinity) admit `node`. The restore pod keeps them, so the scheduler would
 * refuse a node that fails them - typically a pod pinned to edge nodes.
 */
export function podAdmitsNode(pod: V1Pod, node: V1Node): boolean {
  const labels = node.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(pod.spec?.nodeSelector ?? {})) {
    if (labels[k] !== v) return false;
  }
  const required = pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (!required) return true;
  return required.nodeSelectorTerms.some((t) => termMatches(t, node));
}

function formatTaint(t: V1Taint): string {
  return `${t.key}${t.value ? `=${t.value}` : ""}:${t.effect}`;
}

function formatCpu(m: number): string {
  return m % 1000 === 0 ? `${m / 1000}` : `${m}m`;
}

function formatMemory(b: number): string {
  const units: [string, number][] = [
    ["Gi", 2 ** 30],
    ["Mi", 2 ** 20],
    ["Ki", 2 ** 10],
  ];
  for (const [suffix, size] of units) {
    if (b >= size) return `${Number((b / size).toFixed(1))}${suffix}`;
  }
  return `${b}`;
}

interface Evaluation {
  node: string;
  /** Why the node cannot take the pod; empty when it can. */
  problems: string[];
  /** max(cpu share, memory share) of allocatable after placement. */
  load: number;
  cpuShare: number;
  memoryShare: number;
  selectorMismatch: boolean;
}

function share(used: number, allocatable: number): number {
  if (allocatable > 0) return used / allocatable;
  return used > 0 ? Number.POSITIVE_INFINITY : 0;
}

function evaluate(
  node: V1Node,
  input: ChooseTargetInput,
  request: Resources,
  sourceArch: string | undefined,
): Evaluation {
  const name = node.metadata?.name ?? "";
  const problems: string[] = [];
  const selectorMismatch = !matchesLabelSelector(input.cloudSelector, node.metadata?.labels ?? {});
  if (selectorMismatch) problems.push(`does not match the ${input.side ?? "cloud"} node selector`);
  if (name === input.sourceNode.metadata?.name) problems.push("is the source node");
  if (node.metadata?.deletionTimestamp) problems.push("is being deleted");
  if (!isReady(node)) problems.push("not Ready");
  if (node.spec?.unschedulable) problems.push("unschedulable (cordoned)");
  const taints = untoleratedTaints(node, input.pod.spec?.tolerations ?? []);
  if (taints.length > 0) {
    problems.push(`untolerated taint ${taints.map(formatTaint).join(", ")}`);
  }
  const arch = nodeArchitecture(node);
  if (sourceArch === undefined) {
    problems.push("source node architecture unknown");
  } else if (arch !== sourceArch) {
    problems.push(`architecture ${arch ?? "unknown"}, source is ${sourceArch}`);
  }
  // Not by the pin a migration gave a restored pod: it may move on, and back.
  if (!podAdmitsNode(unpinned(input.pod), node)) {
    problems.push("pod's nodeSelector/required node affinity does not match");
  }
  if (input.checkpoint) {
    const refusal = restoreRefusal(nodeRuntimeSupport(input.sourceNode), nodeRuntimeSupport(node));
    if (refusal) problems.push(refusal);
  }
  if (input.targetMustCheckpoint) {
    const rt = nodeRuntimeSupport(node);
    if (!rt.checkpoint) problems.push(`cannot checkpoint${rt.message ? ` (${rt.message})` : ""}`);
  }

  // Requested resources of the pods already there. The pod itself is skipped
  // in case a cache already shows it (or its restore) bound to this node.
  let used: Resources = { cpu: 0, memory: 0 };
  let podCount = 0;
  const self = input.pod.metadata?.uid;
  for (const p of input.podsByNode.get(name) ?? []) {
    if (isTerminated(p) || (self !== undefined && p.metadata?.uid === self)) continue;
    used = add(used, podRequests(p));
    podCount++;
  }
  const alloc = node.status?.allocatable ?? {};
  const allocCpu = milliCpu(alloc.cpu);
  const allocMemory = bytes(alloc.memory);
  const allocPods = bytes(alloc.pods);
  // As NodeResourcesFit: a resource the pod does not request never blocks it,
  // and a missing allocatable counts as zero.
  if (request.cpu > 0 && request.cpu > allocCpu - used.cpu) {
    problems.push(
      `insufficient cpu (requests ${formatCpu(request.cpu)}, free ${formatCpu(Math.max(0, allocCpu - used.cpu))} of ${formatCpu(allocCpu)})`,
    );
  }
  if (request.memory > 0 && request.memory > allocMemory - used.memory) {
    problems.push(
      `insufficient memory (requests ${formatMemory(request.memory)}, free ${formatMemory(Math.max(0, allocMemory - used.memory))} of ${formatMemory(allocMemory)})`,
    );
  }
  if (podCount + 1 > allocPods) problems.push(`too many pods (${podCount} of ${allocPods})`);

  const cpuShare = share(used.cpu + request.cpu, allocCpu);
  const memoryShare = share(used.memory + request.memory, allocMemory);
  return {
    node: name,
    problems,
    load: Math.max(cpuShare, memoryShare),
    cpuShare,
    memoryShare,
    selectorMismatch,
  };
}

function percent(x: number): string {
  return Number.isFinite(x) ? `${Math.round(x * 100)}%` : "overcommitted";
}

const MAX_PART_LENGTH = 300;

/** prefix + parts joined by "; ", cut to MAX_MESSAGE_LENGTH with "and N more". */
function bounded(prefix: string, parts: string[]): string {
  let message = prefix;
  for (let i = 0; i < parts.length; i++) {
    const raw = parts[i] ?? "";
    const part = raw.length > MAX_PART_LENGTH ? `${raw.slice(0, MAX_PART_LENGTH - 3)}...` : raw;
    const sep = i === 0 ? "" : "; ";
    const after = parts.length - i - 1;
    // Keep room for the "and N more" a later cut would need.
    const reserve = after > 0 ? `; and ${after} more`.length : 0;
    if (message.length + sep.length + part.length + reserve > MAX_MESSAGE_LENGTH) {
      return `${message}${sep}and ${parts.length - i} more`;
    }
    message += sep + part;
  }
  return message;
}

/** Picks the least loaded suitable cloud node, or says why there is none. */
export function chooseTarget(input: ChooseTargetInput): ChooseTargetResult {
  const request = podRequests(input.pod);
  const sourceArch = nodeArchitecture(input.sourceNode);

  if (input.targetNode !== undefined && input.targetNode !== "") {
    const node = input.candidates.find((n) => n.metadata?.name === input.targetNode);
    if (!node) {
      return {
        ok: false,
        reason: "TargetNotSuitable",
        message: `Target node ${input.targetNode} not found`,
      };
    }
    const e = evaluate(node, input, request, sourceArch);
    if (e.problems.length > 0) {
      return {
        ok: false,
        reason: "TargetNotSuitable",
        message: bounded(`Target node ${e.node}: `, e.problems),
      };
    }
    return {
      ok: true,
      node: e.node,
      reason: `Requested target ${e.node} passed every check (cpu ${percent(e.cpuShare)}, memory ${percent(e.memoryShare)} after placement)`,
    };
  }

  const evaluations = input.candidates
    .map((n) => evaluate(n, input, request, sourceArch))
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const suitable = evaluations
    .filter((e) => e.problems.length === 0)
    .sort((a, b) => a.load - b.load || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const side = input.side ?? "cloud";
  const best = suitable[0];
  if (best) {
    return {
      ok: true,
      node: best.node,
      reason: `Least loaded of ${suitable.length} suitable ${side} node${suitable.length === 1 ? "" : "s"} (cpu ${percent(best.cpuShare)}, memory ${percent(best.memoryShare)} after placement)`,
    };
  }

  // Nodes outside the cloud selector are counted, not listed: in a large
  // cluster they are most of the candidates and say nothing new each.
  const outside = evaluations.filter((e) => e.selectorMismatch).length;
  const rejected = evaluations
    .filter((e) => !e.selectorMismatch)
    .map((e) => `${e.node}: ${e.problems.join(", ")}`);
  if (outside > 0) {
    rejected.push(
      `${outside} node${outside === 1 ? "" : "s"} do${outside === 1 ? "es" : ""} not match the ${side} node selector`,
    );
  }
  if (rejected.length === 0) {
    return {
      ok: false,
      reason: "NoTarget",
      message: `No ${side} node fits the pod: there are no candidate nodes`,
    };
  }
  return {
    ok: false,
    reason: "NoTarget",
    message: bounded(`No ${side} node fits the pod: `, rejected),
  };
}
