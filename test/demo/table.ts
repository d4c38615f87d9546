// The demo's closing table, from a finished Migration's status and what the
// demo read from the pods' logs (`kubectl logs --timestamps`).
import type { Migration } from "../../operator/api/v1alpha1.ts";

export interface Observed {
  /** From spec.reason.sampledAt to the demo's watch delivering the Migration. */
  decisionObservedMs?: number;
  /** From the watch delivering the Migration to delivering it finished. */
  totalObservedMs?: number;
  /** From the watch delivering the Migration to status.timestamps.checkpointStarted. */
  seenToCheckpointStartedMs?: number;
  /** From status.timestamps.restoreStarted to the restored process's first log line. */
  restoreStartedToFirstLineMs?: number;
  /** The largest gap between two lines of the restored pod's log: the hand-over. */
  logGapMs: number;
  /** The next largest gap, for comparison. */
  nextLargestGapMs: number;
  reportEvery: number;
  /** The original's last progress line before status.timestamps.checkpointStarted. */
  originalAtCheckpoint?: number;
  /** The last progress line before the gap: the last one the checkpoint carried. */
  carried: number;
  /** Lines the checkpoint's log copy carried beyond the dumped state, printed again after the restore. */
  repeated: number;
  /** The first progress line after the gap: the first the restored process wrote. */
  resumed: number;
  /** The original's last progress line read before it was removed. */
  originalLast?: number;
  origin: string;
  resumedIn: string;
}

const between = (a?: string, b?: string): number | undefined => {
  if (!a || !b) return undefined;
  const d = Date.parse(b) - Date.parse(a);
  return Number.isNaN(d) ? undefined : d;
};
const secs = (ms?: number) => (ms === undefined ? "n/a" : `${(ms / 1000).toFixed(2)} s`);
const millis = (ms?: number) => (ms === undefined ? "n/a" : `${Math.round(ms)} ms`);
const mib = (b?: number) => (b === undefined ? "n/a" : `${(b / 2 ** 20).toFixed(2)} MiB (${b} B)`);
const num = (n?: number) => (n === undefined ? "n/a" : String(n));

/** Prints the summary; `created` (creationTimestamp) has 1 s resolution, later steps ms. */
export function printTable(m: Migration, o: Observed): void {
  const ts = m.status?.timestamps ?? {};
  const created = m.metadata.creationTimestamp?.toString() ?? ts.created;
  const c0 = m.status?.containers?.[0];
  const rows: [string, string, string][] = [
    [
      "breach-to-decision",
      millis(o.decisionObservedMs),
      `spec.reason.sampledAt -> Migration seen by the demo's watch (to creationTimestamp, 1 s resolution: ${secs(between(m.spec.reason?.sampledAt, created))})`,
    ],
    [
      "validate + dispatch",
      secs(between(ts.created, ts.checkpointStarted)),
      `created -> checkpointStarted (created has 1 s resolution; from the Migration seen: ${millis(o.seenToCheckpointStartedMs)})`,
    ],
    [
      "checkpoint",
      secs(between(ts.checkpointStarted, ts.checkpointed)),
      "checkpointStarted -> checkpointed: agent -> kubelet /checkpoint -> containerd + runc + CRIU",
    ],
    [
      "pack+push",
      secs(between(ts.checkpointed, ts.imagePushed)),
      "checkpointed -> imagePushed: OCI image to the checkpoint registry",
    ],
    [
      "hand to restore",
      secs(between(ts.imagePushed, ts.restoreStarted)),
      "imagePushed -> restoreStarted",
    ],
    [
      "restore",
      secs(between(ts.restoreStarted, ts.restored)),
      "restoreStarted -> restored: base-image pre-pull, restored pod, containerd restore, Ready",
    ],
    [
      "  to the restored process's first line",
      millis(o.restoreStartedToFirstLineMs),
      "restoreStarted -> first restored log line (runtime's timestamp)",
    ],
    ["cutover", secs(between(ts.restored, ts.cutOver)), "restored -> cutOver: original removed"],
    [
      "total",
      secs(between(ts.created, ts.finished)),
      `created -> finished; status.duration ${m.status?.duration ?? "?"}`,
    ],
    [
      "  total as observed by the demo",
      millis(o.totalObservedMs),
      "Migration seen -> finished seen (watch)",
    ],
    [
      "downtime (hand-off)",
      m.status?.handoff === "Freeze"
        ? secs(m.status.downtimeSeconds === undefined ? undefined : m.status.downtimeSeconds * 1000)
        : "n/a",
      m.status?.handoff === "Freeze"
        ? `status.downtimeSeconds: the original held frozen at its checkpointed state (gap ${num(c0?.freezeGapMilliseconds)} ms) -> restored pod Ready; nothing ran, nothing lost or done twice`
        : `handoff ${m.status?.handoff ?? "n/a"}: the original ran on ${secs(m.status?.divergenceSeconds === undefined ? undefined : m.status.divergenceSeconds * 1000)} past the checkpoint (status.divergenceSeconds)`,
    ],
    [
      "workload paused (log gap)",
      millis(o.logGapMs),
      `largest gap in the restored pod's log; next largest ${millis(o.nextLargestGapMs)}`,
    ],
    ["archive size", mib(c0?.archiveSizeBytes), "status.containers[0].archiveSizeBytes"],
    ["image size", mib(c0?.imageSizeBytes), "status.containers[0].imageSizeBytes"],
    [
      "progress at checkpoint start",
      num(o.originalAtCheckpoint),
      "original's last line before checkpointStarted (kubectl logs of the original)",
    ],
    [
      "progress the checkpoint carried",
      num(o.carried),
      `last line before the gap in the restored pod's log (the log is copied after the dump; ${o.repeated} line(s) of it printed again after the restore)`,
    ],
    [
      "progress right after restore",
      num(o.resumed),
      `first line after the gap (see note); it says started in ${o.origin}, now in ${o.resumedIn}`,
    ],
    [
      "original's last progress",
      num(o.originalLast),
      m.status?.handoff === "Freeze"
        ? "last line read from the original before its removal (held frozen from the checkpoint on)"
        : "last line read from the original before its removal (it ran on after the checkpoint)",
    ],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const line = `+${"-".repeat(w0 + 2)}+${"-".repeat(w1 + 2)}+`;
  console.log(
    `\nMigration ${m.metadata.name} (${m.status?.sourceNode} -> ${m.status?.targetNode}, policy ${m.status?.policy}, handoff ${m.status?.handoff ?? "n/a"})`,
  );
  console.log(line);
  for (const [a, b, note] of rows) {
    console.log(`| ${a.padEnd(w0)} | ${b.padStart(w1)} | ${note}`);
  }
  console.log(line);
  console.log(
    [
      "Note: progress is what the workload logs every",
      `${o.reportEvery} iterations. The restored pod's log starts with the original's lines`,
      "(the checkpoint carries the container's log), so the first line the restored",
      "process wrote was found as the line after the largest gap between consecutive",
      "runtime timestamps (`kubectl logs --timestamps`); the same workload's",
      "`started in` (a shell variable set at start) names the original pod, so it is",
      "the same process, not a new one. Its `now in` ($(hostname)) names the original",
      "pod too: CRIU restores the container's UTS namespace with the checkpoint.",
      "Durations are differences of status.timestamps (ms resolution, `created` 1 s).",
    ].join("\n"),
  );
}
