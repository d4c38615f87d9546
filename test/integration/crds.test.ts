// The edgeshift API against a real kube-apiserver: the CRDs install, the TS
// types are accepted with strict field validation, bad specs are refused with
// a message that names the field, and the printer columns show status.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import { withEdgeNodeDefaults, withMigrationDefaults } from "../../operator/api/defaults.ts";
import {
  API_VERSION,
  type ApplicationThreshold,
  CATEGORY,
  EDGENODE_KIND,
  EDGENODE_PLURAL,
  type EdgeNode,
  type EdgeNodeSpec,
  type EdgeNodeStatus,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationSpec,
  type MigrationStatus,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import {
  fullEdgeNode,
  fullEdgeNodeStatus,
  fullMigration,
  fullMigrationStatus,
  minimalEdgeNode,
  minimalMigration,
} from "../support/api-fixtures.ts";
import { ignoreNotFound, kubeClients, rejection, uniqueName } from "../support/kube.ts";

const run = promisify(execFile);
const kubeconfig = inject("kubeconfig");
const kube = kubeClients(kubeconfig);
const { custom, apiext, core, objects } = kube;
const FIELD_MANAGER = "edgeshift-tests";
const STRICT = "Strict";
const DRY_RUN = "All";
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const asTable = setHeaderOptions("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io");

let namespace = "";
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  namespace = uniqueName("crds");
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterEach(async () => {
  // Newest first; a 404 means the test already removed it.
  for (const cleanup of cleanups.splice(0).reverse()) await ignoreNotFound(cleanup());
});

afterAll(async () => {
  if (namespace) await ignoreNotFound(core.deleteNamespace({ name: namespace }));
});

// --- small typed wrappers over CustomObjectsApi --------------------------------

const en = { group: GROUP, version: VERSION, plural: EDGENODE_PLURAL };
const mig = { group: GROUP, version: VERSION, plural: MIGRATION_PLURAL };

async function createEdgeNode(body: EdgeNode, dryRun?: string): Promise<EdgeNode> {
  const created = (await custom.createClusterCustomObject({
    ...en,
    body,
    dryRun,
    fieldValidation: STRICT,
    fieldManager: FIELD_MANAGER,
  })) as EdgeNode;
  if (!dryRun) deleteLater(body);
  return created;
}

async function createMigration(body: Migration, dryRun?: string): Promise<Migration> {
  const created = (await custom.createNamespacedCustomObject({
    ...mig,
    namespace: body.metadata.namespace ?? namespace,
    body,
    dryRun,
    fieldValidation: STRICT,
    fieldManager: FIELD_MANAGER,
  })) as Migration;
  if (!dryRun) deleteLater(body);
  return created;
}

function deleteLater(o: EdgeNode | Migration): void {
  const name = o.metadata.name ?? "";
  cleanups.push(() =>
    o.kind === EDGENODE_KIND
      ? custom.deleteClusterCustomObject({ ...en, name })
      : custom.deleteNamespacedCustomObject({
          ...mig,
          namespace: o.metadata.namespace ?? namespace,
          name,
        }),
  );
}

function patchStatus(
  o: EdgeNode | Migration,
  status: EdgeNodeStatus | MigrationStatus,
): Promise<unknown> {
  const name = o.metadata.name ?? "";
  const body = { status };
  return o.kind === EDGENODE_KIND
    ? custom.patchClusterCustomObjectStatus(
        { ...en, name, body, fieldValidation: STRICT },
        mergePatch,
      )
    : custom.patchNamespacedCustomObjectStatus(
        {
          ...mig,
          namespace: o.metadata.namespace ?? namespace,
          name,
          body,
          fieldValidation: STRICT,
        },
        mergePatch,
      );
}

function patchSpec(o: EdgeNode | Migration, spec: object): Promise<unknown> {
  const name = o.metadata.name ?? "";
  const body = { spec };
  return o.kind === EDGENODE_KIND
    ? custom.patchClusterCustomObject({ ...en, name, body, fieldValidation: STRICT }, mergePatch)
    : custom.patchNamespacedCustomObject(
        {
          ...mig,
          namespace: o.metadata.namespace ?? namespace,
          name,
          body,
          fieldValidation: STRICT,
        },
        mergePatch,
      );
}

interface Table {
  kind: string;
  columnDefinitions: { name: string; type: string; priority: number }[];
  rows: { cells: unknown[] }[];
}

/** The single row of a Table response as column name -> cell. */
function tableRow(table: Table): Record<string, unknown> {
  expect(table.kind).toBe("Table");
  expect(table.rows).toHaveLength(1);
  const cells = table.rows[0]?.cells ?? [];
  return Object.fromEntries(table.columnDefinitions.map((c, i) => [c.name, cells[i]]));
}

// --- tests ------------------------------------------------------------------------

describe("CRD installation", () => {
  it.each([
    {
      name: `${EDGENODE_PLURAL}.${GROUP}`,
      kind: EDGENODE_KIND,
      plural: EDGENODE_PLURAL,
      singular: "edgenode",
      shortNames: ["en"],
      scope: "Cluster",
    },
    {
      name: `${MIGRATION_PLURAL}.${GROUP}`,
      kind: MIGRATION_KIND,
      plural: MIGRATION_PLURAL,
      singular: "migration",
      shortNames: ["mig"],
      scope: "Namespaced",
    },
  ])("$name is Established with its names, scope and status subresource", async (want) => {
    const crd = await apiext.readCustomResourceDefinition({ name: want.name });
    const conditions = Object.fromEntries(
      (crd.status?.conditions ?? []).map((c) => [c.type, c.status]),
    );
    expect(conditions).toMatchObject({ Established: "True", NamesAccepted: "True" });
    const names = {
      kind: want.kind,
      listKind: `${want.kind}List`,
      plural: want.plural,
      singular: want.singular,
      shortNames: want.shortNames,
      categories: [CATEGORY],
    };
    expect(crd.spec.names).toEqual(names);
    expect(crd.status?.acceptedNames).toEqual(names);
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.scope).toBe(want.scope);
    expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([
      [VERSION, true, true],
    ]);
    expect(crd.spec.versions[0]?.subresources?.status).toEqual({});
    expect(crd.status?.storedVersions).toEqual([VERSION]);
  });
});

describe("examples", () => {
  it("manifests/examples apply server-side and read back with defaults filled in", async () => {
    const load = async (f: string) =>
      parse(await readFile(new URL(`../../manifests/examples/${f}`, import.meta.url), "utf8"));
    const edgeNode = (await load("edgenode.yaml")) as EdgeNode;
    const requestRate = (await load("edgenode-request-rate.yaml")) as EdgeNode;
    const prototypeLike = (await load("edgenode-prototype.yaml")) as EdgeNode;
    const migration = (await load("migration.yaml")) as Migration;
    // Unique names keep this test independent of anything else in the cluster.
    edgeNode.metadata.name = uniqueName(edgeNode.metadata.name ?? "example");
    requestRate.metadata.name = uniqueName(requestRate.metadata.name ?? "example");
    prototypeLike.metadata.name = uniqueName(prototypeLike.metadata.name ?? "example");
    migration.metadata.namespace = namespace;

    for (const o of [edgeNode, requestRate, prototypeLike, migration]) {
      deleteLater(o);
      await objects.patch(
        o,
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      );
    }

    const en1 = (await custom.getClusterCustomObject({
      ...en,
      name: edgeNode.metadata.name,
    })) as EdgeNode;
    expect(en1.spec).toEqual(withEdgeNodeDefaults(edgeNode.spec));
    const rate = (await custom.getClusterCustomObject({
      ...en,
      name: requestRate.metadata.name,
    })) as EdgeNode;
    expect(rate.spec.thresholds.application).toEqual(requestRate.spec.thresholds.application);
    expect(rate.spec.returnToEdge).toEqual(requestRate.spec.returnToEdge);
    const en3 = (await custom.getClusterCustomObject({
      ...en,
      name: prototypeLike.metadata.name,
    })) as EdgeNode;
    expect(en3.spec).toEqual(withEdgeNodeDefaults(prototypeLike.spec));
    // The example leaves registry.insecure and imageRetention to their defaults.
    expect(en1.spec.registry).toMatchObject({ insecure: false, imageRetention: "Delete" });

    const mig1 = (await custom.getNamespacedCustomObject({
      ...mig,
      namespace,
      name: migration.metadata.name ?? "",
    })) as Migration;
    expect(mig1.spec).toEqual(withMigrationDefaults(migration.spec));
    expect(mig1.spec.reason).toEqual({ type: "Manual" });

    // Applying again is a no-op: same generation.
    await objects.patch(
      edgeNode,
      undefined,
      undefined,
      FIELD_MANAGER,
      true,
      PatchStrategy.ServerSideApply,
    );
    const en2 = (await custom.getClusterCustomObject({
      ...en,
      name: edgeNode.metadata.name,
    })) as EdgeNode;
    expect(en2.metadata.generation).toBe(en1.metadata.generation);
  });
});

describe("TS types match the schema (fieldValidation=Strict)", () => {
  it("a fully populated EdgeNode and its status round-trip unchanged", async () => {
    const sent = fullEdgeNode(uniqueName("full"));
    const created = await createEdgeNode(sent);
    expect(created.apiVersion).toBe(API_VERSION);
    expect(created.spec).toEqual(sent.spec);
    expect(created.metadata.labels).toEqual(sent.metadata.labels);

    const status = fullEdgeNodeStatus(created.metadata.generation);
    await custom.replaceClusterCustomObjectStatus({
      ...en,
      name: sent.metadata.name ?? "",
      body: { ...created, status },
      fieldValidation: STRICT,
    });
    const read = (await custom.getClusterCustomObject({
      ...en,
      name: sent.metadata.name ?? "",
    })) as EdgeNode;
    expect(read.spec).toEqual(sent.spec);
    expect(read.status).toEqual(status);
  });

  it("a fully populated Migration and its status round-trip unchanged", async () => {
    const sent = fullMigration(uniqueName("full"), namespace);
    const created = await createMigration(sent);
    expect(created.spec).toEqual(sent.spec);

    const status = fullMigrationStatus(created.metadata.generation);
    await custom.replaceNamespacedCustomObjectStatus({
      ...mig,
      namespace,
      name: sent.metadata.name ?? "",
      body: { ...created, status },
      fieldValidation: STRICT,
    });
    const read = (await custom.getNamespacedCustomObject({
      ...mig,
      namespace,
      name: sent.metadata.name ?? "",
    })) as Migration;
    expect(read.spec).toEqual(sent.spec);
    expect(read.status).toEqual(status);
  });

  it("minimal objects get exactly the defaults operator/api/defaults.ts knows", async () => {
    const edgeNode = minimalEdgeNode(uniqueName("minimal"));
    const createdEn = await createEdgeNode(edgeNode, DRY_RUN);
    expect(createdEn.spec).toEqual(withEdgeNodeDefaults(edgeNode.spec));

    const migration = minimalMigration(uniqueName("minimal"), namespace);
    const createdMig = await createMigration(migration, DRY_RUN);
    expect(createdMig.spec).toEqual(withMigrationDefaults(migration.spec));

    // restart needs no registry, and gets no registry defaults.
    const restart = minimalEdgeNode(uniqueName("restart"));
    restart.spec.restorePolicy = "restart";
    delete restart.spec.registry;
    const createdRestart = await createEdgeNode(restart, DRY_RUN);
    expect(createdRestart.spec).toEqual(withEdgeNodeDefaults(restart.spec));
    expect(createdRestart.spec).not.toHaveProperty("registry");
  });

  it("an unknown field is refused under strict validation", async () => {
    const o = fullEdgeNode(uniqueName("unknown"));
    (o.spec as EdgeNodeSpec & { threshold?: unknown }).threshold = { cpu: 80 };
    const err = await rejection(createEdgeNode(o, DRY_RUN));
    expect(err.code).toBe(400);
    expect(err.body.message).toContain('unknown field "spec.threshold"');
  });
});

type Invalid = {
  name: string;
  /** Field path and error type as the API server prints them: "spec.x: Invalid value". */
  field: string;
  reason: string;
  /** A substring of the rest of the message. */
  message: string;
} & (
  | { kind: "EdgeNode"; change: (o: EdgeNode) => void }
  | { kind: "Migration"; change: (o: Migration) => void }
  | { kind: "Migration"; update: Partial<Record<keyof MigrationSpec, unknown>> }
  | { kind: "EdgeNode"; status: Record<string, unknown> }
  | { kind: "Migration"; status: Record<string, unknown> }
);

const bad = <T>(v: unknown) => v as T;
/** A valid application threshold with `over` applied. */
const application = (over: Record<string, unknown>) =>
  bad<ApplicationThreshold>({
    port: 8080,
    metric: "http_requests_total",
    type: "Counter",
    triggerValue: 100,
    ...over,
  });

const invalid: Invalid[] = [
  {
    name: "cpu triggerPercent 0",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.cpu = { triggerPercent: 0 };
      // Its return levels would be refused too.
      delete o.spec.returnToEdge;
    },
    field: "spec.thresholds.cpu.triggerPercent",
    reason: "Invalid value",
    message: "should be greater than or equal to 1",
  },
  {
    name: "memory triggerPercent 101",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.memory = { triggerPercent: 101 };
    },
    field: "spec.thresholds.memory.triggerPercent",
    reason: "Invalid value",
    message: "should be less than or equal to 100",
  },
  {
    name: "node cpuPercent 150",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.node = { cpuPercent: 150 };
    },
    field: "spec.thresholds.node.cpuPercent",
    reason: "Invalid value",
    message: "should be less than or equal to 100",
  },
  {
    name: "empty node threshold",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.node = {};
    },
    field: "spec.thresholds.node",
    reason: "Required value",
    message: "set at least one of cpuPercent and memoryPercent",
  },
  {
    name: "application metric without a port",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({ port: undefined });
    },
    field: "spec.thresholds.application.port",
    reason: "Required value",
    message: "",
  },
  {
    name: "application metric with a malformed matcher label",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({
        matchers: [{ label: "status-code", value: "500" }],
      });
    },
    field: "spec.thresholds.application.matchers[0].label",
    reason: "Invalid value",
    message: "should match",
  },
  {
    name: "application metric with a regex matcher",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({
        matchers: [{ label: "code", operator: "=~", value: "5.." }],
      });
    },
    field: "spec.thresholds.application.matchers[0].operator",
    reason: "Unsupported value",
    message: '"=~": supported values: "=", "!="',
  },
  {
    name: "application metric name not a Prometheus name",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({ metric: "http-requests" });
    },
    field: "spec.thresholds.application.metric",
    reason: "Invalid value",
    message: "should match",
  },
  {
    name: "application gauge with a rate unit",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({ type: "Gauge", per: "Minute" });
    },
    field: "spec.thresholds.application.per",
    reason: "Invalid value",
    message: "per applies to a Counter only",
  },
  {
    name: "application rearmValue not below triggerValue",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.application = application({ rearmValue: 100 });
    },
    field: "spec.thresholds.application.rearmValue",
    reason: "Invalid value",
    message: "rearmValue must be below triggerValue",
  },
  {
    name: "returnToEdge without a level",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.returnToEdge = { windowSeconds: 60 };
    },
    field: "spec.returnToEdge",
    reason: "Required value",
    message: "set at least one of cpuPercent, memoryPercent and applicationValue",
  },
  {
    name: "returnToEdge cpuPercent not below the cpu trigger",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.returnToEdge = { cpuPercent: 85 };
    },
    field: "spec.returnToEdge.cpuPercent",
    reason: "Invalid value",
    message: "returnToEdge.cpuPercent needs thresholds.cpu and must be below its triggerPercent",
  },
  {
    name: "returnToEdge memoryPercent without a memory threshold",
    kind: "EdgeNode",
    change: (o) => {
      delete o.spec.thresholds.memory;
      o.spec.returnToEdge = { memoryPercent: 10 };
    },
    field: "spec.returnToEdge.memoryPercent",
    reason: "Invalid value",
    message:
      "returnToEdge.memoryPercent needs thresholds.memory and must be below its triggerPercent",
  },
  {
    name: "returnToEdge applicationValue not below the trigger",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.returnToEdge = { applicationValue: 100 };
    },
    field: "spec.returnToEdge.applicationValue",
    reason: "Invalid value",
    message:
      "returnToEdge.applicationValue needs thresholds.application and must be below its triggerValue",
  },
  {
    name: "returnToEdge window shorter than the sampling interval",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.returnToEdge = { cpuPercent: 10, windowSeconds: 1 };
    },
    field: "spec.returnToEdge.windowSeconds",
    reason: "Invalid value",
    message: "returnToEdge.windowSeconds must be at least samplingIntervalSeconds",
  },
  {
    name: "rearmPercent equal to triggerPercent",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.cpu = { triggerPercent: 80, rearmPercent: 80 };
    },
    field: "spec.thresholds.cpu.rearmPercent",
    reason: "Invalid value",
    message: "rearmPercent must be below triggerPercent",
  },
  {
    name: "rearmPercent above triggerPercent",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds.memory = { triggerPercent: 70, rearmPercent: 90 };
    },
    field: "spec.thresholds.memory.rearmPercent",
    reason: "Invalid value",
    message: "rearmPercent must be below triggerPercent",
  },
  {
    name: "no threshold at all",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds = {};
      // Its return levels would be refused too.
      delete o.spec.returnToEdge;
    },
    field: "spec.thresholds",
    reason: "Required value",
    message: "set at least one of cpu, memory and application",
  },
  {
    name: "only a node threshold",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.thresholds = { node: { memoryPercent: 90 } };
      // Its return levels would be refused too.
      delete o.spec.returnToEdge;
    },
    field: "spec.thresholds",
    reason: "Required value",
    message: "set at least one of cpu, memory and application",
  },
  {
    name: "samplingIntervalSeconds 0",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.samplingIntervalSeconds = 0;
    },
    field: "spec.samplingIntervalSeconds",
    reason: "Invalid value",
    message: "should be greater than or equal to 1",
  },
  {
    name: "sustainedWindowSeconds over an hour",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.sustainedWindowSeconds = 3601;
    },
    field: "spec.sustainedWindowSeconds",
    reason: "Invalid value",
    message: "should be less than or equal to 3600",
  },
  {
    name: "window shorter than the sampling interval",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.samplingIntervalSeconds = 30;
      o.spec.sustainedWindowSeconds = 10;
    },
    field: "spec.sustainedWindowSeconds",
    reason: "Invalid value",
    message: "sustainedWindowSeconds must be at least samplingIntervalSeconds",
  },
  {
    name: "breachPercent 0",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.breachPercent = 0;
    },
    field: "spec.breachPercent",
    reason: "Invalid value",
    message: "should be greater than or equal to 1",
  },
  {
    name: "negative cooldown",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.cooldownSeconds = -1;
    },
    field: "spec.cooldownSeconds",
    reason: "Invalid value",
    message: "should be greater than or equal to 0",
  },
  {
    name: "maxConcurrentMigrations 101",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.maxConcurrentMigrations = 101;
    },
    field: "spec.maxConcurrentMigrations",
    reason: "Invalid value",
    message: "should be less than or equal to 100",
  },
  {
    name: "unknown restorePolicy",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.restorePolicy = bad("snapshot");
    },
    field: "spec.restorePolicy",
    reason: "Unsupported value",
    message: '"snapshot": supported values: "checkpoint", "restart"',
  },
  {
    name: "unknown imageRetention",
    kind: "EdgeNode",
    change: (o) => {
      if (o.spec.registry) o.spec.registry.imageRetention = bad("Keep");
    },
    field: "spec.registry.imageRetention",
    reason: "Unsupported value",
    message: '"Keep": supported values: "Delete", "Retain"',
  },
  {
    name: "unknown selector operator",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.nodeSelector.matchExpressions = [{ key: "zone", operator: bad("Gt"), values: ["1"] }];
    },
    field: "spec.nodeSelector.matchExpressions[0].operator",
    reason: "Unsupported value",
    message: '"Gt": supported values: "In", "NotIn", "Exists", "DoesNotExist"',
  },
  {
    name: "In without values",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.cloud.nodeSelector.matchExpressions = [{ key: "zone", operator: "In" }];
    },
    field: "spec.cloud.nodeSelector.matchExpressions[0].values",
    reason: "Invalid value",
    message: "values must be non-empty for In and NotIn",
  },
  {
    name: "Exists with values",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.pods = {
        selector: { matchExpressions: [{ key: "app", operator: "Exists", values: ["x"] }] },
      };
    },
    field: "spec.pods.selector.matchExpressions[0].values",
    reason: "Invalid value",
    message: "empty for Exists and DoesNotExist",
  },
  {
    name: "empty nodeSelector",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.nodeSelector = {};
    },
    field: "spec.nodeSelector",
    reason: "Required value",
    message: "nodeSelector must not be empty",
  },
  {
    name: "nodeSelector with only empty lists",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.nodeSelector = { matchLabels: {}, matchExpressions: [] };
    },
    field: "spec.nodeSelector",
    reason: "Required value",
    message: "nodeSelector must not be empty",
  },
  {
    name: "empty cloud nodeSelector",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.cloud.nodeSelector = {};
    },
    field: "spec.cloud.nodeSelector",
    reason: "Required value",
    message: "nodeSelector must not be empty",
  },
  {
    name: "bad label value in nodeSelector",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.nodeSelector.matchLabels = { zone: "plant a" };
    },
    field: "spec.nodeSelector.matchLabels.zone",
    reason: "Invalid value",
    message: "should match",
  },
  {
    name: "missing nodeSelector",
    kind: "EdgeNode",
    change: (o) => {
      delete (o.spec as Partial<EdgeNodeSpec>).nodeSelector;
    },
    field: "spec.nodeSelector",
    reason: "Required value",
    message: "",
  },
  {
    name: "missing cloud",
    kind: "EdgeNode",
    change: (o) => {
      delete (o.spec as Partial<EdgeNodeSpec>).cloud;
    },
    field: "spec.cloud",
    reason: "Required value",
    message: "",
  },
  {
    name: "missing thresholds",
    kind: "EdgeNode",
    change: (o) => {
      delete (o.spec as Partial<EdgeNodeSpec>).thresholds;
    },
    field: "spec.thresholds",
    reason: "Required value",
    message: "",
  },
  {
    name: "checkpoint policy without registry",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.restorePolicy = "checkpoint";
      delete o.spec.registry;
    },
    field: "spec.registry",
    reason: "Required value",
    message: "registry is required when restorePolicy is checkpoint",
  },
  {
    name: "default (checkpoint) policy without registry",
    kind: "EdgeNode",
    change: (o) => {
      delete o.spec.restorePolicy;
      delete o.spec.registry;
    },
    field: "spec.registry",
    reason: "Required value",
    message: "registry is required when restorePolicy is checkpoint",
  },
  {
    name: "registry without repository",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.registry = bad({ insecure: true });
    },
    field: "spec.registry.repository",
    reason: "Required value",
    message: "",
  },
  {
    name: "registry repository with a tag",
    kind: "EdgeNode",
    change: (o) => {
      if (o.spec.registry)
        o.spec.registry.repository = "registry.example.com/edgeshift/checkpoints:latest";
    },
    field: "spec.registry.repository",
    reason: "Invalid value",
    message:
      "repository must be an OCI repository reference host[:port]/path without tag or digest",
  },
  {
    name: "registry repository without a host",
    kind: "EdgeNode",
    change: (o) => {
      if (o.spec.registry) o.spec.registry.repository = "edgeshift/checkpoints";
    },
    field: "spec.registry.repository",
    reason: "Invalid value",
    message: "repository must be an OCI repository reference",
  },
  {
    name: "secretRef without name",
    kind: "EdgeNode",
    change: (o) => {
      if (o.spec.registry) o.spec.registry.secretRef = bad({ namespace: "edgeshift-system" });
    },
    field: "spec.registry.secretRef.name",
    reason: "Required value",
    message: "",
  },
  {
    name: "bad namespace name",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.pods = { namespaces: ["factory", "Kube_System"] };
    },
    field: "spec.pods.namespaces[1]",
    reason: "Invalid value",
    message: "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
  },
  {
    name: "namespace name longer than 63",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.pods = { excludeNamespaces: ["n".repeat(64)] };
    },
    field: "spec.pods.excludeNamespaces[0]",
    reason: "Too long",
    message: "may not be more than 63 bytes",
  },
  {
    name: "more than 256 namespaces",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.pods = { namespaces: Array.from({ length: 257 }, (_, i) => `ns-${i}`) };
    },
    field: "spec.pods.namespaces",
    reason: "Too many",
    message: "must have at most 256 items",
  },
  {
    name: "namespace both included and excluded",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.pods = { namespaces: ["factory", "sensors"], excludeNamespaces: ["sensors"] };
    },
    field: "spec.pods.excludeNamespaces",
    reason: "Invalid value",
    message: "a namespace must not be listed in both namespaces and excludeNamespaces",
  },
  {
    name: "unknown condition status in EdgeNode status",
    kind: "EdgeNode",
    status: {
      conditions: [
        {
          type: "Ready",
          status: "Maybe",
          reason: "Reconciled",
          message: "",
          lastTransitionTime: "2026-01-02T03:04:05Z",
        },
      ],
    },
    field: "status.conditions[0].status",
    reason: "Unsupported value",
    message: '"Maybe": supported values: "True", "False", "Unknown"',
  },
  {
    name: "Migration without spec",
    kind: "Migration",
    change: (o) => {
      delete (o as Partial<Migration>).spec;
    },
    field: "spec",
    reason: "Required value",
    message: "",
  },
  {
    name: "Migration without podName",
    kind: "Migration",
    change: (o) => {
      delete (o.spec as Partial<MigrationSpec>).podName;
    },
    field: "spec.podName",
    reason: "Required value",
    message: "",
  },
  {
    name: "Migration with an invalid podName",
    kind: "Migration",
    change: (o) => {
      o.spec.podName = "Sensor_Ingest";
    },
    field: "spec.podName",
    reason: "Invalid value",
    message: "should match",
  },
  {
    name: "Migration with 33 containers",
    kind: "Migration",
    change: (o) => {
      o.spec.containers = Array.from({ length: 33 }, (_, i) => `c${i}`);
    },
    field: "spec.containers",
    reason: "Too many",
    message: "must have at most 32 items",
  },
  {
    name: "Migration with a duplicate container",
    kind: "Migration",
    change: (o) => {
      o.spec.containers = ["ingest", "ingest"];
    },
    field: "spec.containers[1]",
    reason: "Duplicate value",
    message: '"ingest"',
  },
  {
    name: "Migration with an unknown restorePolicy",
    kind: "Migration",
    change: (o) => {
      o.spec.restorePolicy = bad("live");
    },
    field: "spec.restorePolicy",
    reason: "Unsupported value",
    message: '"live": supported values: "checkpoint", "restart"',
  },
  {
    name: "Migration with an unknown reason type",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: bad("Automatic") };
    },
    field: "spec.reason.type",
    reason: "Unsupported value",
    message: '"Automatic": supported values: "ThresholdExceeded", "BelowReturnLevel", "Manual"',
  },
  {
    name: "BelowReturnLevel without its level",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: "BelowReturnLevel", metric: "cpu", value: 3 };
    },
    field: "spec.reason",
    reason: "Required value",
    message:
      "reason types ThresholdExceeded and BelowReturnLevel require metric, value and threshold",
  },
  {
    name: "Migration with an unknown direction",
    kind: "Migration",
    change: (o) => {
      o.spec.direction = bad("Sideways");
    },
    field: "spec.direction",
    reason: "Unsupported value",
    message: '"Sideways": supported values: "ToCloud", "ToEdge"',
  },
  {
    name: "Migration with an unknown metric",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: "ThresholdExceeded", metric: bad("gpu"), value: 99, threshold: 90 };
    },
    field: "spec.reason.metric",
    reason: "Unsupported value",
    message: '"gpu": supported values: "cpu", "memory", "nodeCpu", "nodeMemory", "application"',
  },
  {
    name: "Migration with a series for a cpu reason",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = {
        type: "ThresholdExceeded",
        metric: "cpu",
        value: 99,
        threshold: 90,
        series: "http_requests_total",
      };
    },
    field: "spec.reason.series",
    reason: "Invalid value",
    message: "series belongs to the application metric",
  },
  {
    name: "ThresholdExceeded without value",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: "ThresholdExceeded", metric: "memory", threshold: 90 };
    },
    field: "spec.reason",
    reason: "Required value",
    message:
      "reason types ThresholdExceeded and BelowReturnLevel require metric, value and threshold",
  },
  {
    name: "ThresholdExceeded without metric",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: "ThresholdExceeded", value: 97, threshold: 90 };
    },
    field: "spec.reason",
    reason: "Required value",
    message:
      "reason types ThresholdExceeded and BelowReturnLevel require metric, value and threshold",
  },
  {
    name: "Migration threshold above 100",
    kind: "Migration",
    change: (o) => {
      o.spec.reason = { type: "ThresholdExceeded", metric: "cpu", value: 130, threshold: 120 };
    },
    field: "spec.reason.threshold",
    reason: "Invalid value",
    message: "a cpu or memory threshold is a percentage, at most 100",
  },
  {
    name: "Migration spec changed after creation (targetNode)",
    kind: "Migration",
    update: { targetNode: "cloud-2" },
    field: "spec",
    reason: "Forbidden",
    message: "spec is immutable; delete and re-create the Migration",
  },
  {
    name: "Migration spec changed after creation (reason)",
    kind: "Migration",
    update: { reason: { type: "Manual" } },
    field: "spec",
    reason: "Forbidden",
    message: "spec is immutable; delete and re-create the Migration",
  },
  {
    name: "unknown Migration phase",
    kind: "Migration",
    status: { phase: "Done" },
    field: "status.phase",
    reason: "Unsupported value",
    message: '"Done": supported values: "Pending", "Checkpointing"',
  },
  {
    name: "kubeletTLS CABundle without caBundle",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.kubeletTLS = { mode: "CABundle" };
    },
    field: "spec.kubeletTLS",
    reason: "Invalid value",
    message: "caBundle is required with mode CABundle and allowed only with it",
  },
  {
    name: "kubeletTLS NodeSelfSigned with a caBundle",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.kubeletTLS = { mode: "NodeSelfSigned", caBundle: { configMapName: "ca" } };
    },
    field: "spec.kubeletTLS",
    reason: "Invalid value",
    message: "caBundle is required with mode CABundle and allowed only with it",
  },
  {
    name: "kubeletTLS unknown mode",
    kind: "EdgeNode",
    change: (o) => {
      o.spec.kubeletTLS = { mode: bad("Insecure") };
    },
    field: "spec.kubeletTLS.mode",
    reason: "Unsupported value",
    message: '"Insecure"',
  },
  {
    name: "malformed image digest in Migration status",
    kind: "Migration",
    status: { containers: [{ name: "ingest", digest: "sha256" }] },
    field: "status.containers[0].digest",
    reason: "Invalid value",
    message: "should match",
  },
];

describe("invalid objects are refused with the field and the reason", () => {
  it.each(invalid)("$kind: $name", async (c) => {
    let attempt: Promise<unknown>;
    let what: string;
    if ("change" in c) {
      // A valid object with one thing wrong, created as a dry run.
      if (c.kind === "EdgeNode") {
        const o = fullEdgeNode(uniqueName("invalid"));
        c.change(o);
        what = `EdgeNode.${GROUP} "${o.metadata.name}" is invalid`;
        attempt = createEdgeNode(o, DRY_RUN);
      } else {
        const o = fullMigration(uniqueName("invalid"), namespace);
        c.change(o);
        what = `Migration.${GROUP} "${o.metadata.name}" is invalid`;
        attempt = createMigration(o, DRY_RUN);
      }
    } else {
      // Needs an existing object: create a valid one, then change it.
      const o =
        c.kind === "EdgeNode"
          ? await createEdgeNode(fullEdgeNode(uniqueName("invalid")))
          : await createMigration(fullMigration(uniqueName("invalid"), namespace));
      what = `${c.kind}.${GROUP} "${o.metadata.name}" is invalid`;
      attempt = "update" in c ? patchSpec(o, c.update) : patchStatus(o, c.status as never);
    }

    const err = await rejection(attempt);
    expect(err.code, JSON.stringify(err.body)).toBe(422);
    expect(err.body.reason).toBe("Invalid");
    const message = err.body.message ?? "";
    expect(message).toContain(what);
    expect(message).toContain(`${c.field}: ${c.reason}`);
    expect(message).toContain(c.message);
    // Exactly one problem: the object is otherwise valid, so the case tests what it names.
    // Structural errors (type, enum, required, size) make the server skip the CEL
    // rules, and it says so in an extra cause without a field.
    const causes = (err.body.details?.causes ?? []).filter(
      (cause) => !cause.message?.includes("some validation rules were not checked"),
    );
    expect(causes.map((cause) => cause.field)).toEqual([c.field]);
  });

  it("the table covers both kinds, and spec, update and status validation", () => {
    expect(invalid.length).toBeGreaterThanOrEqual(14);
    expect(new Set(invalid.map((c) => c.kind))).toEqual(new Set(["EdgeNode", "Migration"]));
    expect(invalid.some((c) => "update" in c)).toBe(true);
    expect(invalid.some((c) => "status" in c)).toBe(true);
  });
});

describe("updates", () => {
  it("Migration status and metadata stay writable while spec is immutable", async () => {
    const o = await createMigration(fullMigration(uniqueName("mutable"), namespace));
    await patchStatus(o, { phase: "Checkpointing" });
    await custom.patchNamespacedCustomObject(
      {
        ...mig,
        namespace,
        name: o.metadata.name ?? "",
        body: { metadata: { labels: { extra: "yes" } } },
      },
      mergePatch,
    );
    // Re-sending the same spec is not a change.
    await patchSpec(o, o.spec);
    const read = (await custom.getNamespacedCustomObject({
      ...mig,
      namespace,
      name: o.metadata.name ?? "",
    })) as Migration;
    expect(read.status?.phase).toBe("Checkpointing");
    expect(read.metadata.labels?.extra).toBe("yes");
    expect(read.spec).toEqual(o.spec);
  });

  it("EdgeNode spec is mutable and cross-field rules apply to updates", async () => {
    const o = await createEdgeNode(fullEdgeNode(uniqueName("mutable")));
    await patchSpec(o, { cooldownSeconds: 30, thresholds: { cpu: { triggerPercent: 95 } } });
    const err = await rejection(patchSpec(o, { samplingIntervalSeconds: 60 }));
    expect(err.code).toBe(422);
    expect(err.body.message).toContain(
      "spec.sustainedWindowSeconds: Invalid value: sustainedWindowSeconds must be at least samplingIntervalSeconds",
    );
    const read = (await custom.getClusterCustomObject({
      ...en,
      name: o.metadata.name ?? "",
    })) as EdgeNode;
    expect(read.spec.cooldownSeconds).toBe(30);
    expect(read.spec.thresholds.cpu).toEqual({ triggerPercent: 95, rearmPercent: 60 });
    expect(read.metadata.generation).toBe(2);
  });
});

describe("printer columns", () => {
  it("EdgeNode: Nodes, Pods, Checkpoint, Active, Ready from status", async () => {
    const o = await createEdgeNode(minimalEdgeNode(uniqueName("table")));
    await patchStatus(o, fullEdgeNodeStatus(o.metadata.generation));
    const table = (await custom.listClusterCustomObject(
      { ...en, fieldSelector: `metadata.name=${o.metadata.name}` },
      asTable,
    )) as Table;
    expect(table.columnDefinitions.map((c) => [c.name, c.type, c.priority])).toEqual([
      ["Name", "string", 0],
      ["Nodes", "integer", 0],
      ["Pods", "integer", 0],
      ["Checkpoint", "string", 0],
      ["Active", "integer", 0],
      ["Ready", "string", 0],
      ["Policy", "string", 1],
      ["Age", "date", 0],
    ]);
    expect(tableRow(table)).toEqual({
      Name: o.metadata.name,
      Nodes: 3,
      Pods: 5,
      Checkpoint: "2/3 nodes",
      Active: 1,
      Ready: "True",
      Policy: "checkpoint",
      Age: expect.stringMatching(/^\d+s$/),
    });
  });

  it("Migration: Pod, Direction, Source, Target, Policy, Phase, Duration (and Handoff, Downtime wide)", async () => {
    const o = await createMigration(fullMigration(uniqueName("table"), namespace));
    await patchStatus(o, fullMigrationStatus(o.metadata.generation));
    const table = (await custom.listNamespacedCustomObject(
      { ...mig, namespace, fieldSelector: `metadata.name=${o.metadata.name}` },
      asTable,
    )) as Table;
    expect(tableRow(table)).toEqual({
      Name: o.metadata.name,
      Pod: "sensor-ingest-0",
      Direction: "ToCloud",
      Source: "edge-1",
      Target: "cloud-1",
      Policy: "checkpoint",
      Phase: "Succeeded",
      Duration: "4.2s",
      Handoff: "Freeze",
      Downtime: 3.76,
      Reason: "ThresholdExceeded",
      Age: expect.stringMatching(/^\d+s$/),
    });
  });

  it("kubectl finds both kinds by short name and by the edgeshift category", async () => {
    const e = await createEdgeNode(minimalEdgeNode(uniqueName("kubectl")));
    const m = await createMigration(minimalMigration(uniqueName("kubectl"), namespace));
    const kubectl = (...args: string[]) =>
      run(inject("kubectl"), ["--kubeconfig", kubeconfig, ...args]).then((r) => r.stdout);
    const names = (out: string) => out.trim().split("\n").sort();
    const want = [
      `edgenode.${GROUP}/${e.metadata.name}`,
      `migration.${GROUP}/${m.metadata.name}`,
    ].sort();
    const byShortName = names(await kubectl("get", "en,mig", "-n", namespace, "-o", "name"));
    const byCategory = names(await kubectl("get", CATEGORY, "-n", namespace, "-o", "name"));
    expect(byShortName.filter((n) => want.includes(n))).toEqual(want);
    expect(byCategory.filter((n) => want.includes(n))).toEqual(want);
  });
});
