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
  type RegistrySpec,
} from "./v1alpha1.ts";

export type DefaultedRegistrySpec = RegistrySpec &
  Required<Pick<RegistrySpec, keyof typeof REGISTRY_DEFAULTS>>;

export type DefaultedEdgeNodeSpec = Omit<EdgeNodeSpec, "registry"> &
  Required<Pick<EdgeNodeSpec, keyof typeof EDGENODE_SPEC_DEFAULTS>> & {
    registry?: DefaultedRegistrySpec;
  };

export type DefaultedMigrationSpec = MigrationSpec & {
  reason: MigrationReason & Required<Pick<MigrationReason, "type">>;
};

/** The spec with the CRD defaults applied to absent fields; the input is not changed. */
export function withEdgeNodeDefaults(spec: EdgeNodeSpec): DefaultedEdgeNodeSpec {
  const { registry, ...rest } = spec;
  return {
    ...EDGENODE_SPEC_DEFAULTS,
    ...dropUndefined(rest),
    ...(registry ? { registry: { ...REGISTRY_DEFAULTS, ...dropUndefined(registry) } } : {}),
  };
}

/** The spec with reason defaulted to {type: Manual}, as the CRD does. */
export function withMigrationDefaults(spec: MigrationSpec): DefaultedMigrationSpec {
  const reason = spec.reason ?? MIGRATION_REASON_DEFAULT;
  return {
    ...spec,
    reason: { ...reason, type: reason.type ?? MIGRATION_REASON_DEFAULT.type },
  };
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
