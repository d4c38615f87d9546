import type { Migration } from "./v1alpha1.ts";

/** A Migration has ended once its Succeeded condition is decided (phase is only a summary). */
export function migrationFinished(m: Migration): boolean {
  const c = m.status?.conditions?.find((x) => x.type === "Succeeded");
  if (c && c.status !== "Unknown") return true;
  return m.status?.phase === "Succeeded" || m.status?.phase === "Failed";
}
