// Text helpers for kubectl-edgeshift: tables in kubectl's style, ages,
// durations, and the human forms of a Migration's fields. No I/O.
import { formatDuration, secondsBetween } from "../operator/api/duration.ts";
import type { Migration, MigrationReason, MigrationTimestamps } from "../operator/api/v1alpha1.ts";

export { formatDuration };

/** Left-aligned columns separated by three spaces, like `kubectl get`; empty cells print as "<none>"-free blanks. */
export function table(header: string[], rows: string[][], indent = ""): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    indent +
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/**
 * Milliseconds since the epoch of an API timestamp: typed clients hand back
 * Dates, CustomObjectsApi the raw RFC 3339 strings. NaN when absent.
 */
export function epoch(t: unknown): number {
  if (t instanceof Date) return t.getTime();
  return typeof t === "string" ? Date.parse(t) : Number.NaN;
}

/** kubectl's age: 45s, 12m, 5h, 3d, 2y. */
export function formatAge(from: unknown, now: Date): string {
  const t = epoch(from);
  if (Number.isNaN(t)) return "<unknown>";
  const s = Math.max(0, Math.floor((now.getTime() - t) / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  return d < 730 ? `${d}d` : `${Math.floor(d / 365)}y`;
}

/**
 * Oldest first: by creation (whole seconds on the server), then by the
 * operator's status.timestamps.created, then by namespace and name.
 */
export function byAge(a: Migration, b: Migration): number {
  const diff = (x: number, y: number) => (Number.isNaN(x - y) ? 0 : x - y);
  return (
    diff(epoch(a.metadata.creationTimestamp), epoch(b.metadata.creationTimestamp)) ||
    diff(epoch(a.status?.timestamps?.created), epoch(b.status?.timestamps?.created)) ||
    (a.metadata.namespace ?? "").localeCompare(b.metadata.namespace ?? "") ||
    (a.metadata.name ?? "").localeCompare(b.metadata.name ?? "")
  );
}

/** 12.3 MiB */
export function formatBytes(n: number | undefined): string {
  if (n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** "Failed (CheckpointFailed)" for failures, the phase otherwise; "Pending" before the operator wrote any. */
export function phaseText(m: Migration): string {
  const phase = m.status?.phase ?? "Pending";
  return phase === "Failed" && m.status?.failureReason
    ? `Failed (${m.status.failureReason})`
    : phase;
}

/** Short trigger for tables: "cpu 93%>85%" or "Manual". */
export function triggerText(r: MigrationReason | undefined): string {
  if (r?.type === "BelowReturnLevel") {
    if (r.metric === "application")
      return `${(r.series ?? "application").split(/[{ ]/)[0]} ${round(r.value)}<${round(r.threshold)}`;
    return `${r.metric ?? "?"} ${round(r.value)}%<${round(r.threshold)}%`;
  }
  if (r?.type !== "ThresholdExceeded") return "Manual";
  // The application's metric is a value, not a percentage: named by its series.
  if (r.metric === "application")
    return `${(r.series ?? "application").split(/[{ ]/)[0]} ${round(r.value)}>${round(r.threshold)}`;
  return `${r.metric ?? "?"} ${round(r.value)}%>${round(r.threshold)}%`;
}

/** Long trigger for describe. */
export function triggerSentence(r: MigrationReason | undefined): string {
  if (r?.type !== "ThresholdExceeded" && r?.type !== "BelowReturnLevel")
    return "Manual (created by hand)";
  const window = r.windowSeconds ? ` sustained over ${r.windowSeconds}s` : "";
  const at = r.sampledAt ? ` (sample of ${r.sampledAt})` : "";
  if (r.type === "BelowReturnLevel") {
    const what =
      r.metric === "application"
        ? `${r.series ?? "the application's metric"} at ${round(r.value)}, under the ${round(r.threshold)}`
        : `${r.metric ?? "?"} at ${round(r.value)}%, under the ${round(r.threshold)}%`;
    return `BelowReturnLevel: ${what} return level${window}${at}`;
  }
  if (r.metric === "application")
    return `ThresholdExceeded: ${r.series ?? "the application's metric"} at ${round(r.value)}, over the ${round(r.threshold)} trigger${window}${at}`;
  return `ThresholdExceeded: ${r.metric ?? "?"} at ${round(r.value)}%, over the ${round(r.threshold)}% trigger${window}${at}`;
}

function round(v: number | undefined): string {
  if (v === undefined) return "?";
  return String(Math.round(v * 10) / 10);
}

/** Duration for tables: status.duration, else time so far for a running migration. */
export function durationText(m: Migration, now: Date): string {
  if (m.status?.duration) return m.status.duration;
  const created = epoch(m.status?.timestamps?.created ?? m.metadata.creationTimestamp);
  const phase = m.status?.phase;
  if (Number.isNaN(created) || phase === "Succeeded" || phase === "Failed") return "";
  return formatDuration((now.getTime() - created) / 1000);
}

/** status.timestamps in the order a migration passes them, with the step each one ends. */
export const TIMELINE: { key: keyof MigrationTimestamps; label: string; step: string }[] = [
  { key: "created", label: "Created", step: "" },
  { key: "checkpointStarted", label: "Checkpoint started", step: "waiting for the agent" },
  { key: "checkpointed", label: "Checkpointed", step: "checkpoint" },
  { key: "imagePushed", label: "Image pushed", step: "push" },
  { key: "restoreStarted", label: "Restore started", step: "" },
  { key: "restored", label: "Restored", step: "restore" },
  { key: "cutOver", label: "Cut over", step: "cutover" },
  { key: "finished", label: "Finished", step: "" },
];

export interface TimelineRow {
  label: string;
  at: string;
  /** Seconds since created. */
  offset?: number;
  /** Seconds since the previous recorded step. */
  took?: number;
  step: string;
}

/** The recorded steps in order, each with its offset from creation and its own duration. */
export function timeline(ts: MigrationTimestamps | undefined): TimelineRow[] {
  if (!ts) return [];
  const rows: TimelineRow[] = [];
  let previous: string | undefined;
  for (const t of TIMELINE) {
    const at = ts[t.key];
    if (!at) continue;
    rows.push({
      label: t.label,
      at,
      offset: secondsBetween(ts.created, at),
      took: secondsBetween(previous, at),
      step: t.step,
    });
    previous = at;
  }
  return rows;
}

export function renderTimeline(ts: MigrationTimestamps | undefined, indent = "  "): string {
  const rows = timeline(ts);
  if (rows.length === 0) return `${indent}(no steps recorded yet)`;
  const secs = (s: number | undefined) => (s === undefined ? "" : formatDuration(s));
  return table(
    ["STEP", "AT", "SINCE START", "TOOK"],
    rows.map((r) => [
      r.label,
      r.at,
      r.offset === undefined ? "" : `+${secs(r.offset)}`,
      r.took === undefined ? "" : `${secs(r.took)}${r.step ? ` (${r.step})` : ""}`,
    ]),
    indent,
  );
}
