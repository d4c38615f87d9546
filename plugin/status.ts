// `kubectl edgeshift status`: every EdgeNode with its nodes, runtime support
// and monitored pods, then the most recent migrations. Pure rendering.
import type { Condition, EdgeNode, Migration } from "../operator/api/v1alpha1.ts";
import { byAge, durationText, formatAge, phaseText, table, triggerText } from "./format.ts";

const condition = (en: EdgeNode, type: string): Condition | undefined =>
  en.status?.conditions?.find((c) => c.type === type);
const num = (n: number | undefined) => (n === undefined ? "-" : String(n));
const yesNo = (b: boolean | undefined) => (b === undefined ? "-" : b ? "yes" : "no");

export function renderStatus(
  edgeNodes: EdgeNode[],
  migrations: Migration[],
  now: Date,
  recent: number,
): string {
  const out: string[] = [];
  if (edgeNodes.length === 0) {
    out.push(
      "No EdgeNodes. Create one to start: kubectl apply -f manifests/examples/edgenode.yaml",
    );
  } else {
    const sorted = [...edgeNodes].sort((a, b) =>
      (a.metadata.name ?? "").localeCompare(b.metadata.name ?? ""),
    );
    out.push(
      table(
        [
          "EDGENODE",
          "READY",
          "CHECKPOINT",
          "NODES",
          "RUNTIME SUPPORT",
          "MONITORED PODS",
          "STALE",
          "ACTIVE",
          "POLICY",
          "AGE",
        ],
        sorted.map((en) => [
          en.metadata.name ?? "",
          condition(en, "Ready")?.status ?? "Unknown",
          condition(en, "CheckpointSupported")?.status ?? "Unknown",
          num(en.status?.matchedNodes),
          en.status?.runtimeSupport ?? "-",
          num(en.status?.monitoredPods),
          num(en.status?.staleMonitors),
          num(en.status?.activeMigrations),
          en.spec.restorePolicy ?? "checkpoint",
          formatAge(en.metadata.creationTimestamp, now),
        ]),
      ),
    );
    for (const en of sorted) {
      out.push("", `${en.metadata.name}:`);
      const nodes = en.status?.nodes ?? [];
      if (nodes.length === 0) out.push("  no matched nodes reported yet");
      else
        out.push(
          table(
            ["NODE", "RUNTIME", "CHECKPOINT", "RESTORE", "NOTE"],
            nodes.map((n) => [
              n.name,
              n.containerRuntime ?? "-",
              yesNo(n.checkpoint),
              yesNo(n.restore),
              n.message ?? "",
            ]),
            "  ",
          ),
        );
      // What is not fine, with the operator's reason: the first thing to read.
      for (const c of en.status?.conditions ?? []) {
        if (c.status !== "True") out.push(`  ${c.type}=${c.status} ${c.reason}: ${c.message}`);
      }
    }
  }

  out.push("");
  const newest = [...migrations].sort((a, b) => byAge(b, a));
  if (newest.length === 0) {
    out.push("No migrations yet.");
  } else if (recent > 0) {
    const shown = newest.slice(0, recent);
    out.push(`Recent migrations (${shown.length} of ${newest.length}, newest first):`);
    out.push(
      table(
        ["NAMESPACE", "NAME", "POD", "PHASE", "SOURCE", "TARGET", "TRIGGER", "DURATION", "AGE"],
        shown.map((m) => [
          m.metadata.namespace ?? "",
          m.metadata.name ?? "",
          m.spec.podName,
          phaseText(m),
          m.status?.sourceNode ?? "",
          m.status?.targetNode ?? "",
          triggerText(m.spec.reason),
          durationText(m, now),
          formatAge(m.metadata.creationTimestamp, now),
        ]),
      ),
    );
  }
  return out.join("\n");
}
