// `kubectl edgeshift migrate`: the Migration it creates and the progress lines
// it prints while following one. Pure; plugin/follow.ts does the watching.
import type { V1Pod } from "@kubernetes/client-node";
import { migrationFinished } from "../operator/api/status.ts";
import {
  API_VERSION,
  MIGRATION_KIND,
  type Migration,
  type MigrationPhase,
  type RestorePolicy,
} from "../operator/api/v1alpha1.ts";
import { nextMigrationName } from "../operator/decision/engine.ts";
import { formatBytes, formatDuration, renderTimeline } from "./format.ts";

/**
 * The name the decision engine would give this pod's next attempt (one past the
 * attempts in `existing`, the names of the namespace's Migrations), so a hand-made
 * and an automatic attempt of one pod collide instead of running side by side.
 */
export function buildMigration(
  pod: V1Pod,
  opts: { to?: string; policy?: RestorePolicy; back?: boolean },
  existing: Iterable<string> = [],
): Migration {
  const name = pod.metadata?.name ?? "";
  return {
    apiVersion: API_VERSION,
    kind: MIGRATION_KIND,
    metadata: {
      name: nextMigrationName(name, pod.metadata?.uid ?? "", existing),
      namespace: pod.metadata?.namespace,
      labels: { "app.kubernetes.io/managed-by": "kubectl-edgeshift" },
    },
    spec: {
      podName: name,
      ...(opts.back ? { direction: "ToEdge" as const } : {}),
      ...(opts.to ? { targetNode: opts.to } : {}),
      ...(opts.policy ? { restorePolicy: opts.policy } : {}),
      reason: { type: "Manual" },
    },
  };
}

export type Outcome = "Succeeded" | "Failed";

/** Succeeded or Failed once the migration has ended (its Succeeded condition decides), else undefined. */
export function outcome(m: Migration): Outcome | undefined {
  if (!migrationFinished(m)) return undefined;
  const c = m.status?.conditions?.find((x) => x.type === "Succeeded");
  if (c) return c.status === "True" ? "Succeeded" : "Failed";
  return m.status?.phase === "Succeeded" ? "Succeeded" : "Failed";
}

function detail(m: Migration, phase: MigrationPhase): string {
  const s = m.status;
  switch (phase) {
    case "Pending":
      return "waiting for the operator";
    case "Checkpointing":
      return `on ${s?.sourceNode ?? "the source node"}`;
    case "Pushing": {
      const size = (s?.containers ?? []).reduce((n, c) => n + (c.archiveSizeBytes ?? 0), 0);
      return `checkpoint image to the registry${size ? ` (${formatBytes(size)} archive)` : ""}`;
    }
    case "Restoring":
      return `on ${s?.targetNode ?? (m.spec.direction === "ToEdge" ? "an edge node" : "a cloud node")} (policy ${s?.policy ?? "?"})`;
    case "CuttingOver":
      return `restored pod ${s?.restoredPod ?? "?"} is ready; removing the original`;
    case "Succeeded":
      return `pod ${m.spec.podName} now runs as ${s?.restoredPod ?? "?"} on ${s?.targetNode ?? "?"}`;
    case "Failed":
      return `${s?.failureReason ?? "Failed"}: ${s?.message ?? ""}`;
  }
}

/** Turns successive observations of one Migration into a line per phase change, with durations. */
export class Progress {
  private phase: MigrationPhase | undefined;
  private since = 0;
  private readonly started: number;

  constructor(startedMs: number) {
    this.started = startedMs;
  }

  /** Lines to print for this observation (none when the phase did not change). */
  observe(m: Migration, nowMs: number): string[] {
    const phase: MigrationPhase = m.status?.phase ?? "Pending";
    if (phase === this.phase) return [];
    const previous = this.phase
      ? `  (${this.phase} took ${formatDuration((nowMs - this.since) / 1000)})`
      : "";
    this.phase = phase;
    this.since = nowMs;
    const elapsed = `+${formatDuration((nowMs - this.started) / 1000)}`.padStart(8);
    return [`${elapsed}  ${phase.padEnd(15)}${detail(m, phase)}${previous}`];
  }
}

/** What to print once the migration has ended. */
export function summary(m: Migration, result: Outcome): string {
  const ref = `${m.metadata.namespace}/${m.metadata.name}`;
  if (result === "Succeeded") {
    return [
      `Migration ${ref} succeeded in ${m.status?.duration ?? "?"}.`,
      "",
      "Timeline:",
      renderTimeline(m.status?.timestamps),
    ].join("\n");
  }
  return `Migration ${ref} failed: ${m.status?.failureReason ?? "unknown reason"}: ${m.status?.message ?? ""}\nDetails: kubectl edgeshift describe ${m.metadata.name} -n ${m.metadata.namespace}`;
}
