// The demo's closing table, from a finished Migration's status and what the
// simulated nodes and the progress readings observed.
import type { Migration } from "../../operator/api/v1alpha1.ts";

export interface Observed {
  /** From spec.reason.sampledAt to the demo first seeing the Migration (polled every 50 ms). */
  decisionObservedMs?: number;
  /** From the demo first seeing the Migration to seeing it finished. */
  totalObservedMs?: number;
  checkpointCounter: number;
  restoredCounter: number;
  criuDumpMs?: number;
  frozenMs?: number;
  pullMs?: number;
  criuRestoreMs?: number;
  checkpointToRunningMs?: number;
}

const between = (a?: string, b?: string): number | undefined => {
  if (!a || !b) return undefined;
  const d = Date.parse(b) - Date.parse(a);
  return Number.isNaN(d) ? undefined : d;
};
const secs = (ms?: number) => (ms === undefined ? "n/a" : `${(ms / 1000).toFixed(1)} s`);
const millis = (ms?: number) => (ms === undefined ? "n/a" : `${Math.round(ms)} ms`);
const mib = (b?: number) => (b === undefined ? "n/a" : `${(b / 2 ** 20).toFixed(1)} MiB`);

/** Prints the summary; durations from status.timestamps have 1 s resolution. */
export function printTable(m: Migration, o: Observed): void {
  const ts = m.status?.timestamps ?? {};
  const created = m.metadata.creationTimestamp?.toString() ?? ts.created;
  const c0 = m.status?.containers?.[0];
  const rows: [string, string, string][] = [
    [
      "breach-to-decision",
      millis(o.decisionObservedMs),
      `spec.reason.sampledAt -> Migration seen (to creationTimestamp, 1 s resolution: ${secs(between(m.spec.reason?.sampledAt, created))})`,
    ],
    ["checkpoint", secs(between(ts.checkpointStarted, ts.checkpointed)), "status.timestamps"],
    ["  CRIU dump (edge node)", millis(o.criuDumpMs), `frozen ${millis(o.frozenMs)}`],
    ["pack+push", secs(between(ts.checkpointed, ts.imagePushed)), "status.timestamps"],
    ["restore", secs(between(ts.restoreStarted, ts.restored)), "status.timestamps"],
    ["  pull+unpack (cloud node)", millis(o.pullMs), ""],
    ["  CRIU restore (cloud node)", millis(o.criuRestoreMs), ""],
    ["cutover", secs(between(ts.restored, ts.cutOver)), "status.timestamps"],
    [
      "total",
      secs(between(ts.created, ts.finished)),
      `created -> finished (created = creationTimestamp, 1 s resolution); status.duration ${m.status?.duration ?? "?"}`,
    ],
    [
      "  total as observed by the demo",
      millis(o.totalObservedMs),
      "Migration seen -> finished seen",
    ],
    ["checkpoint start -> running on cloud", millis(o.checkpointToRunningMs), "node records"],
    ["archive size", mib(c0?.archiveSizeBytes), "status.containers[0].archiveSizeBytes"],
    ["image size", mib(c0?.imageSizeBytes), "status.containers[0].imageSizeBytes"],
    ["progress at checkpoint", String(o.checkpointCounter), "counter when the dump began"],
    ["progress right after restore", String(o.restoredCounter), "first read on the cloud node"],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const line = `+${"-".repeat(w0 + 2)}+${"-".repeat(w1 + 2)}+`;
  console.log(
    `\nMigration ${m.metadata.name} (${m.status?.sourceNode} -> ${m.status?.targetNode}, policy ${m.status?.policy})`,
  );
  console.log(line);
  for (const [a, b, note] of rows) {
    console.log(`| ${a.padEnd(w0)} | ${b.padStart(w1)} | ${note}`);
  }
  console.log(line);
}
