// What most integration tests of the Migration controller set up: Node objects
// for one edge and one cloud node (API objects only: the integration project
// has no kubelet), a namespace, an EdgeNode selecting both, pods on the edge
// node marked Running, and the real operator as its own process with the
// shipped RBAC. Everything is removed again by cleanup().
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import {
  EDGENODE_PLURAL,
  type EdgeNode,
  type EdgeNodeSpec,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { CHECKPOINT_RESTORE_ANNOTATION } from "../../operator/edgenode/preflight.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { waitUntil } from "../cluster/process.ts";
import {
  adminClients,
  type Clients,
  createNamespace,
  createNode,
  createPod,
  listMigrations,
  setPodRunning,
} from "./objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  serviceAccountKubeconfig,
  startOperator,
} from "./operator.ts";

const GROUP_LABEL = "test.edgeshift.dev/group";

export interface EdgeFixture {
  c: Clients;
  op: RunningOperator;
  namespace: string;
  edgeNode: string;
  /** The edge and cloud Node objects' names. */
  edge: string;
  cloud: string;
  read(name: string): Promise<Migration>;
  /** Waits until `name` satisfies `ok` and returns it. */
  until(
    name: string,
    what: string,
    ok: (m: Migration) => boolean,
    timeoutMs?: number,
  ): Promise<Migration>;
  cleanup(): Promise<void>;
}

/**
 * `prefix` names everything (namespace `<prefix>-apps`, nodes `<prefix>-edge-1`
 * and `<prefix>-cloud-1`, EdgeNode `<prefix>-edge`), so files never collide.
 */
export async function edgeFixture(opts: {
  prefix: string;
  kubeconfig: string;
  kubectl: string;
  natsUrl: string;
  pods: string[];
  spec?: Partial<EdgeNodeSpec>;
  operatorEnv?: Record<string, string>;
}): Promise<EdgeFixture> {
  const c = adminClients(opts.kubeconfig);
  const namespace = `${opts.prefix}-apps`;
  const edge = `${opts.prefix}-edge-1`;
  const cloud = `${opts.prefix}-cloud-1`;
  const edgeNode = `${opts.prefix}-edge`;
  await installOperatorRbac(opts.kubectl, opts.kubeconfig);
  const saKubeconfig = await serviceAccountKubeconfig(
    opts.kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createNode(c, edge, { [GROUP_LABEL]: opts.prefix }, "containerd://2.3.7");
  await createNode(c, cloud, { [GROUP_LABEL]: `${opts.prefix}-cloud` }, "containerd://2.3.7");
  await c.core.patchNode(
    {
      name: cloud,
      body: { metadata: { annotations: { [CHECKPOINT_RESTORE_ANNOTATION]: "enabled" } } },
    },
    mergePatch,
  );
  await createNamespace(c, namespace);
  const en: EdgeNode = {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "EdgeNode",
    metadata: { name: edgeNode },
    spec: {
      nodeSelector: { matchLabels: { [GROUP_LABEL]: opts.prefix } },
      pods: { namespaces: [namespace] },
      thresholds: { cpu: { triggerPercent: 80 } },
      cloud: { nodeSelector: { matchLabels: { [GROUP_LABEL]: `${opts.prefix}-cloud` } } },
      ...opts.spec,
    },
  };
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: en,
  });
  for (const pod of opts.pods) {
    await createPod(c, namespace, pod, edge);
    await setPodRunning(c, namespace, pod);
  }
  const op = await startOperator({
    name: `${opts.prefix}-op`,
    kubeconfig: saKubeconfig,
    natsUrl: opts.natsUrl,
    env: opts.operatorEnv,
  });
  const read = async (name: string) =>
    (await c.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace,
      name,
    })) as Migration;
  return {
    c,
    op,
    namespace,
    edgeNode,
    edge,
    cloud,
    read,
    until: (name, what, ok, timeoutMs = 30_000) =>
      waitUntil(
        `${name}: ${what}`,
        async () => {
          const m = await read(name);
          return ok(m) ? m : undefined;
        },
        { timeoutMs, intervalMs: 250 },
      ),
    async cleanup() {
      // Migrations first, while the operator still runs to release its finalizer.
      await c.custom
        .deleteCollectionNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace,
        })
        .catch(() => {});
      await waitUntil(
        `the Migrations of ${namespace} gone`,
        async () => ((await listMigrations(c, namespace)).length === 0 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 250 },
      ).catch(async () => {
        for (const m of await listMigrations(c, namespace))
          await c.custom
            .patchNamespacedCustomObject(
              {
                group: GROUP,
                version: VERSION,
                plural: MIGRATION_PLURAL,
                namespace,
                name: m.metadata.name ?? "",
                body: { metadata: { finalizers: null } },
              },
              mergePatch,
            )
            .catch(() => {});
      });
      await op.kill();
      await op.cleanup();
      await rm(dirname(saKubeconfig), { recursive: true, force: true });
      await c.core
        .deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 })
        .catch(() => {});
      await c.core.deleteNamespace({ name: namespace }).catch(() => {});
      await c.custom
        .deleteClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: EDGENODE_PLURAL,
          name: edgeNode,
        })
        .catch(() => {});
      for (const name of [edge, cloud]) await c.core.deleteNode({ name }).catch(() => {});
    },
  };
}
