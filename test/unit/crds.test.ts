// Keeps the CRD YAML (the source of truth) and operator/api/v1alpha1.ts in
// step without a cluster. test/integration/crds.test.ts checks the same
// against a real API server.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  CATEGORY,
  ConditionStatus,
  Direction,
  EDGENODE_KIND,
  EDGENODE_PLURAL,
  EDGENODE_SPEC_DEFAULTS,
  GROUP,
  ImageRetention,
  LabelSelectorOperator,
  Metric,
  MIGRATE_ANNOTATION,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  MIGRATION_REASON_DEFAULT,
  MigrationPhase,
  MigrationReasonType,
  REGISTRY_DEFAULTS,
  RETURN_DEFAULTS,
  RestorePolicy,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import {
  fullEdgeNode,
  fullEdgeNodeStatus,
  fullMigration,
  fullMigrationStatus,
} from "../support/api-fixtures.ts";

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  default?: unknown;
}

interface Crd {
  spec: {
    group: string;
    scope: string;
    names: {
      kind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    versions: { name: string; schema: { openAPIV3Schema: Schema } }[];
  };
}

const root = new URL("../../", import.meta.url);
const loadYaml = (path: string): unknown => parse(readFileSync(new URL(path, root), "utf8"));
const edgenodes = loadYaml("crds/edgenodes.edgeshift.dev.yaml") as Crd;
const migrations = loadYaml("crds/migrations.edgeshift.dev.yaml") as Crd;
const schemaOf = (crd: Crd): Schema => {
  const v = crd.spec.versions[0];
  if (!v) throw new Error("CRD has no version");
  return v.schema.openAPIV3Schema;
};
const en = schemaOf(edgenodes);
const mig = schemaOf(migrations);

/** The schema at a dotted path; "[]" steps into array items. */
function at(schema: Schema, path: string): Schema {
  let s: Schema | undefined = schema;
  for (const step of path.split(".")) {
    s = step === "[]" ? s?.items : s?.properties?.[step];
    if (!s) throw new Error(`No schema at ${path}`);
  }
  return s;
}

/** Every field path of a schema ("spec.pods.namespaces", arrays as "x[]"); maps and metadata are leaves. */
function schemaPaths(s: Schema, path = ""): string[] {
  if (s.type === "array" && s.items) return schemaPaths(s.items, `${path}[]`);
  if (!s.properties) return [];
  return Object.entries(s.properties).flatMap(([k, child]) => {
    const p = path ? `${path}.${k}` : k;
    return [p, ...(k === "metadata" && !path ? [] : schemaPaths(child, p))];
  });
}

/** The schema paths an object sets, and the paths it sets that the schema lacks. */
function objectPaths(s: Schema, o: unknown, path = ""): { covered: string[]; unknown: string[] } {
  const covered: string[] = [];
  const unknown: string[] = [];
  if (Array.isArray(o) && s.items) {
    for (const item of o) {
      const r = objectPaths(s.items, item, `${path}[]`);
      covered.push(...r.covered);
      unknown.push(...r.unknown);
    }
  } else if (o && typeof o === "object" && s.properties) {
    for (const [k, v] of Object.entries(o)) {
      const p = path ? `${path}.${k}` : k;
      const child = s.properties[k];
      if (!child) {
        unknown.push(p);
        continue;
      }
      covered.push(p);
      if (k === "metadata" && !path) continue;
      const r = objectPaths(child, v, p);
      covered.push(...r.covered);
      unknown.push(...r.unknown);
    }
  }
  return { covered, unknown };
}

describe("CRD names", () => {
  it.each([
    { kind: EDGENODE_KIND, crd: edgenodes, plural: EDGENODE_PLURAL, short: "en", scope: "Cluster" },
    {
      kind: MIGRATION_KIND,
      crd: migrations,
      plural: MIGRATION_PLURAL,
      short: "mig",
      scope: "Namespaced",
    },
  ])("$kind", ({ kind, crd, plural, short, scope }) => {
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.versions.map((v) => v.name)).toEqual([VERSION]);
    expect(crd.spec.scope).toBe(scope);
    expect(crd.spec.names).toMatchObject({
      kind,
      plural,
      shortNames: [short],
      categories: [CATEGORY],
    });
  });
});

describe("CRD schemas", () => {
  it.each([
    ["EdgeNode", en],
    ["Migration", mig],
  ])("%s: every field has a description", (_kind, schema) => {
    // The walk reaches nested object, array-item and status fields.
    expect(schemaPaths(schema)).toEqual(
      expect.arrayContaining(["spec", "status.conditions[].lastTransitionTime"]),
    );
    const undocumented = schemaPaths(schema).filter((p) => {
      if (p === "metadata") return false;
      const s = at(schema, p.replaceAll("[]", ".[]"));
      return !s.description?.trim();
    });
    expect(undocumented).toEqual([]);
  });

  it("EdgeNode: the three label selectors have one schema", () => {
    const selector = at(en, "spec.nodeSelector").properties;
    expect(at(en, "spec.pods.selector").properties).toEqual(selector);
    expect(at(en, "spec.cloud.nodeSelector").properties).toEqual(selector);
    expect(Object.keys(selector ?? {})).toEqual(["matchLabels", "matchExpressions"]);
  });

  it("both CRDs share the metav1.Condition schema", () => {
    expect(at(mig, "status.conditions.[]")).toEqual(at(en, "status.conditions.[]"));
    expect(Object.keys(at(en, "status.conditions.[]").properties ?? {}).sort()).toEqual([
      "lastTransitionTime",
      "message",
      "observedGeneration",
      "reason",
      "status",
      "type",
    ]);
  });

  it("enums match the TS constants", () => {
    const values = (o: object) => Object.values(o);
    expect(at(en, "spec.restorePolicy").enum).toEqual(values(RestorePolicy));
    expect(at(mig, "spec.restorePolicy").enum).toEqual(values(RestorePolicy));
    expect(at(mig, "status.policy").enum).toEqual(values(RestorePolicy));
    expect(at(en, "spec.registry.imageRetention").enum).toEqual(values(ImageRetention));
    expect(at(en, "spec.nodeSelector.matchExpressions.[].operator").enum).toEqual(
      values(LabelSelectorOperator),
    );
    expect(at(en, "status.conditions.[].status").enum).toEqual(values(ConditionStatus));
    expect(at(mig, "spec.reason.type").enum).toEqual(values(MigrationReasonType));
    expect(at(mig, "spec.reason.metric").enum).toEqual(values(Metric));
    expect(at(mig, "status.phase").enum).toEqual(values(MigrationPhase));
  });

  it("defaults match the TS constants", () => {
    for (const [field, value] of Object.entries(EDGENODE_SPEC_DEFAULTS)) {
      expect(at(en, `spec.${field}`).default, field).toEqual(value);
    }
    for (const [field, value] of Object.entries(REGISTRY_DEFAULTS)) {
      expect(at(en, `spec.registry.${field}`).default, field).toEqual(value);
    }
    for (const [field, value] of Object.entries(RETURN_DEFAULTS)) {
      expect(at(en, `spec.returnToEdge.${field}`).default, field).toEqual(value);
    }
    expect(at(mig, "spec.direction").default).toBe(Direction.ToCloud);
    expect(at(mig, "spec.direction").enum).toEqual(Object.values(Direction));
    expect(at(mig, "spec.reason").default).toEqual(MIGRATION_REASON_DEFAULT);
    expect(at(mig, "spec.reason.type").default).toBe(MIGRATION_REASON_DEFAULT.type);
  });

  it("documents the opt-out annotation where pods are selected", () => {
    expect(at(en, "spec.pods").description).toContain(`${MIGRATE_ANNOTATION}: "false"`);
    expect(at(en, "spec.pods.selector").description).toContain(`${MIGRATE_ANNOTATION}: "false"`);
  });
});

describe("typed fixtures cover the schema exactly", () => {
  it.each([
    ["EdgeNode", en, { ...fullEdgeNode("x"), status: fullEdgeNodeStatus() }],
    ["Migration", mig, { ...fullMigration("x", "ns"), status: fullMigrationStatus() }],
  ])("%s", (_kind, schema, object) => {
    const { covered, unknown } = objectPaths(schema, object);
    expect(covered.length).toBeGreaterThan(30);
    expect(unknown).toEqual([]);
    expect(schemaPaths(schema).filter((p) => !covered.includes(p))).toEqual([]);
  });
});

describe("examples", () => {
  it.each([
    ["manifests/examples/edgenode.yaml", en, EDGENODE_KIND],
    ["manifests/examples/edgenode-request-rate.yaml", en, EDGENODE_KIND],
    ["manifests/examples/edgenode-prototype.yaml", en, EDGENODE_KIND],
    ["manifests/examples/migration.yaml", mig, MIGRATION_KIND],
  ])("%s uses only schema fields", (path, schema, kind) => {
    const object = loadYaml(path) as { apiVersion: string; kind: string };
    expect(object.apiVersion).toBe(`${GROUP}/${VERSION}`);
    expect(object.kind).toBe(kind);
    expect(objectPaths(schema, object).unknown).toEqual([]);
  });
});
