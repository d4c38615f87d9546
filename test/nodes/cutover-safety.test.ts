// Cutover under real-world timing, on real nodes: each test holds the world in
// the dangerous state deterministically and then lets it go. The holds are
// real API-server machinery, never a race against a timer:
//  - a ValidatingAdmissionPolicy that refuses the operator's changes to a
//    restored pod (so cutover stops right before the reveal), released once
//    the API server has counted it refusing the operator;
//  - a pod ResourceQuota filled to what runs, so a ReplicaSet told to scale
//    up cannot create its new pod;
//  - the operator's Lease held by the test and its leader killed, so no
//    operator acts while the test changes the world under it;
//  - a readiness probe that keeps the restored pod on cloud-1 from Ready, so
//    the migration stays in Restoring.
// The real controller manager then decides what each owner does.
import type { V1Pod } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import type { Migration, MigrationPhase } from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import * as moves from "./moves.ts";
import { releaseOperatorLease, stopOperator } from "./node-control.ts";
import { operatorHold } from "./operator-hold.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const ID = "cutsafe";
const DELETION_COST = "controller.kubernetes.io/pod-deletion-cost";
const HOLD = "edgeshift-test-hold-reveal";
const IDLE = "while true; do sleep 1; done";
// The pause after the file appears lets the exec that touched it return
// before the container ends (the runtime kills what is left in it, and the
// exec would report 137).
const WORK = "while [ ! -f /tmp/done ]; do sleep 0.2; done; sleep 2";

const ns = () => cluster().appNamespace;
const edge = () => cluster().nodes[0]?.name ?? "";
const cloud = () => cluster().nodes[1]?.name ?? "";
const live = (selector: string) => moves.podsOf(ns(), selector);
const getMigration = (name: string) => moves.getMigration(ns(), name);

let made: string[] = [];
async function createMigration(name: string, podName: string): Promise<void> {
  made.push(name);
  await moves.createMigration(ns(), name, { podName, restorePolicy: "restart" }, { test: ID });
}

afterEach(async () => {
  await releaseHold();
  await kubectl(["-n", ns(), "delete", "resourcequota", QUOTA, "--ignore-not-found"]);
  await releaseOperatorLease();
  await moves.cleanUp(ns(), ID, made);
  made = [];
});

// --- the world's pieces ------------------------------------------------------------

/** A pod template pinned to edge-1; `readyOnEdgeOnly` keeps its restored copy from Ready. */
function template(app: string, script: string, restartPolicy: string, readyOnEdgeOnly = false) {
  const pod = busyboxPod(ns(), app, edge(), script, { labels: { test: ID } }) as {
    metadata: { labels: Record<string, string> };
    spec: { containers: Record<string, unknown>[] } & Record<string, unknown>;
  };
  const c0 = pod.spec.containers[0] ?? {};
  if (readyOnEdgeOnly) {
    c0.env = [{ name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } }];
    c0.readinessProbe = {
      exec: { command: ["sh", "-c", `[ "$NODE" != "${cloud()}" ]`] },
      periodSeconds: 1,
      failureThreshold: 1,
    };
  }
  return { metadata: { labels: pod.metadata.labels }, spec: { ...pod.spec, restartPolicy } };
}

function bare(name: string, readyOnEdgeOnly = false) {
  const t = template(name, IDLE, "Always", readyOnEdgeOnly);
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns(), ...t.metadata },
    spec: t.spec,
  };
}

function deployment(name: string) {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: ns(), labels: { test: ID } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: template(name, IDLE, "Always"),
    },
  };
}

/** Two replicas, at most one apart between edge-1 and cloud-1 (so one on each). */
function spreadDeployment(name: string) {
  const t = template(name, IDLE, "Always");
  const { nodeName: _pinned, ...spec } = t.spec as Record<string, unknown>;
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: ns(), labels: { test: ID } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: t.metadata,
        spec: {
          ...spec,
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  {
                    matchExpressions: [
                      { key: "kubernetes.io/hostname", operator: "In", values: [edge(), cloud()] },
                    ],
                  },
                ],
              },
            },
          },
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: "kubernetes.io/hostname",
              whenUnsatisfiable: "DoNotSchedule",
              labelSelector: { matchLabels: { app: name } },
            },
          ],
        },
      },
    },
  };
}

function job(name: string, readyOnEdgeOnly = false) {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace: ns(), labels: { test: ID } },
    spec: {
      parallelism: 1,
      completions: 1,
      backoffLimit: 0,
      template: template(name, WORK, "Never", readyOnEdgeOnly),
    },
  };
}

async function oneReady(selector: string): Promise<V1Pod> {
  const [p] = await waitUntil(
    `one pod ${selector} Ready`,
    async () => {
      const pods = await live(selector);
      return pods.length === 1 && podReady(pods[0]) ? pods : undefined;
    },
    { timeoutMs: 120_000 },
  );
  if (!p) throw new Error(`no pod ${selector}`);
  return p;
}

async function awaitPhase(name: string, phase: MigrationPhase): Promise<Migration> {
  return waitUntil(
    `Migration ${name} in ${phase}`,
    async () => {
      const m = await getMigration(name);
      if (m.status?.phase === phase) return m;
      if (m.status?.phase === "Succeeded" || m.status?.phase === "Failed")
        throw new Error(`Migration ${name} ended ${m.status.phase}: ${m.status.message}`);
      return undefined;
    },
    { timeoutMs: 120_000, intervalMs: 100 },
  );
}

async function readPod(name: string): Promise<V1Pod | undefined> {
  return clients()
    .core.readNamespacedPod({ namespace: ns(), name })
    .catch(() => undefined);
}

async function jobStatus(name: string) {
  return (
    JSON.parse(await kubectl(["-n", ns(), "get", "job", name, "-o", "json"])) as {
      status: {
        succeeded?: number;
        failed?: number;
        conditions?: { type: string; status: string }[];
      };
    }
  ).status;
}

async function jobComplete(name: string) {
  return waitUntil(
    `Job ${name} to complete`,
    async () => {
      const s = await jobStatus(name);
      return s.conditions?.some((c) => c.type === "Complete" && c.status === "True")
        ? s
        : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
}

// --- the holds --------------------------------------------------------------------

const operator = operatorHold(ID, HOLD);
const hold = operator.hold;
const releaseHold = operator.release;
const refusals = operator.refusals;

/** Waits until the API server has refused the operator `n` more times than `from`. */
async function refusedTimes(from: number, n: number): Promise<void> {
  await waitUntil(
    `the operator refused ${n} times under the hold`,
    async () => ((await refusals()) - from >= n ? true : undefined),
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

const QUOTA = `${ID}-pods`;

/** A pod quota at what the namespace runs now: no further pod is admitted until one goes. */
/**
 * A pod quota at what the namespace runs now, less `below`: no further pod is
 * admitted until one (or `below` + 1) goes.
 */
async function fillPodQuota(below = 0): Promise<void> {
  const pods = (await clients().core.listNamespacedPod({ namespace: ns() })).items.filter(
    (p) => p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed",
  );
  await apply({
    apiVersion: "v1",
    kind: "ResourceQuota",
    metadata: { name: QUOTA, namespace: ns(), labels: { test: ID } },
    spec: { hard: { pods: String(pods.length - below) } },
  });
  await waitUntil(
    "the pod quota counted full",
    async () => {
      const q = await clients().core.readNamespacedResourceQuota({ namespace: ns(), name: QUOTA });
      const used = q.status?.used?.pods;
      return used !== undefined && Number(used) >= pods.length ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
}

// --- the tests ----------------------------------------------------------------------

describe("cutover holds under real-world timing", () => {
  it("hands the restored pod to the ReplicaSet from its record when the original is deleted during cutover", async () => {
    await apply(deployment("cs-web"));
    const orig = await oneReady("app=cs-web");
    const origName = orig.metadata?.name ?? "";
    const rs = orig.metadata?.ownerReferences?.find((o) => o.controller);
    await hold("reveal");
    const pods = await moves.podRecorder(ns());
    try {
      const before = await refusals();
      await createMigration("cs-web", origName);
      const m = await awaitPhase("cs-web", "CuttingOver");
      const restored = m.status?.restoredPod ?? "";
      expect(m.status?.reveal).toMatchObject({ ownerKind: "ReplicaSet", ownerUID: rs?.uid });
      await refusedTimes(before, 1);
      // Held right before the reveal: the original costs the least, the restored pod is hidden.
      expect((await readPod(origName))?.metadata?.annotations?.[DELETION_COST]).toBe("-2147483648");
      const hidden = await readPod(restored);
      expect(hidden?.metadata?.ownerReferences).toBeUndefined();
      expect(hidden?.metadata?.labels?.["pod-template-hash"]).toBeUndefined();

      // The original goes by hand (an eviction, a rollout, a kubectl delete).
      // A pod quota one below what runs keeps the ReplicaSet from replacing it
      // (which would leave the ReplicaSet choosing between two Ready pods by
      // its own ranking), so the test sees only what the reveal does.
      await fillPodQuota(1);
      await kubectl(["-n", ns(), "delete", "pod", origName, "--wait=false"]);
      // The ReplicaSet refused a replacement by the quota.
      await moves.awaitEvent(ns(), { kind: "ReplicaSet", name: rs?.name ?? "" }, "FailedCreate");
      // Gone for good, not just terminating: nothing is left to read the labels from.
      await moves.gone(ns(), origName);
      await releaseHold();

      const done = await moves.awaitMigration(ns(), "cs-web");
      expect(done.status?.phase, done.status?.message).toBe("Succeeded");
      // One copy, owned: the ReplicaSet adopted the restored pod and needs no replacement.
      const [only] = await waitUntil(
        "one cs-web pod left",
        async () => {
          const p = await live("app=cs-web");
          return p.length === 1 ? p : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect([only?.metadata?.name, only?.spec?.nodeName]).toEqual([restored, cloud()]);
      expect(only?.metadata?.ownerReferences?.find((o) => o.controller)?.uid).toBe(rs?.uid);
      expect(pods.createdBy(`ReplicaSet/${rs?.name}`)).toEqual([origName]);
    } finally {
      pods.stop();
    }
  });

  it("keeps the restored pod when the original is deleted during cutover and the ReplicaSet's replacement is Ready first", async () => {
    // Two replicas spread over edge-1 and cloud-1; the one on edge-1 moves.
    await apply(spreadDeployment("cs-keep"));
    const [orig] = await waitUntil(
      "cs-keep on edge-1 and cloud-1",
      async () => {
        const p = await live("app=cs-keep");
        const nodes = p.map((x) => x.spec?.nodeName).sort();
        return p.length === 2 &&
          p.every(podReady) &&
          nodes.join() === [cloud(), edge()].sort().join()
          ? p.filter((x) => x.spec?.nodeName === edge())
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    const origName = orig?.metadata?.name ?? "";
    const rs = orig?.metadata?.ownerReferences?.find((o) => o.controller);
    await hold("reveal");
    try {
      const before = await refusals();
      await createMigration("cs-keep", origName);
      const m = await awaitPhase("cs-keep", "CuttingOver");
      const restored = m.status?.restoredPod ?? "";
      await refusedTimes(before, 1);
      // Held before the reveal, the original goes by hand and the ReplicaSet
      // replaces it (on edge-1: the spread allows nothing else). Revealed, the
      // restored pod makes one pod too many, doubled up with the other replica
      // on cloud-1: by the ReplicaSet's own ranking (doubled up, ready for the
      // shortest time) the restored pod, which holds the migrated state, would go.
      await kubectl(["-n", ns(), "delete", "pod", origName, "--wait=false"]);
      const replacement = await waitUntil(
        "the ReplicaSet's replacement Ready on edge-1",
        async () => {
          const p = (await live("app=cs-keep")).filter(
            (x) =>
              x.metadata?.name !== restored &&
              x.metadata?.name !== origName &&
              x.spec?.nodeName === edge(),
          );
          return p.length === 1 && podReady(p[0]) ? p[0] : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      await moves.gone(ns(), origName);
      await releaseHold();

      const done = await moves.awaitMigration(ns(), "cs-keep");
      expect(done.status?.phase, done.status?.message).toBe("Succeeded");
      const pods = await waitUntil(
        "two cs-keep pods left",
        async () => {
          const p = await live("app=cs-keep");
          return p.length === 2 ? p : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      const kept = pods.find((x) => x.metadata?.name === restored);
      expect(kept?.spec?.nodeName, pods.map((x) => x.metadata?.name).join()).toBe(cloud());
      expect(kept?.metadata?.ownerReferences?.find((o) => o.controller)?.uid).toBe(rs?.uid);
      expect(pods.map((x) => x.metadata?.name)).toContain(replacement?.metadata?.name);
      // Settled: the restored pod is one of the ReplicaSet's pods like any other.
      expect(kept?.metadata?.annotations?.[DELETION_COST]).toBeUndefined();
    } finally {
      await releaseHold();
    }
  });

  it("reveals a Job's restored pod before removing the original: held in between, the Job starts nothing", async () => {
    await apply(job("cs-batch"));
    const orig = await oneReady("batch.kubernetes.io/job-name=cs-batch");
    const origName = orig.metadata?.name ?? "";
    await hold("reveal");
    const pods = await moves.podRecorder(ns());
    try {
      const before = await refusals();
      await createMigration("cs-batch", origName);
      const m = await awaitPhase("cs-batch", "CuttingOver");
      // Refused twice: the operator's first pass, and its retry, both ended at the reveal.
      await refusedTimes(before, 2);
      const held = await readPod(origName);
      expect(held?.metadata?.deletionTimestamp, "the original was removed before the reveal").toBe(
        undefined,
      );
      expect(pods.createdBy("Job/cs-batch")).toEqual([origName]);

      await releaseHold();
      const done = await moves.awaitMigration(ns(), "cs-batch");
      expect(done.status?.phase, done.status?.message).toBe("Succeeded");
      await moves.gone(ns(), origName);
      const restored = m.status?.restoredPod ?? "";
      const [p] = await live("batch.kubernetes.io/job-name=cs-batch");
      expect([p?.metadata?.name, p?.spec?.nodeName]).toEqual([restored, cloud()]);
      expect(p?.metadata?.ownerReferences?.find((o) => o.controller)?.kind).toBe("Job");
      await kubectl(["-n", ns(), "exec", restored, "-c", "main", "--", "touch", "/tmp/done"]);
      const s = await jobComplete("cs-batch");
      expect([s.succeeded, s.failed ?? 0]).toEqual([1, 0]);
      expect(pods.createdBy("Job/cs-batch")).toEqual([origName]);
    } finally {
      pods.stop();
    }
  });

  it("killed between a Job's reveal and the original's removal: the Job keeps one copy and starts nothing", async () => {
    await apply(job("cs-crash"));
    const orig = await oneReady("batch.kubernetes.io/job-name=cs-crash");
    const origName = orig.metadata?.name ?? "";
    await hold("removal");
    const pods = await moves.podRecorder(ns());
    try {
      const before = await refusals();
      await createMigration("cs-crash", origName);
      const m = await awaitPhase("cs-crash", "CuttingOver");
      const restored = m.status?.restoredPod ?? "";
      await refusedTimes(before, 1);
      // The reveal went through, the removal did not; then the operator dies there.
      await waitForPod(ns(), restored, "revealed", (p) =>
        Boolean(p.metadata?.labels?.["batch.kubernetes.io/job-name"]),
      );
      await stopOperator();
      await releaseHold();
      // The Job, seeing two active pods for one, keeps one of them.
      const [survivor] = await waitUntil(
        "one cs-crash pod left",
        async () => {
          const p = await live("batch.kubernetes.io/job-name=cs-crash");
          return p.length === 1 ? p : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      const name = survivor?.metadata?.name ?? "";
      expect([origName, restored]).toContain(name);
      await releaseOperatorLease();
      const done = await moves.awaitMigration(ns(), "cs-crash");
      // The status says which copy the Job kept.
      expect([done.status?.phase, done.status?.failureReason]).toEqual(
        name === restored ? ["Succeeded", undefined] : ["Failed", "CutOverFailed"],
      );
      console.log(
        `[measure] the Job kept ${name === restored ? "the restored pod" : "the original"}`,
      );
      await kubectl(["-n", ns(), "exec", name, "-c", "main", "--", "touch", "/tmp/done"]);
      const s = await jobComplete("cs-crash");
      expect(s.succeeded).toBe(1);
      expect(pods.createdBy("Job/cs-crash")).toEqual([origName]);
    } finally {
      pods.stop();
    }
  });

  it("settles to one copy at the cutover deadline when a scale-up lets the ReplicaSet keep both pods", async () => {
    await apply(deployment("cs-scale"));
    const orig = await oneReady("app=cs-scale");
    const origName = orig.metadata?.name ?? "";
    const rs = orig.metadata?.ownerReferences?.find((o) => o.controller);
    await hold("reveal");
    const before = await refusals();
    await createMigration("cs-scale", origName);
    const m = await awaitPhase("cs-scale", "CuttingOver");
    const restored = m.status?.restoredPod ?? "";
    await refusedTimes(before, 1);
    // The workload scales to two (what an HPA does) while a pod quota, full
    // now, keeps the ReplicaSet from creating the second pod: when the reveal
    // comes it finds exactly the two pods it wants and removes neither.
    await fillPodQuota();
    await kubectl(["-n", ns(), "scale", "deployment", "cs-scale", "--replicas=2"]);
    // The ReplicaSet refused a pod by the quota.
    await moves.awaitEvent(ns(), { kind: "ReplicaSet", name: rs?.name ?? "" }, "FailedCreate");
    await releaseHold();
    await waitForPod(ns(), restored, "adopted by the ReplicaSet", (p) =>
      Boolean(p.metadata?.ownerReferences?.some((o) => o.controller && o.uid === rs?.uid)),
    );

    const done = await moves.awaitMigration(ns(), "cs-scale", 120_000);
    expect(done.status?.phase, done.status?.message).toBe("Succeeded");
    await moves.gone(ns(), origName);
    const events = await moves.eventMessages(
      ns(),
      { kind: "Migration", name: "cs-scale" },
      "CutOverDeadline",
    );
    expect(events, "a CutOverDeadline event").toHaveLength(1);
    // The quota freed by the original, the ReplicaSet creates the second replica.
    const now = await waitUntil(
      "two cs-scale pods Ready",
      async () => {
        const p = await live("app=cs-scale");
        return p.length === 2 && p.every(podReady) ? p : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    const kept = now.find((p) => p.metadata?.name === restored);
    expect(kept?.spec?.nodeName).toBe(cloud());
    expect(kept?.metadata?.ownerReferences?.find((o) => o.controller)?.uid).toBe(rs?.uid);
  }, 300_000);

  it("rolls back a Migration deleted in Restoring: the restored pod goes, the original runs on", async () => {
    await apply(bare("cs-del-r", true));
    const orig = await waitForPod(ns(), "cs-del-r", "Ready", podReady);
    await createMigration("cs-del-r", "cs-del-r");
    const restored = await waitUntil(
      "the restored pod running, not Ready",
      async () => {
        const m = await getMigration("cs-del-r");
        const p = m.status?.restoredPod ? await readPod(m.status.restoredPod) : undefined;
        return p?.status?.containerStatuses?.[0]?.state?.running && !podReady(p)
          ? (m.status?.restoredPod ?? "")
          : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    expect((await getMigration("cs-del-r")).status?.phase).toBe("Restoring");
    await kubectl(["-n", ns(), "delete", "migration", "cs-del-r", "--wait=true"]);
    await moves.gone(ns(), restored);
    const left = await live("app=cs-del-r");
    expect(left.map((p) => [p.metadata?.uid, p.spec?.nodeName, podReady(p)])).toEqual([
      [orig.metadata?.uid, edge(), true],
    ]);
  });

  it("rolls back a Migration deleted in CuttingOver: no hidden pod left, the original's deletion cost undone", async () => {
    await apply(deployment("cs-del-c"));
    const orig = await oneReady("app=cs-del-c");
    const origName = orig.metadata?.name ?? "";
    await hold("reveal");
    const before = await refusals();
    await createMigration("cs-del-c", origName);
    const m = await awaitPhase("cs-del-c", "CuttingOver");
    await refusedTimes(before, 1);
    // Still held: the operator cleans up with deletes and the original's annotation only.
    await kubectl(["-n", ns(), "delete", "migration", "cs-del-c", "--wait=true"]);
    await moves.gone(ns(), m.status?.restoredPod ?? "");
    const left = await live("app=cs-del-c");
    expect(left.map((p) => p.metadata?.name)).toEqual([origName]);
    expect(left[0]?.metadata?.annotations?.[DELETION_COST]).toBeUndefined();
  });

  it("fails SourcePodReplaced when the pod is re-created under its name mid-migration, and leaves the new pod alone", async () => {
    await apply(bare("cs-same", true));
    await waitForPod(ns(), "cs-same", "Ready", podReady);
    await createMigration("cs-same", "cs-same");
    await awaitPhase("cs-same", "Restoring");
    // No operator acts (its Lease held, the leader killed) while the pod is
    // deleted and created again under its name.
    await stopOperator();
    await kubectl(["-n", ns(), "delete", "pod", "cs-same", "--wait=true"]);
    await apply(bare("cs-same", true));
    const renewed = await waitForPod(ns(), "cs-same", "Ready", podReady);
    await releaseOperatorLease();
    const done = await moves.awaitMigration(ns(), "cs-same");
    expect([done.status?.phase, done.status?.failureReason]).toEqual([
      "Failed",
      "SourcePodReplaced",
    ]);
    await moves.gone(ns(), done.status?.restoredPod ?? "");
    const now = await readPod("cs-same");
    expect([now?.metadata?.uid, now?.metadata?.deletionTimestamp, podReady(now)]).toEqual([
      renewed.metadata?.uid,
      undefined,
      true,
    ]);
  });

  it("ends the migration of a Job pod that completes meanwhile: nothing replayed, the Job counts one success", async () => {
    await apply(job("cs-done", true));
    const orig = await oneReady("batch.kubernetes.io/job-name=cs-done");
    const origName = orig.metadata?.name ?? "";
    const pods = await moves.podRecorder(ns());
    try {
      await createMigration("cs-done", origName);
      const m = await awaitPhase("cs-done", "Restoring");
      await waitUntil(
        "the restored pod created",
        async () =>
          (await getMigration("cs-done")).status?.restoredPod &&
          (await readPod((await getMigration("cs-done")).status?.restoredPod ?? ""))
            ? true
            : undefined,
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect(m.status?.phase).toBe("Restoring");
      await kubectl(["-n", ns(), "exec", origName, "-c", "main", "--", "touch", "/tmp/done"]);
      const done = await moves.awaitMigration(ns(), "cs-done");
      expect([done.status?.phase, done.status?.failureReason]).toEqual([
        "Failed",
        "SourcePodFinished",
      ]);
      await moves.gone(ns(), done.status?.restoredPod ?? "");
      const s = await jobComplete("cs-done");
      expect([s.succeeded, s.failed ?? 0]).toEqual([1, 0]);
      expect(pods.createdBy("Job/cs-done")).toEqual([origName]);
    } finally {
      pods.stop();
    }
  });
});
