import type { CustomObjectsApi } from "@kubernetes/client-node";
import {
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationStatus,
  VERSION,
} from "../api/v1alpha1.ts";
import { mergePatch } from "./patch.ts";

/**
 * Writes a Migration's status as `mutate` changes the status last read, with
 * that read's resourceVersion as a precondition: the operator and the edge
 * agent both write it, and a writer working from a stale copy gets a 409 and
 * re-runs its step from what is recorded instead of overwriting the other.
 * Returns the updated object.
 */
export async function writeMigrationStatus(
  custom: CustomObjectsApi,
  m: Migration,
  mutate: (s: MigrationStatus) => void,
): Promise<Migration> {
  const status: MigrationStatus = structuredClone(m.status ?? {});
  mutate(status);
  const body: { metadata: { resourceVersion?: string }; status: Record<string, unknown> } = {
    metadata: { resourceVersion: m.metadata.resourceVersion },
    status: status as Record<string, unknown>,
  };
  // A merge patch removes a field only when it is sent as null.
  for (const k of ["failureReason"] as const) if (status[k] === undefined) body.status[k] = null;
  return (await custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: m.metadata.namespace ?? "",
      name: m.metadata.name ?? "",
      body,
    },
    mergePatch,
  )) as Migration;
}

/**
 * Sets a Migration's whole finalizer list with the read's resourceVersion as a
 * precondition: the operator and the edge agent each hold one, and a writer
 * working from a stale copy gets a 409 instead of dropping the other's.
 */
export async function setMigrationFinalizers(
  custom: CustomObjectsApi,
  m: Migration,
  finalizers: string[],
): Promise<Migration> {
  return (await custom.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: m.metadata.namespace ?? "",
      name: m.metadata.name ?? "",
      body: { metadata: { resourceVersion: m.metadata.resourceVersion, finalizers } },
    },
    mergePatch,
  )) as Migration;
}
