// The install bundle as users apply it, running as pods on the real nodes: the
// operator's two replicas with leader election, NATS, the edge agent, and the
// monitors the operator injects into workloads as ephemeral containers.
import { CoordinationV1Api } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { EdgeNode } from "../../operator/api/v1alpha1.ts";
import { monitorName } from "../../operator/monitor/inject.ts";
import { waitUntil } from "../cluster/process.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const SYSTEM = "edgeshift-system";

describe("install bundle on real nodes", () => {
  it("runs every edgeshift pod Ready: two operators, NATS and an agent on each edge node", async () => {
    const { core } = clients();
    // Every pod Ready, waited for: a test before this one (in any order) may have
    // killed an operator replica, which its kubelet then restarts.
    const pods = await waitUntil(
      "every edgeshift pod Ready",
      async () => {
        const all = (await core.listNamespacedPod({ namespace: SYSTEM })).items.filter(
          (p) => !p.metadata?.deletionTimestamp,
        );
        return all.length > 0 && all.every((p) => podReady(p)) ? all : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const byName = (n: string) =>
      pods.filter((p) => p.metadata?.labels?.["app.kubernetes.io/name"] === n);
    expect(byName("edgeshift-operator")).toHaveLength(2);
    expect(byName("edgeshift-nats")).toHaveLength(1);
    const agents = byName("edgeshift-agent");
    // edge-1 and edge-old (containerd 1.7) carry the edge label; the cloud nodes get none.
    expect(agents.map((p) => p.spec?.nodeName).sort()).toEqual(["edge-1", "edge-old"]);
    for (const p of pods) expect(podReady(p), p.metadata?.name).toBe(true);
    // They run the image built from the project's Dockerfile, under the bundle's name.
    for (const p of [...byName("edgeshift-operator"), ...agents]) {
      expect(p.status?.containerStatuses?.[0]?.image).toBe("ghcr.io/edgeshift/edgeshift:0.1.0");
    }
  });

  it("hands leadership to another live replica when the leader's pod is deleted", async () => {
    const { kc, core } = clients();
    const coord = kc.makeApiClient(CoordinationV1Api);
    const holder = async () =>
      (await coord.readNamespacedLease({ namespace: SYSTEM, name: "edgeshift-operator" })).spec
        ?.holderIdentity ?? "";
    const before = await waitUntil("a leader", async () => (await holder()) || undefined, {
      timeoutMs: 60_000,
    });
    const others = (
      await core.listNamespacedPod({
        namespace: SYSTEM,
        labelSelector: "app.kubernetes.io/name=edgeshift-operator",
      })
    ).items
      .map((p) => p.metadata?.name ?? "")
      .filter((n) => n !== before);
    expect(others).toHaveLength(1);
    await kubectl(["-n", SYSTEM, "delete", "pod", before, "--wait=false"]);
    const after = await waitUntil(
      "a new leader",
      async () => {
        const h = await holder();
        return h && h !== before ? h : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    // The released Lease goes to the standby or, when it starts first, to the
    // ReplicaSet's replacement: either way a live replica other than the deleted one.
    const now = (
      await core.listNamespacedPod({
        namespace: SYSTEM,
        labelSelector: "app.kubernetes.io/name=edgeshift-operator",
      })
    ).items.filter((p) => !p.metadata?.deletionTimestamp);
    expect(now.map((p) => p.metadata?.name)).toContain(after);
    console.log(
      `[measure] leadership went to the ${others.includes(after) ? "standby" : "replacement"} replica`,
    );
    await kubectl([
      "-n",
      SYSTEM,
      "rollout",
      "status",
      "deploy/edgeshift-operator",
      "--timeout=180s",
    ]);
  });

  it("injects a monitor into a new edge workload without restarting it, and its samples reach the operator", async () => {
    const ns = cluster().appNamespace;
    const edge = cluster().nodes[0]?.name ?? "";
    await apply(busyboxPod(ns, "watched", edge, "while true; do sleep 1; done"));
    const first = await waitForPod(ns, "watched", "Ready", podReady);
    const pod = await waitForPod(ns, "watched", "monitor running", (p) =>
      (p.status?.ephemeralContainerStatuses ?? []).some(
        (s) => s.name === monitorName("main") && !!s.state?.running,
      ),
    );
    expect(pod.metadata?.uid).toBe(first.metadata?.uid);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    const { custom } = clients();
    const en = await waitUntil(
      "the EdgeNode to count the monitored pod with fresh samples",
      async () => {
        const e = (await custom.getClusterCustomObject({
          group: "edgeshift.dev",
          version: "v1alpha1",
          plural: "edgenodes",
          name: cluster().edgeNode,
        })) as EdgeNode;
        return (e.status?.monitoredPods ?? 0) >= 1 && e.status?.staleMonitors === 0 ? e : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 1000 },
    );
    expect(en.status?.monitoredPods).toBeGreaterThanOrEqual(1);
    // The leader verified samples: received and not dropped (a fresh leader after
    // the previous test starts counting from zero, so wait for its first ones).
    const accepted = await waitUntil(
      "verified samples at the operator",
      async () => {
        const ops = (
          await core().listNamespacedPod({
            namespace: SYSTEM,
            labelSelector: "app.kubernetes.io/name=edgeshift-operator",
          })
        ).items.map((p) => p.metadata?.name ?? "");
        let received = 0;
        let dropped = 0;
        for (const op of ops) {
          const text = await kubectl([
            "get",
            "--raw",
            `/api/v1/namespaces/${SYSTEM}/pods/${op}:8080/proxy/metrics`,
          ]).catch(() => "");
          for (const line of text.split("\n")) {
            const m =
              /^edgeshift_samples_(received|dropped)_total(?:\{[^}]*\})? (\d+(?:\.\d+)?)/.exec(
                line,
              );
            if (m?.[1] === "received") received += Number(m[2]);
            if (m?.[1] === "dropped") dropped += Number(m[2]);
          }
        }
        return received - dropped > 0 ? { received, dropped } : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    expect(accepted.received - accepted.dropped).toBeGreaterThan(0);
    expect(accepted.dropped).toBe(0);
    await kubectl(["-n", ns, "delete", "pod", "watched", "--wait=false"]);
  });
});

function core() {
  return clients().core;
}
