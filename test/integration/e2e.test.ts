// End to end with real CRIU: the checkpoint policy through every component,
// with nothing stood in for the container runtime. An edge and a cloud
// simulated node (test/sim/node.ts: kubelet + CRI-O over runc and CRIU) are
// registered with the real control plane; a counter workload runs on the
// edge node; a hand-written Migration makes the operator have the edge agent
// checkpoint it through the edge node's kubelet endpoint (a real CRIU dump
// into a CRI-O archive), push it to the real registry as an OCI image, and
// create the restored pod, which the scheduler binds to the cloud node, whose
// simulated CRI-O pulls the image and `runc restore`s it. The workload must
// continue from its checkpointed counter, not from zero.
import { open, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AppsV1Api, DiscoveryV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { monitorName } from "../../operator/monitor/inject.ts";
import { waitUntil } from "../cluster/process.ts";
import { type SimAgent, startSimAgent } from "../sim/agent.ts";
import { SimNode } from "../sim/node.ts";
import { counterPod, podProgress } from "../sim/pods.ts";
import { ensureSimTools } from "../sim/setup.ts";
import type { CounterProgress } from "../sim/workloads.ts";
import { adminClients, type Clients, createNamespace } from "../support/objects.ts";
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
const registry = inject("registry");
const NS = "e2e-apps";
const G = "test.edgeshift.dev/group";
const REPO = `${registry.host}/edgeshift/e2e`;
const EDGE = "e2e-edge";
const CLOUD = "e2e-cloud";
const EDGE_R = "e2e-edge-restart";

let c: Clients;
let edge: SimNode | undefined;
let cloud: SimNode | undefined;
let edgeRestart: SimNode | undefined;
let agent: SimAgent | undefined;
let op: RunningOperator | undefined;
let saKubeconfig: string | undefined;

const podsWith = async (selector: string) =>
  (await c.core.listNamespacedPod({ namespace: NS, labelSelector: selector })).items.filter(
    (p: V1Pod) => !p.metadata?.deletionTimestamp,
  );
const getMig = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name,
  })) as Migration;

beforeAll(async () => {
  c = adminClients(kubeconfig);
  const tools = await ensureSimTools();
  await installOperatorRbac(kubectl, kubeconfig);
  await createNamespace(c, NS);
  const registries = {
    [registry.host]: { username: registry.username, password: registry.password, insecure: true },
  };
  // Only the test's namespace: the agent DaemonSet's pod stays Pending (the agent runs as a process).
  const namespaces = [NS];
  edge = await SimNode.start({
    kubeconfig,
    name: EDGE,
    labels: { [G]: EDGE },
    tools,
    registries,
    namespaces,
  });
  edgeRestart = await SimNode.start({
    kubeconfig,
    name: EDGE_R,
    labels: { [G]: EDGE_R },
    tools,
    registries,
    namespaces,
  });
  cloud = await SimNode.start({
    kubeconfig,
    name: CLOUD,
    labels: { [G]: CLOUD },
    tools,
    registries,
    namespaces,
  });
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "EdgeNode",
      metadata: { name: "e2e" },
      spec: {
        nodeSelector: { matchLabels: { [G]: EDGE } },
        pods: { namespaces: [NS] },
        // 70 %: the decision test's counter (0.5 core limit) sits at 90-100 % of its
        // limit, while the other counters (no limit: 1 of the node's 4 cores) stay at 25 %.
        thresholds: { cpu: { triggerPercent: 70 } },
        samplingIntervalSeconds: 1,
        sustainedWindowSeconds: 3,
        breachPercent: 80,
        // Each test migrates from the same edge node: no pause between migrations.
        cooldownSeconds: 0,
        cloud: { nodeSelector: { matchLabels: { [G]: CLOUD } } },
        restorePolicy: "checkpoint",
        fallbackToRestart: false,
        registry: { repository: REPO, insecure: true },
      },
    },
  });
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "EdgeNode",
      metadata: { name: "e2e-restart" },
      spec: {
        nodeSelector: { matchLabels: { [G]: EDGE_R } },
        pods: { namespaces: [NS] },
        thresholds: { cpu: { triggerPercent: 90 } },
        cooldownSeconds: 0,
        cloud: { nodeSelector: { matchLabels: { [G]: CLOUD } } },
        restorePolicy: "restart",
        registry: { repository: REPO, insecure: true },
      },
    },
  });
  agent = await startSimAgent({
    kubeconfig,
    node: edge,
    edgeNode: "e2e",
    repository: REPO,
    registry,
  });
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  op = await startOperator({ name: "e2e-op", kubeconfig: saKubeconfig, natsUrl });
}, 180_000);

afterAll(async () => {
  const errors: unknown[] = [];
  const attempt = async (f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (err) {
      errors.push(err);
    }
  };
  if (op) {
    const o = op;
    await attempt(() => o.kill());
    await attempt(() => o.cleanup());
  }
  if (agent) await attempt(() => (agent as SimAgent).stop());
  for (const en of ["e2e", "e2e-restart"]) {
    await attempt(() =>
      c.custom.deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: "edgenodes",
        name: en,
      }),
    );
  }
  // The nodes still run: they stop the pods' containers and remove the pods.
  await attempt(() => c.core.deleteNamespace({ name: NS }));
  await attempt(() =>
    waitUntil(
      "the namespace's pods to go",
      async () =>
        (await c.core.listNamespacedPod({ namespace: NS })).items.length === 0 ? true : undefined,
      { timeoutMs: 20_000, intervalMs: 200 },
    ),
  );
  for (const n of [edge, edgeRestart, cloud]) if (n) await attempt(() => n.close());
  if (saKubeconfig) {
    const p = saKubeconfig;
    await attempt(() => rm(dirname(p), { recursive: true, force: true }));
  }
  if (errors.length > 0) console.error("e2e cleanup:", errors);
}, 60_000);

describe("end to end with real CRIU (simulated edge and cloud nodes)", () => {
  it("migrates a counter from the edge node to the cloud node with its in-memory progress", async () => {
    if (!edge || !cloud) throw new Error("nodes not started");
    const edgeNode = edge;
    const cloudNode = cloud;
    await c.core.createNamespacedPod({
      namespace: NS,
      body: counterPod("counter", EDGE, { labels: { app: "counter" }, memoryMb: 16 }),
    });
    const original = await waitUntil(
      "the counter Running on the edge node",
      async () => {
        const p = await c.core.readNamespacedPod({ namespace: NS, name: "counter" });
        return p.status?.phase === "Running" ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const originalUid = original.metadata?.uid;
    const started = await waitUntil(
      "the counter's first progress",
      async () => {
        const p = await podProgress(c, edgeNode, NS, "counter");
        return p && p.heldMb === 16 && p.counter > 0 ? p : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );

    // The operator's monitor runs in the workload's PID namespace during the checkpoint.
    await waitUntil(
      "the monitor running next to the counter",
      async () => (edgeNode.ephemeralRunning(NS, "counter", monitorName("app")) ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );

    // Sample the original's progress while the migration runs, to know the
    // value at checkpoint time (the source keeps running after the dump).
    const samples: { at: number; p: CounterProgress }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const p = await podProgress(c, edgeNode, NS, "counter").catch(() => undefined);
        if (p) samples.push({ at: Date.now(), p });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    await c.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      body: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "Migration",
        metadata: { name: "counter" },
        spec: { podName: "counter" },
      },
    });

    // The restored pod's first publication, read as soon as it appears.
    let firstRestored: CounterProgress | undefined;
    let restoredName: string | undefined;
    let m: Migration;
    // Phase changes as observed here (the status timestamps have 1 s resolution).
    const created = Date.now();
    const phaseAt: Record<string, number> = {};
    try {
      m = await waitUntil(
        "the Migration to finish",
        async () => {
          if (!firstRestored) {
            const r = (await podsWith("app=counter")).find(
              (p) => p.metadata?.name !== "counter" && p.spec?.nodeName === CLOUD,
            );
            if (r?.metadata?.name) {
              restoredName = r.metadata.name;
              firstRestored = await podProgress(c, cloudNode, NS, restoredName).catch(
                () => undefined,
              );
            }
          }
          const x = await getMig("counter");
          const phase = x.status?.phase;
          if (phase && phaseAt[phase] === undefined) phaseAt[phase] = Date.now() - created;
          return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 20 },
      );
    } finally {
      sampling = false;
      await sampler;
    }
    if (m.status?.phase !== "Succeeded") {
      console.error("edge node:", edgeNode.errors, "cloud node:", cloudNode.errors);
      console.error(await agent?.logs());
    }
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("checkpoint");
    expect(m.status?.targetNode).toBe(CLOUD);
    restoredName ??= m.status?.restoredPod;
    expect(restoredName).toBeDefined();
    const name = restoredName ?? "";
    firstRestored ??= await waitUntil(
      "the restored counter's progress",
      () => podProgress(c, cloudNode, NS, name),
      { timeoutMs: 10_000, intervalMs: 20 },
    );

    // Exactly one real checkpoint on the edge and one real restore on the cloud node.
    expect(edgeNode.errors.filter((e) => e.includes(monitorName("app")))).toEqual([]);
    const cks = edgeNode.checkpoints.filter((x) => x.pod === "counter");
    const rss = cloudNode.restores.filter((x) => x.pod === name);
    expect(cks).toHaveLength(1);
    expect(rss).toHaveLength(1);
    const ck = cks[0];
    const rs = rss[0];
    if (!ck || !rs) throw new Error("no checkpoint or restore recorded");
    expect(rs.image).toBe(m.status?.containers?.[0]?.image);

    // State kept: the restored process is the checkpointed one (same start
    // time) and continues from at least the value it had when the dump began.
    const before = samples.filter((s) => s.at <= ck.startedAt.getTime()).at(-1)?.p ?? started;
    expect(firstRestored.startedAt).toBe(started.startedAt);
    expect(firstRestored.heldMb).toBe(16);
    expect(firstRestored.counter).toBeGreaterThanOrEqual(before.counter);
    const later = await waitUntil(
      "the restored counter to advance",
      async () => {
        const p = await podProgress(c, cloudNode, NS, name);
        return p && p.counter > (firstRestored?.counter ?? 0) ? p : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    expect(later.startedAt).toBe(started.startedAt);

    // It runs on the cloud node, reported Running and Ready; the original is gone.
    const restored = await c.core.readNamespacedPod({ namespace: NS, name });
    expect(restored.spec?.nodeName).toBe(CLOUD);
    expect(restored.status?.phase).toBe("Running");
    expect(restored.status?.containerStatuses?.[0]?.ready).toBe(true);
    expect(cloudNode.container(NS, name, "app")?.restoredFrom).toBe(rs.image);
    await waitUntil(
      "the original pod gone",
      async () => {
        const p = await c.core
          .readNamespacedPod({ namespace: NS, name: "counter" })
          .catch(() => undefined);
        return !p || p.metadata?.uid !== originalUid ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect((await edgeNode.runtime.list()).length).toBe(0);
    expect((await podsWith("app=counter")).map((p) => p.metadata?.name)).toEqual([name]);

    const ts = m.status?.timestamps ?? {};
    const ms = (a?: string, b?: string) => (a && b ? Date.parse(b) - Date.parse(a) : Number.NaN);
    const row = {
      "checkpoint (status) ms": ms(ts.checkpointStarted, ts.checkpointed),
      "CRIU dump ms": Math.round(ck.checkpointMs),
      "dump+archive ms": Math.round(ck.totalMs),
      "frozen ms": Math.round((ck.frozenUs ?? 0) / 1000),
      "push (status) ms": ms(ts.checkpointed, ts.imagePushed),
      "restore (status) ms": ms(ts.restoreStarted, ts.restored),
      "pull+unpack ms": Math.round(rs.pullMs),
      "CRIU restore ms": Math.round(rs.restoreMs),
      "cutover ms": ms(ts.restored, ts.cutOver),
      "total (created->finished) ms": ms(ts.created, ts.finished),
      "checkpoint start -> restored running ms": rs.finishedAt.getTime() - ck.startedAt.getTime(),
      "observed phases ms (since Migration created)": JSON.stringify(phaseAt),
      "archive MiB": Number((ck.archiveBytes / 2 ** 20).toFixed(1)),
      "layer MiB": Number((rs.layerBytes / 2 ** 20).toFixed(1)),
      "counter at checkpoint": before.counter,
      "counter right after restore": firstRestored.counter,
    };
    console.log(`e2e checkpoint migration:\n${JSON.stringify(row, null, 2)}`);
    console.log(`Migration timestamps: ${JSON.stringify(ts)}`);
  }, 150_000);

  it("fails the Migration when the restore cannot work (CRIU refuses the image), leaving the original running and advancing", async () => {
    if (!edge || !cloud) throw new Error("nodes not started");
    const edgeNode = edge;
    const cloudNode = cloud;
    // Damage the pulled checkpoint the way a corrupt image would: CRIU refuses it.
    cloudNode.faults.beforeRestore = async (dir) => {
      await writeFile(join(dir, "inventory.img"), "not a CRIU image");
    };
    try {
      await c.core.createNamespacedPod({
        namespace: NS,
        body: counterPod("counter2", EDGE, { labels: { app: "counter2" } }),
      });
      await waitUntil(
        "counter2 progress",
        async () => {
          const p = await podProgress(c, edgeNode, NS, "counter2").catch(() => undefined);
          return p && p.counter > 0 ? p : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      const uid = (await c.core.readNamespacedPod({ namespace: NS, name: "counter2" })).metadata
        ?.uid;
      await c.custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS,
        body: {
          apiVersion: "edgeshift.dev/v1alpha1",
          kind: "Migration",
          metadata: { name: "counter2" },
          spec: { podName: "counter2" },
        },
      });
      const m = await waitUntil(
        "the Migration to finish",
        async () => {
          const x = await getMig("counter2");
          return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 50 },
      );
      console.log(
        `failed restore: reason ${m.status?.failureReason}, message ${JSON.stringify(m.status?.message)}`,
      );
      expect(m.status?.phase).toBe("Failed");
      expect(JSON.stringify(m.status)).toMatch(/CreateContainerError/);
      // The restore really was attempted on the cloud node, and left no container there.
      expect(cloudNode.errors.some((e) => /CreateContainerError.*runc restore/.test(e))).toBe(true);
      expect((await cloudNode.runtime.list()).filter((x) => x.id.startsWith("counter2"))).toEqual(
        [],
      );
      // The original still runs on the edge node and its counter advances.
      const orig = await c.core.readNamespacedPod({ namespace: NS, name: "counter2" });
      expect(orig.metadata?.uid).toBe(uid);
      expect(orig.spec?.nodeName).toBe(EDGE);
      expect(orig.status?.phase).toBe("Running");
      const now = (await podProgress(c, edgeNode, NS, "counter2"))?.counter ?? 0;
      await waitUntil(
        "the original's counter to advance",
        async () =>
          ((await podProgress(c, edgeNode, NS, "counter2"))?.counter ?? 0) > now ? true : undefined,
        { timeoutMs: 10_000, intervalMs: 50 },
      );
    } finally {
      cloudNode.faults.beforeRestore = undefined;
    }
  }, 150_000);

  it("decides through the monitor: a counter at its CPU limit (0.5 core) breaches, the operator migrates it, and it continues on the cloud node", async () => {
    if (!edge || !cloud) throw new Error("nodes not started");
    const edgeNode = edge;
    const cloudNode = cloud;
    // The earlier tests' counters spin too: remove them so they do not compete for CPU.
    await c.core.deleteCollectionNamespacedPod({ namespace: NS });
    await waitUntil(
      "the earlier pods gone",
      async () =>
        (await c.core.listNamespacedPod({ namespace: NS })).items.length === 0 ? true : undefined,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    // Half a core: the counter uses all of its quota even on a busy machine.
    await c.core.createNamespacedPod({
      namespace: NS,
      body: counterPod("busy", EDGE, { labels: { app: "busy" }, cpuLimit: "500m" }),
    });
    const started = await waitUntil(
      "busy progress",
      async () => {
        const p = await podProgress(c, edgeNode, NS, "busy").catch(() => undefined);
        return p && p.counter > 0 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    const t0 = Date.now();
    await waitUntil(
      "the monitor running next to busy",
      async () => (edgeNode.ephemeralRunning(NS, "busy", monitorName("app")) ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    const monitorAt = Date.now() - t0;
    const samples: { at: number; p: CounterProgress }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const p = await podProgress(c, edgeNode, NS, "busy").catch(() => undefined);
        if (p) samples.push({ at: Date.now(), p });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    let mig: Migration;
    let decidedAt: number;
    try {
      const name = await waitUntil(
        "the operator's Migration of busy",
        async () => {
          const list = (await c.custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: MIGRATION_PLURAL,
            namespace: NS,
          })) as { items: Migration[] };
          return list.items.find((x) => x.spec.podName === "busy")?.metadata.name;
        },
        { timeoutMs: 60_000, intervalMs: 50 },
      ).catch(async (err: unknown) => {
        console.error("monitor log:", await edgeNode.ephemeralLog(NS, "busy", monitorName("app")));
        console.error("edge node:", edgeNode.errors);
        const all = (await c.custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
        })) as { items: Migration[] };
        console.error(
          "migrations:",
          JSON.stringify(
            all.items.map((x) => [
              x.metadata.name,
              x.metadata.labels,
              x.status?.phase,
              x.status?.edgeNode,
            ]),
          ),
        );
        console.error(
          "operator log:",
          (await op?.logs())
            ?.split("\n")
            .filter((l) => /"controller":"decision"|busy|counter2/i.test(l))
            .slice(-60)
            .join("\n"),
        );
        throw err;
      });
      decidedAt = Date.now() - t0;
      mig = await waitUntil(
        "the decided Migration to finish",
        async () => {
          const x = await getMig(name);
          return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 50 },
      );
    } finally {
      sampling = false;
      await sampler;
    }
    if (mig.status?.phase !== "Succeeded") {
      console.error("edge node:", edgeNode.errors, "cloud node:", cloudNode.errors);
      console.error(await edgeNode.ephemeralLog(NS, "busy", monitorName("app")));
    }
    expect(mig.status?.phase, mig.status?.message).toBe("Succeeded");
    expect(mig.spec.reason?.value).toBeGreaterThan(70);
    const restoredName = mig.status?.restoredPod ?? "";
    const restored = await c.core.readNamespacedPod({ namespace: NS, name: restoredName });
    expect(restored.spec?.nodeName).toBe(CLOUD);
    const ck = edgeNode.checkpoints.find((x) => x.pod === "busy");
    if (!ck) throw new Error("no checkpoint of busy");
    const before = samples.filter((s) => s.at <= ck.startedAt.getTime()).at(-1)?.p ?? started;
    const after = await waitUntil(
      "the restored busy counter",
      () => podProgress(c, cloudNode, NS, restoredName),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    expect(after.startedAt).toBe(started.startedAt);
    expect(after.counter).toBeGreaterThanOrEqual(before.counter);
    const ts = mig.status?.timestamps ?? {};
    console.log(
      `decision path: monitor up ${monitorAt} ms, Migration created ${decidedAt} ms after the workload ran (breach window 3 s, reason ${JSON.stringify(mig.spec.reason)}), migration ${ts.created} -> ${ts.finished}; counter at checkpoint ${before.counter}, after restore ${after.counter}`,
    );
  }, 180_000);

  it("restart policy: the workload starts again from zero on the cloud node (state not kept)", async () => {
    if (!edgeRestart || !cloud) throw new Error("nodes not started");
    const edgeNode = edgeRestart;
    const cloudNode = cloud;
    await c.core.createNamespacedPod({
      namespace: NS,
      body: counterPod("fresh", EDGE_R, { labels: { app: "fresh" } }),
    });
    const before = await waitUntil(
      "fresh progress",
      async () => {
        const p = await podProgress(c, edgeNode, NS, "fresh").catch(() => undefined);
        return p && p.counter > 5000 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    await c.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      body: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "Migration",
        metadata: { name: "fresh" },
        spec: { podName: "fresh" },
      },
    });
    const m = await waitUntil(
      "the restart Migration to finish",
      async () => {
        const x = await getMig("fresh");
        return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 50 },
    );
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    expect(m.status?.policy).toBe("restart");
    const name = m.status?.restoredPod ?? "";
    const restored = await c.core.readNamespacedPod({ namespace: NS, name });
    expect(restored.spec?.nodeName).toBe(CLOUD);
    const first = await waitUntil(
      "the restarted counter's progress",
      () => podProgress(c, cloudNode, NS, name),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    // A new process, started after the Migration was made (the counter starts
    // from 0 in every new process); a checkpoint restore would keep the start time.
    expect(first.startedAt).toBeGreaterThan(before.startedAt);
    expect(first.startedAt).toBeGreaterThanOrEqual(
      Date.parse(m.metadata.creationTimestamp?.toString() ?? "") - 1000,
    );
    expect(edgeNode.checkpoints).toEqual([]);
    expect(cloudNode.restores.filter((r) => r.pod === name)).toEqual([]);
    const ts = m.status?.timestamps ?? {};
    console.log(
      `restart policy: ${ts.created} -> ${ts.finished} (${Date.parse(ts.finished ?? "") - Date.parse(ts.created ?? "")} ms); original counter ${before.counter} (read before the Migration), restarted process started ${first.startedAt - before.startedAt} ms after the original, counter ${first.counter} when first read after the Migration finished`,
    );
  }, 150_000);

  it("moves a Deployment's counter with its state, and the Service's endpoints follow to the cloud pod", async () => {
    if (!edge || !cloud) throw new Error("nodes not started");
    const edgeNode = edge;
    const cloudNode = cloud;
    const apps = c.kc.makeApiClient(AppsV1Api);
    const discovery = c.kc.makeApiClient(DiscoveryV1Api);
    const template = counterPod("unused", EDGE, { labels: { app: "web" } });
    await apps.createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: "web" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: {
              ...template.spec,
              containers: template.spec?.containers ?? [],
              restartPolicy: "Always",
            },
          },
        },
      },
    });
    await c.core.createNamespacedService({
      namespace: NS,
      body: {
        metadata: { name: "web" },
        spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    const endpoints = async () =>
      (
        await discovery.listNamespacedEndpointSlice({
          namespace: NS,
          labelSelector: "kubernetes.io/service-name=web",
        })
      ).items
        .flatMap((sl) => sl.endpoints ?? [])
        .filter((e) => e.conditions?.ready)
        .flatMap((e) => e.addresses)
        .sort();
    const [orig] = await waitUntil(
      "the Deployment's pod running",
      async () => {
        const p = (await podsWith("app=web")).filter((x) => x.status?.phase === "Running");
        return p.length === 1 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const origName = orig?.metadata?.name ?? "";
    await waitUntil(
      "the Service's endpoint on the edge pod",
      async () => ((await endpoints()).join() === orig?.status?.podIP ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const started = await waitUntil(
      "web progress",
      async () => {
        const p = await podProgress(c, edgeNode, NS, origName).catch(() => undefined);
        return p && p.counter > 0 ? p : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    await c.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      body: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "Migration",
        metadata: { name: "web" },
        spec: { podName: origName },
      },
    });
    const m = await waitUntil(
      "the Deployment pod's Migration to finish",
      async () => {
        const x = await getMig("web");
        return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 50 },
    );
    expect(m.status?.phase, m.status?.message).toBe("Succeeded");
    const name = m.status?.restoredPod ?? "";
    const restored = await c.core.readNamespacedPod({ namespace: NS, name });
    expect(restored.spec?.nodeName).toBe(CLOUD);
    expect(restored.metadata?.ownerReferences?.[0]?.kind).toBe("ReplicaSet");
    const after = await waitUntil(
      "the restored web counter",
      () => podProgress(c, cloudNode, NS, name),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    expect(after.startedAt).toBe(started.startedAt);
    expect(after.counter).toBeGreaterThanOrEqual(started.counter);
    await waitUntil(
      "the Service's endpoints on the cloud pod only",
      async () => ((await endpoints()).join() === restored.status?.podIP ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    // Stable: the ReplicaSet keeps exactly the restored replica.
    await new Promise((r) => setTimeout(r, 2000));
    expect((await podsWith("app=web")).map((p) => p.metadata?.name)).toEqual([name]);
    expect(await endpoints()).toEqual([restored.status?.podIP]);
  }, 150_000);

  it("fails the Migration with ErrImagePull when the checkpoint layer is corrupt (digest mismatch), leaving the original running", async () => {
    if (!edge || !cloud) throw new Error("nodes not started");
    const edgeNode = edge;
    const cloudNode = cloud;
    // One byte of the layer flipped after download: the digest check must catch it.
    cloudNode.faults.afterLayerDownload = async (blob) => {
      const fh = await open(blob, "r+");
      try {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, 1000);
        b[0] = (b[0] ?? 0) ^ 0xff;
        await fh.write(b, 0, 1, 1000);
      } finally {
        await fh.close();
      }
    };
    try {
      await c.core.createNamespacedPod({
        namespace: NS,
        body: counterPod("counter3", EDGE, { labels: { app: "counter3" } }),
      });
      await waitUntil(
        "counter3 progress",
        async () => {
          const p = await podProgress(c, edgeNode, NS, "counter3").catch(() => undefined);
          return p && p.counter > 0 ? p : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      await c.custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS,
        body: {
          apiVersion: "edgeshift.dev/v1alpha1",
          kind: "Migration",
          metadata: { name: "counter3" },
          spec: { podName: "counter3" },
        },
      });
      const m = await waitUntil(
        "the Migration to finish",
        async () => {
          const x = await getMig("counter3");
          return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 50 },
      );
      console.log(`corrupt layer: ${m.status?.failureReason}: ${m.status?.message}`);
      expect(m.status?.phase).toBe("Failed");
      expect(m.status?.message).toMatch(/ErrImagePull.*does not match its content/);
      const orig = await c.core.readNamespacedPod({ namespace: NS, name: "counter3" });
      expect(orig.spec?.nodeName).toBe(EDGE);
      expect(orig.status?.phase).toBe("Running");
      const now = (await podProgress(c, edgeNode, NS, "counter3"))?.counter ?? 0;
      await waitUntil(
        "the original's counter to advance",
        async () =>
          ((await podProgress(c, edgeNode, NS, "counter3"))?.counter ?? 0) > now ? true : undefined,
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      expect((await cloudNode.runtime.list()).filter((x) => x.id.startsWith("counter3"))).toEqual(
        [],
      );
    } finally {
      cloudNode.faults.afterLayerDownload = undefined;
    }
  }, 150_000);
});
