import { createHash } from "node:crypto";
import type { V1EphemeralContainer, V1Node, V1Pod } from "@kubernetes/client-node";
import type { AppMetricSpec } from "../../sidecar/app-metric.ts";
import type { ApplicationThreshold, PodSelection } from "../api/v1alpha1.ts";
import { podSelection } from "../edgenode/selection.ts";
import { parseQuantity } from "../kube/quantity.ts";
import { monitorSecretName } from "./keys.ts";

export const MONITOR_PREFIX = "edgeshift-mon-";
/**
 * The monitor's user and group: the image's numeric USER (Dockerfile). Set on
 * the container, not inherited, so a pod whose own runAsUser is 0 still gets a
 * non-root monitor instead of one the kubelet refuses under runAsNonRoot.
 */
export const MONITOR_UID = 65532;

/**
 * Why a pod is or is not watched: a Running pod, not terminating, that its
 * EdgeNode manages (edgenode/selection.ts, the rules a Migration obeys too).
 * Pure, so the rules are unit-tested.
 */
export function eligibility(
  pod: V1Pod,
  selection: PodSelection | undefined,
  operatorNamespace: string,
): { eligible: true } | { eligible: false; reason: string } {
  if (pod.metadata?.deletionTimestamp) return { eligible: false, reason: "terminating" };
  if (pod.status?.phase !== "Running") return { eligible: false, reason: "not running" };
  const selected = podSelection(pod, selection, operatorNamespace);
  return selected.selected ? { eligible: true } : { eligible: false, reason: selected.message };
}

/** Deterministic ephemeral container name for the monitor of `container` (a DNS label). */
export function monitorName(container: string): string {
  const name = `${MONITOR_PREFIX}${container}`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(container).digest("hex").slice(0, 8);
  return `${name.slice(0, 63 - 9)}-${hash}`;
}

export interface MonitorSettings {
  image: string;
  natsUrl: string;
  intervalSeconds: number;
  /** The EdgeNode's thresholds.application: one monitor per pod reads it. */
  application?: ApplicationThreshold;
}

/**
 * The container whose monitor reads the application's metric: the one that
 * declares the port, else the first (a port need not be declared to be served).
 */
export function appMetricContainer(pod: V1Pod, port: number): string | undefined {
  const cs = pod.spec?.containers ?? [];
  return (cs.find((c) => c.ports?.some((p) => p.containerPort === port)) ?? cs[0])?.name;
}

/** The threshold's scrape settings with their defaults: what the monitor reads (sidecar/app-metric.ts). */
export function appMetricSpec(t: ApplicationThreshold): AppMetricSpec {
  return {
    port: t.port,
    path: t.path ?? "/metrics",
    metric: t.metric,
    matchers: (t.matchers ?? []).map((m) => ({
      label: m.label,
      operator: m.operator ?? "=",
      value: m.value,
    })),
    type: t.type,
    per: t.per ?? "Second",
  };
}

/** EDGESHIFT_APP_METRIC. */
export function appMetricEnv(t: ApplicationThreshold): string {
  return JSON.stringify(appMetricSpec(t));
}

/**
 * The monitors a pod still lacks: one ephemeral container per app container,
 * in that container's PID namespace. Containers that already have theirs are
 * skipped, so calling this again after a resync or a restart adds nothing.
 */
export function missingMonitors(
  pod: V1Pod,
  node: V1Node | undefined,
  s: MonitorSettings,
): V1EphemeralContainer[] {
  const existing = new Set((pod.spec?.ephemeralContainers ?? []).map((c) => c.name));
  const uid = pod.metadata?.uid ?? "";
  const out: V1EphemeralContainer[] = [];
  const app = s.application;
  const appContainer = app ? appMetricContainer(pod, app.port) : undefined;
  for (const c of pod.spec?.containers ?? []) {
    const name = monitorName(c.name);
    if (existing.has(name)) continue;
    const cpuLimit =
      parseQuantity(c.resources?.limits?.cpu) ?? parseQuantity(node?.status?.allocatable?.cpu) ?? 0;
    const memLimit =
      parseQuantity(c.resources?.limits?.memory) ??
      parseQuantity(node?.status?.allocatable?.memory) ??
      0;
    // Percentages need a limit: without the container's or the node's, wait for the node to report.
    if (cpuLimit <= 0 || memLimit <= 0) continue;
    out.push({
      name,
      image: s.image,
      imagePullPolicy: "IfNotPresent",
      args: ["sidecar"],
      targetContainerName: c.name,
      env: [
        { name: "EDGESHIFT_NATS_URL", value: s.natsUrl },
        { name: "EDGESHIFT_NODE", value: pod.spec?.nodeName ?? "" },
        { name: "EDGESHIFT_NAMESPACE", value: pod.metadata?.namespace ?? "" },
        { name: "EDGESHIFT_POD", value: pod.metadata?.name ?? "" },
        { name: "EDGESHIFT_POD_UID", value: uid },
        { name: "EDGESHIFT_CONTAINER", value: c.name },
        { name: "EDGESHIFT_INTERVAL_SECONDS", value: String(s.intervalSeconds) },
        { name: "EDGESHIFT_CPU_LIMIT_CORES", value: String(cpuLimit) },
        { name: "EDGESHIFT_MEMORY_LIMIT_BYTES", value: String(Math.round(memLimit)) },
        {
          name: "EDGESHIFT_SIGNING_KEY",
          valueFrom: { secretKeyRef: { name: monitorSecretName(uid), key: c.name } },
        },
        ...(app && c.name === appContainer
          ? [{ name: "EDGESHIFT_APP_METRIC", value: appMetricEnv(app) }]
          : []),
      ],
      // Pod Security "restricted" checks ephemeral containers too, and a pod
      // may satisfy it container by container with no pod-level settings to
      // inherit: the monitor carries every field itself. It needs no privilege:
      // /proc/<pid>/stat, status and cgroup and the cgroup's cpu.stat,
      // memory.current and memory.stat are world-readable.
      securityContext: {
        runAsNonRoot: true,
        runAsUser: MONITOR_UID,
        runAsGroup: MONITOR_UID,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
      },
    });
  }
  return out;
}

/** How many of the pod's app containers have their monitor. */
export function monitoredContainers(pod: V1Pod): number {
  const existing = new Set((pod.spec?.ephemeralContainers ?? []).map((c) => c.name));
  return (pod.spec?.containers ?? []).filter((c) => existing.has(monitorName(c.name))).length;
}
