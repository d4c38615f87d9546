// `kubectl edgeshift describe`: one migration as a person reads it: what, why,
// where, each step with its duration, the conditions and the events. Pure.
import type { CoreV1Event } from "@kubernetes/client-node";
import type { Migration } from "../operator/api/v1alpha1.ts";
import {
  epoch,
  formatAge,
  formatBytes,
  formatDuration,
  phaseText,
  renderTimeline,
  table,
  triggerSentence,
} from "./format.ts";
import { outcome } from "./migrate.ts";

function field(label: string, value: string | number | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  return `${`${label}:`.padEnd(14)}${value}`;
}

const eventTime = (e: CoreV1Event) =>
  e.eventTime ??
  e.series?.lastObservedTime ??
  e.lastTimestamp ??
  e.firstTimestamp ??
  e.metadata.creationTimestamp;

/** What the hand-off did: a move's downtime and hold, or a fork's divergence. */
export function handoffText(m: Migration): string | undefined {
  const s = m.status;
  if (s?.policy !== "checkpoint" || !s.handoff) return undefined;
  if (s.handoff === "Fork")
    return s.divergenceSeconds === undefined
      ? "Fork (the original runs on until cutover)"
      : `Fork: the original ran on ${formatDuration(s.divergenceSeconds)} past the checkpoint (its work then is lost or done twice)`;
  const t = s.timestamps ?? {};
  if (!t.frozen) return "Freeze (the original is held frozen from the end of its checkpoint)";
  const gaps = (s.containers ?? []).map((c) => c.freezeGapMilliseconds ?? 0);
  const gap = Math.max(0, ...gaps);
  const held =
    gap === 0
      ? "held frozen at its checkpointed state"
      : `held frozen ${gap} ms after its checkpointed state (it ran on that long)`;
  if (t.thawed)
    return `Freeze: ${held}, thawed again at ${t.thawed} (rolled back: the original runs on)`;
  if (s.downtimeSeconds !== undefined)
    return `Freeze: ${held}; downtime ${formatDuration(s.downtimeSeconds)} (nothing ran), nothing lost or done twice`;
  return `Freeze: ${held} since ${t.frozen}`;
}

export function renderDescribe(m: Migration, events: CoreV1Event[], now: Date): string {
  const s = m.status;
  const failed = outcome(m) === "Failed";
  const target =
    s?.targetNode ??
    (m.spec.targetNode ? `${m.spec.targetNode} (requested)` : "chosen by the scheduler");
  const lines = [
    field("Name", m.metadata.name),
    field("Namespace", m.metadata.namespace),
    field("Pod", m.spec.podName),
    field(
      "Direction",
      m.spec.direction === "ToEdge"
        ? "ToEdge (back from the cloud to an edge node)"
        : "ToCloud (from an edge node to the cloud)",
    ),
    field("Containers", m.spec.containers?.length ? m.spec.containers.join(", ") : "all"),
    field("Trigger", triggerSentence(m.spec.reason)),
    field("EdgeNode", s?.edgeNode),
    field("Policy", s?.policy ?? m.spec.restorePolicy ?? "the EdgeNode's"),
    field("Source node", s?.sourceNode),
    field("Target node", target),
    field("Restored pod", s?.restoredPod),
    field("Phase", phaseText(m)),
    field("Duration", s?.duration),
    field("Hand-off", handoffText(m)),
    field("Failure", failed ? `${s?.failureReason ?? "Failed"}: ${s?.message ?? ""}` : undefined),
    field("Message", failed ? undefined : s?.message),
    field("Created", `${formatAge(m.metadata.creationTimestamp, now)} ago`),
  ].filter((l): l is string => l !== undefined);

  const containers = s?.containers ?? [];
  if (containers.length) {
    lines.push("", "Checkpoints:");
    lines.push(
      table(
        ["CONTAINER", "ARCHIVE", "SIZE", "IMAGE", "DIGEST"],
        containers.map((c) => [
          c.name,
          c.archivePath ?? "",
          formatBytes(c.archiveSizeBytes),
          c.image ?? "",
          c.digest ?? "",
        ]),
        "  ",
      ),
    );
  }

  lines.push("", "Timeline:", renderTimeline(s?.timestamps));

  lines.push("", "Conditions:");
  const conditions = s?.conditions ?? [];
  if (conditions.length === 0) lines.push("  (none yet)");
  else
    lines.push(
      table(
        ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
        conditions.map((c) => [
          c.type,
          c.status,
          c.reason,
          formatAge(c.lastTransitionTime, now),
          c.message,
        ]),
        "  ",
      ),
    );

  lines.push("", "Events:");
  const sorted = [...events].sort((a, b) => epoch(eventTime(a)) - epoch(eventTime(b)));
  if (sorted.length === 0) lines.push("  (none)");
  else
    lines.push(
      table(
        ["TYPE", "REASON", "AGE", "FROM", "MESSAGE"],
        sorted.map((e) => {
          const count = e.series?.count ?? e.count ?? 1;
          return [
            e.type ?? "",
            e.reason ?? "",
            `${formatAge(eventTime(e), now)}${count > 1 ? ` (x${count})` : ""}`,
            e.reportingComponent || e.source?.component || "",
            e.message ?? "",
          ];
        }),
        "  ",
      ),
    );
  return lines.join("\n");
}
