// The API server fills these defaults in on every write, so objects from the
// server already carry them; these helpers give code that builds or receives
// a spec some other way (tests, dry runs) the same view, typed as present.
import {
  EDGENODE_SPEC_DEFAULTS,
  type EdgeNodeSpec,
  MIGRATION_REASON_DEFAULT,
  type MigrationReason,
  type MigrationSpec,
  REGISTRY_DEFAULTS,
  RETURN_DEFAULTS,
  type RegistrySpec,
  type ReturnToEdge,
} from "./v1alpha1.ts";

export type DefaultedRegistrySpec = RegistrySpec &
  Required<Pick<RegistrySpec, keyof typeof REGISTRY_DEFAULTS>>;

export type DefaultedEdgeNodeSpec = Omit<EdgeNodeSpec, "registry" | "returnToEdge"> &
  Required<Pick<EdgeNodeSpec, keyof typeof EDGENODE_SPEC_DEFAULTS>> & {
    registry?: DefaultedRegistrySpec;
    returnToEdge?: ReturnToEdge & Required<Pick<ReturnToEdge, keyof typeof RETURN_DEFAULTS>>;
  };

export type DefaultedMigrationSpec = MigrationSpec &
  Required<Pick<MigrationSpec, "direction">> & {
    reason: MigrationReason & Required<Pick<MigrationReason, "type">>;
  };

/** The spec with the CRD defaults applied to absent fields; the input is not changed. */
export function withEdgeNodeDefaults(spec: EdgeNodeSpec): DefaultedEdgeNodeSpec {
  const { registry, returnToEdge, ...rest } = spec;
  return {
    ...EDGENODE_SPEC_DEFAULTS,
    ...dropUndefined(rest),
    ...(registry ? { registry: { ...REGISTRY_DEFAULTS, ...dropUndefined(registry) } } : {}),
    ...(returnToEdge
      ? { returnToEdge: { ...RETURN_DEFAULTS, ...dropUndefined(returnToEdge) } }
      : {}),
  };
}

/** The spec with direction ToCloud and reason {type: Manual} defaulted, as the CRD does. */
export function withMigrationDefaults(spec: MigrationSpec): DefaultedMigrationSpec {
  const reason = spec.reason ?? MIGRATION_REASON_DEFAULT;
  return {
    ...spec,
    direction: spec.direction ?? "ToCloud",
    reason: { ...reason, type: reason.type ?? MIGRATION_REASON_DEFAULT.type },
  };
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
