// `kubectl edgeshift list`: migrations of one namespace or all. Pure rendering.
import type { Migration } from "../operator/api/v1alpha1.ts";
import { byAge, durationText, formatAge, phaseText, table, triggerText } from "./format.ts";

export function renderList(migrations: Migration[], now: Date, namespace?: string): string {
  if (migrations.length === 0)
    return namespace ? `No migrations found in namespace ${namespace}.` : "No migrations found.";
  const all = namespace === undefined;
  // By namespace, then oldest first within it.
  const sorted = [...migrations].sort(
    (a, b) => (a.metadata.namespace ?? "").localeCompare(b.metadata.namespace ?? "") || byAge(a, b),
  );
  const header = [
    "NAME",
    "POD",
    "DIRECTION",
    "PHASE",
    "SOURCE",
    "TARGET",
    "POLICY",
    "TRIGGER",
    "DURATION",
    "AGE",
  ];
  return table(
    all ? ["NAMESPACE", ...header] : header,
    sorted.map((m) => {
      const row = [
        m.metadata.name ?? "",
        m.spec.podName,
        m.spec.direction ?? "ToCloud",
        phaseText(m),
        m.status?.sourceNode ?? "",
        m.status?.targetNode ?? m.spec.targetNode ?? "",
        m.status?.policy ?? m.spec.restorePolicy ?? "",
        triggerText(m.spec.reason),
        durationText(m, now),
        formatAge(m.metadata.creationTimestamp, now),
      ];
      return all ? [m.metadata.namespace ?? "", ...row] : row;
    }),
  );
}
