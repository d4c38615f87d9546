// Finished Migrations are collected once past their retention, as the operator's
// settings say (operator/migration/history.ts): with a history limit of 1 and a TTL
// of 2 s, of three failed Migrations in a namespace only the newest stays.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { waitUntil } from "../cluster/process.ts";
import {
  adminClients,
  type Clients,
  createMigration,
  createNamespace,
  listMigrations,
} from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  serviceAccountKubeconfig,
  startOperator,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const natsUrl = inject("natsUrl");
const NS = "history-apps";

let c: Clients;
let op: RunningOperator;
let saKubeconfig: string;

const list = () => listMigrations(c, NS);

beforeAll(async () => {
  c = adminClients(kubeconfig);
  await installOperatorRbac(kubectl, kubeconfig);
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createNamespace(c, NS);
  op = await startOperator({
    name: "history-op",
    kubeconfig: saKubeconfig,
    natsUrl,
    env: { EDGESHIFT_MIGRATION_HISTORY_LIMIT: "1", EDGESHIFT_MIGRATION_TTL: "2s" },
  });
});

afterAll(async () => {
  await op?.kill();
  await op?.cleanup();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
});

describe("finished Migration history", () => {
  it("keeps the newest finished Migration and deletes the older ones past the TTL", async () => {
    // Each fails at once (no such pod); created one after another so they finish in order.
    for (const name of ["first", "second", "third"]) {
      await createMigration(c, NS, name, { podName: `missing-${name}` });
      await waitUntil(
        `${name} to fail`,
        async () => {
          const m = (await list()).find((x) => x.metadata.name === name);
          return m?.status?.phase === "Failed" ? m : undefined;
        },
        { timeoutMs: 30_000 },
      );
    }
    const left = await waitUntil(
      "the older two to be collected",
      async () => {
        const l = await list();
        return l.length === 1 ? l : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(left.map((m) => m.metadata.name)).toEqual(["third"]);
    expect(left[0]?.status?.conditions?.find((x) => x.type === "Succeeded")?.reason).toBe(
      "PodNotFound",
    );
    // Cluster-wide: other files' finished Migrations may be collected too.
    expect(await op.metric("edgeshift_migrations_collected_total")).toBeGreaterThanOrEqual(2);
  });
});
