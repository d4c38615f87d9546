// Finished Migrations are history: kept for Lens and `kubectl edgeshift list`, then
// collected, so a namespace does not fill up with one object per attempt forever.
// The rule (like a CronJob's history limit plus a Job's TTL after finished): in each
// namespace the newest `keep` finished Migrations stay whatever their age; an older
// one goes once it finished more than `ttlMs` ago. Unfinished ones are never touched.
import { migrationFinished } from "../api/status.ts";
import type { Migration } from "../api/v1alpha1.ts";

export interface HistoryPolicy {
  /** Finished Migrations kept per namespace whatever their age. */
  keep: number;
  /** Beyond those, how long after it finished a Migration is deleted. */
  ttlMs: number;
}

/** When a Migration finished: its own record, else its last condition change, else its creation. */
export function finishedAt(m: Migration): number {
  const candidates = [
    m.status?.timestamps?.finished,
    m.status?.conditions?.find((c) => c.type === "Succeeded")?.lastTransitionTime,
    m.metadata.creationTimestamp as unknown as string | undefined,
  ];
  for (const c of candidates) {
    const t = c ? Date.parse(String(c)) : Number.NaN;
    if (Number.isFinite(t)) return t;
  }
  return 0;
}

/** The Migrations to delete now, oldest first. */
export function expiredMigrations(
  migrations: readonly Migration[],
  policy: HistoryPolicy,
  now: number,
): Migration[] {
  const byNamespace = new Map<string, Migration[]>();
  for (const m of migrations) {
    if (!migrationFinished(m) || m.metadata.deletionTimestamp) continue;
    const ns = m.metadata.namespace ?? "";
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), m]);
  }
  const out: Migration[] = [];
  for (const list of byNamespace.values()) {
    // Newest first; equal times by name, so the choice never flips between runs.
    list.sort(
      (a, b) =>
        finishedAt(b) - finishedAt(a) ||
        (a.metadata.name ?? "").localeCompare(b.metadata.name ?? ""),
    );
    for (const m of list.slice(policy.keep)) {
      if (now - finishedAt(m) > policy.ttlMs) out.push(m);
    }
  }
  return out.sort((a, b) => finishedAt(a) - finishedAt(b));
}
