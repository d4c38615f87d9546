// Runtimes that cannot checkpoint or restore, for real: edge-old runs
// containerd 1.7 (no CheckpointContainer), cloud-norestore runs containerd
// 2.3.7 without enable_experimental_restore_via_create and carries no
// edgeshift.dev/checkpoint-restore annotation (cloud-1 is annotated enabled,
// as its admin would). CRI-O cannot run on this machine: the cross-runtime
// case uses Node objects the test creates (no kubelet behind them) reporting
// cri-o://1.36.3, which is all the operator reads of a node's runtime.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BatchV1Api, type V1Pod, type V1PodSpec } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckpointError, checkpoint } from "../../migration/kubelet/client.ts";
import type { EdgeNode, NodeRuntimeStatus } from "../../operator/api/v1alpha1.ts";
import { agentName } from "../../operator/edgenode/agent.ts";
import { CHECKPOINT_RESTORE_ANNOTATION } from "../../operator/edgenode/preflight.ts";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { nodeHandle } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";
import { RUNTIME_TEST_TAINT } from "./global-setup.ts";
import { awaitMigration, cleanUp, createMigration, logOf } from "./moves.ts";
import { reachFromHost } from "./node-control.ts";
import {
  apply,
  clients,
  cluster,
  kubectl,
  podReady,
  sharedEdgeNode,
  waitForPod,
} from "./support.ts";

const ID = "runtimes";
const ns = () => cluster().appNamespace;
const EDGE = "edge-1";
const CLOUD = "cloud-1";
const OLD = "edge-old";
const NORESTORE = "cloud-norestore";
const address = (name: string) => {
  const a = cluster().nodes.find((n) => n.name === name);
  if (!a) throw new Error(`the cluster has no node ${name}`);
  return a;
};
const tolerateTestNodes = [{ key: RUNTIME_TEST_TAINT, operator: "Exists", effect: "NoSchedule" }];
const COUNTER = 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done';

/**
 * A root busybox pod (CRIU dumps only root's processes here) that the EdgeNode
 * selects, as a hand-written Migration requires, and that the decision engine
 * leaves alone: its scripts sleep between lines, far below the CPU trigger.
 * `tolerate` lets it (and its restored copy) onto the tainted cloud-norestore,
 * for the tests that ask for that node by name.
 */
function pod(name: string, node: string, script: string, tolerate = false): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: ns(),
      labels: { app: name, test: ID },
    },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 1,
      tolerations: tolerate ? tolerateTestNodes : [],
      containers: [
        {
          name: "main",
          image: "busybox:1.37",
          imagePullPolicy: "IfNotPresent",
          command: ["sh", "-c", script],
          resources: {
            requests: { cpu: "10m", memory: "16Mi" },
            limits: { cpu: "500m", memory: "128Mi" },
          },
        },
      ],
    },
  };
}

/** Waits until the EdgeNode's status satisfies `ok` (the operator reconciles on every Node change). */
function edgeNodeWhere(what: string, ok: (en: EdgeNode) => boolean): Promise<EdgeNode> {
  return waitUntil(
    `EdgeNode status: ${what}`,
    async () => {
      const en = await sharedEdgeNode();
      return ok(en) ? en : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

const ticks = (log: string) =>
  log
    .split("\n")
    .map((l) => /^tick (\d+)$/.exec(l)?.[1])
    .filter((x) => x !== undefined)
    .map(Number);

async function tickOf(name: string): Promise<number> {
  return ticks(await logOf(ns(), name)).at(-1) ?? 0;
}

/** The original keeps running and advancing: same uid, no restart, its counter goes on. */
async function expectStillRunning(before: V1Pod): Promise<void> {
  const name = before.metadata?.name ?? "";
  const now = await clients().core.readNamespacedPod({ namespace: ns(), name });
  expect(now.metadata?.uid).toBe(before.metadata?.uid);
  expect(now.metadata?.deletionTimestamp).toBeUndefined();
  expect(now.status?.phase).toBe("Running");
  expect(now.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  const t0 = await tickOf(name);
  await waitUntil(
    `${name} to count on`,
    async () => ((await tickOf(name)) > t0 ? true : undefined),
    {
      timeoutMs: 20_000,
      intervalMs: 250,
    },
  );
}

async function podsOfTest(app: string): Promise<V1Pod[]> {
  return (
    await clients().core.listNamespacedPod({ namespace: ns(), labelSelector: `app=${app}` })
  ).items.filter((p) => !p.metadata?.deletionTimestamp);
}

describe("runtimes that cannot checkpoint or restore, on real nodes", () => {
  const migrations: string[] = [];
  let dir = "";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "edgeshift-runtimes-"));
  });

  afterAll(async () => {
    await cleanUp(ns(), ID, migrations);
    await kubectl(["delete", "node", "fake-crio-edge", "fake-crio-cloud", "--ignore-not-found"]);
    await kubectl(["annotate", "node", NORESTORE, `${CHECKPOINT_RESTORE_ANNOTATION}-`]).catch(
      () => "",
    );
    await rm(dir, { recursive: true, force: true });
  }, 180_000);

  it("containerd 1.7 answers the kubelet's checkpoint call with not implemented (the agent's identity, its client)", async () => {
    await apply(pod("rt-sleeper", OLD, "sleep 3600"));
    const sleeper = await waitForPod(ns(), "rt-sleeper", "Ready", podReady);
    expect(sleeper.spec?.nodeName).toBe(OLD);
    const node = await clients().core.readNode({ name: OLD });
    expect(node.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\/v?1\.7\.35$/);

    // What the agent on edge-old holds: its EdgeNode's ServiceAccount's token (create nodes/checkpoint).
    const tr = await clients().core.createNamespacedServiceAccountToken({
      name: agentName(cluster().edgeNode),
      namespace: SYSTEM_NAMESPACE,
      body: { spec: { expirationSeconds: 600, audiences: [] } },
    });
    const cl = clients().kc.getCurrentCluster();
    const ca = Buffer.from(cl?.caData ?? "", "base64").toString("utf8");
    const relay = await reachFromHost(address(OLD).ip, 10250, dir);
    try {
      let err: unknown;
      await checkpoint(
        { namespace: ns(), pod: "rt-sleeper", container: "main" },
        {
          host: "127.0.0.1",
          port: relay.port,
          servername: OLD,
          token: tr.status?.token ?? "",
          ca,
          timeoutSeconds: 30,
        },
      ).catch((e: unknown) => {
        err = e;
      });
      expect(err).toBeInstanceOf(CheckpointError);
      const e = err as CheckpointError;
      console.log(`[measure] kubelet on ${OLD} (containerd 1.7.35): ${e.message}`);
      expect(e.reason).toBe("RuntimeUnsupported");
      expect(e.message).toMatch(/method CheckpointContainer not implemented/);
    } finally {
      await relay.close();
    }
    // Nothing was written on the node.
    const archives = await readdir(nodeHandle(address(OLD)).checkpointDir).catch(() => []);
    expect(archives.filter((f) => f.includes("rt-sleeper"))).toEqual([]);
  });

  it("the EdgeNode's preflight names edge-old (cannot checkpoint) and cloud-norestore (restore unconfirmed)", async () => {
    const en = await edgeNodeWhere(
      "edge-old and cloud-norestore reported",
      (e) =>
        (e.status?.nodes ?? []).some((n) => n.name === OLD) &&
        (e.status?.cloudNodes ?? []).some((n) => n.name === NORESTORE),
    );
    const cond = en.status?.conditions?.find((c) => c.type === "CheckpointSupported");
    console.log(`[measure] CheckpointSupported ${cond?.status} ${cond?.reason}: ${cond?.message}`);
    expect(cond?.status).toBe("False");
    expect(cond?.reason).toBe("SomeNodesUnsupported");
    expect(cond?.message).toMatch(
      /1 of 2 nodes cannot checkpoint: edge-old \(containerd:\/\/v?1\.7\.35\)/,
    );
    expect(cond?.message).toContain(`cloud node not picked for a checkpoint restore: ${NORESTORE}`);
    expect(cond?.message).not.toContain(`${EDGE} (`);
    const byName = (list: NodeRuntimeStatus[] | undefined, n: string) =>
      list?.find((x) => x.name === n);
    expect(byName(en.status?.nodes, OLD)).toMatchObject({
      checkpoint: false,
      restore: false,
      restoreTargets: 0,
    });
    expect(byName(en.status?.nodes, OLD)?.message).toMatch(
      /does not implement CheckpointContainer/,
    );
    expect(byName(en.status?.nodes, EDGE)).toMatchObject({ checkpoint: true, restoreTargets: 1 });
    expect(en.status?.checkpointCapableNodes).toBe(1);
    expect(en.status?.runtimeSupport).toBe("1/2 nodes");
    expect(byName(en.status?.cloudNodes, CLOUD)).toMatchObject({ restore: true });
    const nr = byName(en.status?.cloudNodes, NORESTORE);
    expect(nr?.restore).toBe(false);
    console.log(`[measure] cloudNodes[${NORESTORE}]: ${nr?.message}`);
    expect(nr?.message).toContain("restore unconfirmed");
    expect(nr?.message).toContain(
      `kubectl annotate node ${NORESTORE} ${CHECKPOINT_RESTORE_ANNOTATION}=enabled`,
    );
  });

  it("fails a Migration from edge-old without fallback before anything is checkpointed; the original runs on", async () => {
    await apply(pod("rt-old-counter", OLD, COUNTER));
    const before = await waitForPod(ns(), "rt-old-counter", "Ready", podReady);
    migrations.push("rt-old-nofallback");
    await createMigration(ns(), "rt-old-nofallback", {
      podName: "rt-old-counter",
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
    });
    const m = await awaitMigration(ns(), "rt-old-nofallback");
    console.log(`[measure] ${m.status?.failureReason}: ${m.status?.message}`);
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("RuntimeUnsupported");
    expect(m.status?.message).toMatch(
      /^cannot checkpoint on edge-old: containerd 1\.x does not implement CheckpointContainer/,
    );
    expect(m.status?.timestamps?.checkpointStarted).toBeUndefined();
    expect(m.status?.restoredPod).toBeUndefined();
    expect((await podsOfTest("rt-old-counter")).map((p) => p.metadata?.name)).toEqual([
      "rt-old-counter",
    ]);
    await expectStillRunning(before);
  });

  it("moves a Job's pod from edge-old under the restart policy when fallback is on; the Job completes on cloud-1", async () => {
    const batch = clients().kc.makeApiClient(BatchV1Api);
    const job = pod(
      "rt-old-job",
      OLD,
      'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo "step $i on $(hostname)"; sleep 0.25; done',
    ) as { metadata: { labels: Record<string, string> }; spec: V1PodSpec };
    await batch.createNamespacedJob({
      namespace: ns(),
      body: {
        metadata: { name: "rt-old-job", labels: { test: ID } },
        spec: {
          backoffLimit: 0,
          template: {
            metadata: {
              labels: { ...job.metadata.labels, app: "rt-old-job" },
            },
            spec: { ...job.spec, restartPolicy: "Never" },
          },
        },
      },
    });
    const orig = await waitUntil(
      "the Job's pod Ready on edge-old",
      async () => (await podsOfTest("rt-old-job")).find((p) => podReady(p)),
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    migrations.push("rt-old-fallback");
    await createMigration(ns(), "rt-old-fallback", {
      podName: orig.metadata?.name ?? "",
      restorePolicy: "checkpoint",
      fallbackToRestart: true,
    });
    const m = await awaitMigration(ns(), "rt-old-fallback");
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("restart");
    expect(m.status?.sourceNode).toBe(OLD);
    expect(m.status?.targetNode).toBe(CLOUD);
    expect(m.status?.timestamps?.checkpointStarted).toBeUndefined();
    const why = m.status?.conditions?.find((c) => c.type === "Checkpointed");
    console.log(`[measure] Checkpointed ${why?.status} ${why?.reason}: ${why?.message}`);
    expect(why).toMatchObject({ status: "False", reason: "FellBackToRestart" });
    expect(why?.message).toMatch(/^fell back to restart: containerd 1\.x does not implement/);
    const done = await waitUntil(
      "the Job Complete",
      async () => {
        const j = await batch.readNamespacedJob({ namespace: ns(), name: "rt-old-job" });
        return j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True")
          ? j
          : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    expect(done.status?.succeeded).toBe(1);
    expect(done.status?.failed ?? 0).toBe(0);
    const restored = await clients().core.readNamespacedPod({
      namespace: ns(),
      name: m.status?.restoredPod ?? "",
    });
    expect(restored.spec?.nodeName).toBe(CLOUD);
    expect(restored.status?.phase).toBe("Succeeded");
    // Restarted from the image: it counted again from 1, to the end, on cloud-1.
    const log = await logOf(ns(), restored.metadata?.name ?? "");
    expect(log).toMatch(/^step 1 on /);
    expect(log.trim().split("\n").at(-1)).toMatch(/^step 40 on /);
  });

  it("refuses spec.targetNode cloud-norestore before any checkpoint, and falls back to restart there when allowed", async () => {
    await apply(pod("rt-counter", EDGE, COUNTER, true));
    const before = await waitForPod(ns(), "rt-counter", "Ready", podReady);
    migrations.push("rt-norestore");
    await createMigration(ns(), "rt-norestore", {
      podName: "rt-counter",
      targetNode: NORESTORE,
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
    });
    const m = await awaitMigration(ns(), "rt-norestore");
    console.log(`[measure] ${m.status?.failureReason}: ${m.status?.message}`);
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("NoTarget");
    // The pod tolerates the node's taint: the runtime is the only reason.
    expect(m.status?.message).toMatch(
      /^Target node cloud-norestore: restore unconfirmed: containerd:\/\/v?2\.3\.7 restores checkpoints only with enable_experimental_restore_via_create = true, and the node has no annotation edgeshift\.dev\/checkpoint-restore=enabled$/,
    );
    expect(m.status?.timestamps?.checkpointStarted).toBeUndefined();
    await expectStillRunning(before);

    // With fallback, the same request restarts the pod there instead.
    migrations.push("rt-norestore-fallback");
    await createMigration(ns(), "rt-norestore-fallback", {
      podName: "rt-counter",
      targetNode: NORESTORE,
      restorePolicy: "checkpoint",
      fallbackToRestart: true,
    });
    const f = await awaitMigration(ns(), "rt-norestore-fallback");
    expect(f.status?.phase, f.status?.message).toBe("Succeeded");
    expect(f.status?.policy).toBe("restart");
    expect(f.status?.targetNode).toBe(NORESTORE);
    const why = f.status?.conditions?.find((c) => c.type === "Checkpointed");
    expect(why?.reason).toBe("FellBackToRestart");
    expect(why?.message).toMatch(
      /^fell back to restart: no cloud node can restore the checkpoint \(Target node cloud-norestore: restore unconfirmed/,
    );
    const running = await waitForPod(ns(), f.status?.restoredPod ?? "", "Ready", podReady);
    expect(running.spec?.nodeName).toBe(NORESTORE);
    // Restarted, not restored: its counter began again.
    expect(ticks(await logOf(ns(), f.status?.restoredPod ?? ""))[0]).toBe(1);
  });

  it("shows the real restore failure when the admin wrongly annotates cloud-norestore enabled; the original runs on", async () => {
    await apply(pod("rt-wrong", EDGE, COUNTER, true));
    const before = await waitForPod(ns(), "rt-wrong", "Ready", podReady);
    await waitUntil(
      "rt-wrong to count",
      async () => ((await tickOf("rt-wrong")) >= 5 ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 250,
      },
    );
    await kubectl([
      "annotate",
      "node",
      NORESTORE,
      "--overwrite",
      `${CHECKPOINT_RESTORE_ANNOTATION}=enabled`,
    ]);
    try {
      await edgeNodeWhere(
        "cloud-norestore confirmed by the annotation",
        (e) => e.status?.cloudNodes?.find((n) => n.name === NORESTORE)?.restore === true,
      );
      migrations.push("rt-wrong");
      await createMigration(ns(), "rt-wrong", {
        podName: "rt-wrong",
        targetNode: NORESTORE,
        restorePolicy: "checkpoint",
        fallbackToRestart: false,
      });
      const m = await awaitMigration(ns(), "rt-wrong", 240_000);
      console.log(`[measure] ${m.status?.failureReason}: ${m.status?.message}`);
      expect(m.status?.phase).toBe("Failed");
      expect(m.status?.failureReason).toBe("RestoreFailed");
      expect(m.status?.message).toContain(
        "checkpoint restore via CreateContainer is disabled by configuration",
      );
      // It got as far as a checkpoint and a restored pod, which is gone again.
      expect(m.status?.timestamps?.checkpointed).toBeDefined();
      const restored = m.status?.restoredPod ?? "";
      expect(restored).not.toBe("");
      await waitUntil(
        "the restored pod removed",
        async () =>
          (await podsOfTest("rt-wrong")).some((p) => p.metadata?.name === restored)
            ? undefined
            : true,
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect((await podsOfTest("rt-wrong")).map((p) => p.metadata?.name)).toEqual(["rt-wrong"]);
      await expectStillRunning(before);
    } finally {
      await kubectl(["annotate", "node", NORESTORE, `${CHECKPOINT_RESTORE_ANNOTATION}-`]);
    }
    await edgeNodeWhere("cloud-norestore unconfirmed again", (e) => {
      const n = e.status?.cloudNodes?.find((x) => x.name === NORESTORE);
      return n?.restore === false && (n.message ?? "").includes("restore unconfirmed");
    });
  });

  it("never picks a node of another runtime family: Node objects reporting cri-o://1.36.3", async () => {
    // No CRI-O here: Node objects without a kubelet, tainted so nothing else lands on them.
    const fake = (name: string, role: "edge" | "cloud") => ({
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name,
        labels: {
          [`node-role.edgeshift.dev/${role}`]: "",
          "kubernetes.io/arch": "amd64",
          "kubernetes.io/hostname": name,
        },
      },
      spec: { taints: [{ key: RUNTIME_TEST_TAINT, value: "fake", effect: "NoSchedule" }] },
    });
    const status = {
      status: {
        nodeInfo: {
          containerRuntimeVersion: "cri-o://1.36.3",
          architecture: "amd64",
          kubeletVersion: "v1.37.2",
          operatingSystem: "linux",
          bootID: "",
          kernelVersion: "",
          kubeProxyVersion: "",
          machineID: "",
          osImage: "",
          systemUUID: "",
        },
        allocatable: { cpu: "4", memory: "8Gi", pods: "110" },
        capacity: { cpu: "4", memory: "8Gi", pods: "110" },
      },
    };
    const create = async (name: string, role: "edge" | "cloud") => {
      await apply(fake(name, role));
      await kubectl([
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify(status),
      ]);
    };

    // A CRI-O edge node with only containerd cloud nodes: its checkpoints have nowhere to go.
    await create("fake-crio-edge", "edge");
    let en = await edgeNodeWhere(
      "fake-crio-edge reported with its runtime",
      (e) =>
        e.status?.nodes?.find((n) => n.name === "fake-crio-edge")?.containerRuntime ===
        "cri-o://1.36.3",
    );
    let cond = en.status?.conditions?.find((c) => c.type === "CheckpointSupported");
    console.log(`[measure] CheckpointSupported with a fake CRI-O edge node: ${cond?.message}`);
    expect(cond?.status).toBe("False");
    expect(cond?.message).toContain(
      "1 of 3 nodes have no cloud node that can restore their checkpoints (same runtime family, restore enabled): fake-crio-edge (cri-o://1.36.3)",
    );
    expect(en.status?.nodes?.find((n) => n.name === "fake-crio-edge")).toMatchObject({
      checkpoint: true,
      restoreTargets: 0,
    });

    // A CRI-O cloud node restores CRI-O's checkpoints only: edge-1 still has cloud-1 alone.
    await create("fake-crio-cloud", "cloud");
    en = await edgeNodeWhere(
      "fake-crio-cloud reported as a restore target of fake-crio-edge",
      (e) => e.status?.nodes?.find((n) => n.name === "fake-crio-edge")?.restoreTargets === 1,
    );
    cond = en.status?.conditions?.find((c) => c.type === "CheckpointSupported");
    expect(cond?.message).not.toContain("fake-crio-edge");
    expect(en.status?.nodes?.find((n) => n.name === EDGE)?.restoreTargets).toBe(1);
    expect(en.status?.cloudNodes?.find((n) => n.name === "fake-crio-cloud")?.restore).toBe(true);

    await apply(pod("rt-cross", EDGE, COUNTER, true));
    const before = await waitForPod(ns(), "rt-cross", "Ready", podReady);
    migrations.push("rt-cross");
    await createMigration(ns(), "rt-cross", {
      podName: "rt-cross",
      targetNode: "fake-crio-cloud",
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
    });
    const m = await awaitMigration(ns(), "rt-cross");
    console.log(`[measure] ${m.status?.failureReason}: ${m.status?.message}`);
    expect(m.status?.phase).toBe("Failed");
    expect(m.status?.failureReason).toBe("NoTarget");
    expect(m.status?.message).toMatch(
      /runtime cri-o:\/\/1\.36\.3 cannot restore a checkpoint taken by containerd:\/\/v?2\.3\.7 \(a checkpoint restores only on the runtime family that wrote it\)/,
    );
    expect(m.status?.timestamps?.checkpointStarted).toBeUndefined();
    await expectStillRunning(before);

    await kubectl(["delete", "node", "fake-crio-edge", "fake-crio-cloud"]);
    await edgeNodeWhere(
      "the fake nodes gone from the status",
      (e) =>
        !(e.status?.nodes ?? []).some((n) => n.name.startsWith("fake-")) &&
        !(e.status?.cloudNodes ?? []).some((n) => n.name.startsWith("fake-")),
    );
  });
});
