// What the end-to-end tests on real nodes share: Migrations made and awaited
// through the API, containers' logs through `kubectl logs`, a sampler of a
// workload's progress while it moves, and per-test cleanup that waits until
// everything is gone.
import { type V1Pod, Watch } from "@kubernetes/client-node";
import { migrationFinished } from "../../operator/api/status.ts";
import {
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationSpec,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { clients, cluster, kubectl } from "./support.ts";

export function nodesByRole(): { edge: string; cloud: string } {
  const [edge, cloud] = cluster().nodes;
  if (!edge || !cloud) throw new Error("the cluster has no edge-1 and cloud-1");
  return { edge: edge.name, cloud: cloud.name };
}

export async function getMigration(namespace: string, name: string): Promise<Migration> {
  return (await clients().custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace,
    name,
  })) as Migration;
}

export async function listMigrations(namespace: string): Promise<Migration[]> {
  const list = (await clients().custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace,
  })) as { items: Migration[] };
  return list.items;
}

export async function createMigration(
  namespace: string,
  name: string,
  spec: MigrationSpec,
  labels?: Record<string, string>,
): Promise<void> {
  await clients().custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Migration",
      metadata: { name, ...(labels ? { labels } : {}) },
      spec,
    },
  });
}

/** Waits until the Migration has Succeeded or Failed and returns it. */
export function awaitMigration(
  namespace: string,
  name: string,
  timeoutMs = 150_000,
): Promise<Migration> {
  return waitUntil(
    `Migration ${namespace}/${name} to finish`,
    async () => {
      const m = await getMigration(namespace, name);
      return migrationFinished(m) ? m : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** A container's log so far ("" while it has none or the pod is gone). */
export async function logOf(namespace: string, pod: string, container?: string): Promise<string> {
  const args = ["-n", namespace, "logs", pod, ...(container ? ["-c", container] : [])];
  return kubectl(args).catch(() => "");
}

/** Samples `read` every `everyMs` until stopped: what the workload showed when. */
export function sampler<T>(read: () => Promise<T | undefined>, everyMs = 100) {
  const samples: { at: number; v: T }[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      const v = await read().catch(() => undefined);
      if (v !== undefined) samples.push({ at: Date.now(), v });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    samples,
    /** The last value seen at or before `at` (epoch ms). */
    before(at: number): T | undefined {
      return samples.filter((s) => s.at <= at).at(-1)?.v;
    },
    async stop(): Promise<void> {
      on = false;
      await loop;
    },
  };
}

export async function podsOf(namespace: string, labelSelector: string): Promise<V1Pod[]> {
  return (await clients().core.listNamespacedPod({ namespace, labelSelector })).items.filter(
    (p) => !p.metadata?.deletionTimestamp,
  );
}

/** The messages of the events of `kind`/`name` with `reason` in the namespace (none: []). */
export async function eventMessages(
  namespace: string,
  involved: { kind: string; name: string },
  reason: string,
): Promise<string[]> {
  const list = await clients().core.listNamespacedEvent({
    namespace,
    fieldSelector: `involvedObject.kind=${involved.kind},involvedObject.name=${involved.name},reason=${reason}`,
  });
  return list.items.map((e) => e.message ?? "");
}

/** Waits until such an event exists; returns the messages. */
export function awaitEvent(
  namespace: string,
  involved: { kind: string; name: string },
  reason: string,
  timeoutMs = 60_000,
): Promise<string[]> {
  return waitUntil(
    `a ${reason} event of ${involved.kind} ${involved.name}`,
    async () => {
      const m = await eventMessages(namespace, involved, reason);
      return m.length > 0 ? m : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** Waits until no pod of that name exists (not even terminating). */
export async function gone(namespace: string, name: string): Promise<void> {
  await waitUntil(
    `pod ${name} to be gone`,
    async () =>
      (await clients()
        .core.readNamespacedPod({ namespace, name })
        .catch(() => undefined))
        ? undefined
        : true,
    { timeoutMs: 90_000, intervalMs: 250 },
  );
}

/**
 * Every pod of the namespace the API server reports from now on, by uid, with
 * the owner it had when first seen: what an owner created during a cutover,
 * however briefly it lived.
 */
export async function podRecorder(namespace: string) {
  const seen = new Map<string, { name: string; owner?: string }>();
  const { kc } = clients();
  const abort = await new Watch(kc).watch(
    `/api/v1/namespaces/${namespace}/pods`,
    {},
    (_type, pod: V1Pod) => {
      const uid = pod.metadata?.uid ?? "";
      if (!seen.has(uid)) {
        const o = pod.metadata?.ownerReferences?.find((r) => r.controller);
        seen.set(uid, {
          name: pod.metadata?.name ?? "",
          owner: o ? `${o.kind}/${o.name}` : undefined,
        });
      }
    },
    () => {},
  );
  return {
    /** Names of the pods first seen with `owner` (Kind/name) as their controller. */
    createdBy: (owner: string) =>
      [...seen.values()].filter((p) => p.owner === owner).map((p) => p.name),
    names: () => [...seen.values()].map((p) => p.name),
    stop: () => abort.abort(),
  };
}

/**
 * Deletes what a test made in the app namespace (by label `test=<id>`, and the
 * Migrations named) and waits until its pods are gone, so the next test starts
 * on an empty namespace and idle nodes.
 */
export async function cleanUp(namespace: string, testId: string, migrations: string[] = []) {
  const sel = `test=${testId}`;
  for (const kind of ["deployment", "job", "service", "pod"]) {
    await kubectl([
      "-n",
      namespace,
      "delete",
      kind,
      "-l",
      sel,
      "--ignore-not-found",
      "--wait=false",
      ...(kind === "job" ? ["--cascade=foreground"] : []),
    ]).catch(() => "");
  }
  for (const m of migrations) {
    await kubectl(["-n", namespace, "delete", "migration", m, "--ignore-not-found"]).catch(
      () => "",
    );
  }
  await waitUntil(
    `the pods of ${testId} to be gone`,
    async () =>
      (await clients().core.listNamespacedPod({ namespace, labelSelector: sel })).items.length === 0
        ? true
        : undefined,
    { timeoutMs: 90_000, intervalMs: 250 },
  );
}

/** Epoch ms of an RFC 3339 timestamp in a Migration's status. */
export function at(ts: string | undefined): number {
  const v = Date.parse(ts ?? "");
  if (Number.isNaN(v)) throw new Error(`not a timestamp: ${ts}`);
  return v;
}
