// The three test-case Jobs of manifests/examples/ end to end on simulated
// edge and cloud nodes (real runc and CRIU, test/sim/node.ts). Each Job is
// loaded from its YAML and adapted only to this cluster: its namespace, its
// pod pinned to the simulated edge node instead of the real edge-node label,
// and shorter runs through the env the workloads read. A hand-written
// Migration with the policy the test case names moves it to the cloud node,
// where the Job completes. Progress is what the workloads log to stdout: the
// simulated kubelet writes each container's output to <pod dir>/<container>.log.
// Checkpoint cases must continue from at least their value at checkpoint
// time; the restart case must start again from zero.
import { readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BatchV1Api, type V1Job, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { type SimAgent, startSimAgent } from "../sim/agent.ts";
import { SimNode } from "../sim/node.ts";
import { ensureSimTools } from "../sim/setup.ts";
import { adminClients, type Clients, createNamespace } from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  repoRoot,
  serviceAccountKubeconfig,
  startOperator,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const natsUrl = inject("natsUrl");
const registry = inject("registry");
const NS = "testcase-apps";
const G = "test.edgeshift.dev/testcases";
const REPO = `${registry.host}/edgeshift/testcases`;
const EDGE = "tc-edge";
const CLOUD = "tc-cloud";
const EDGENODE = "testcases";

let c: Clients;
let batch: BatchV1Api;
let edge: SimNode | undefined;
let cloud: SimNode | undefined;
let agent: SimAgent | undefined;
let op: RunningOperator | undefined;
let saKubeconfig: string | undefined;

/** The example Job, adapted to the simulated cluster (see the file comment). */
async function loadJob(name: string, env: Record<string, string>): Promise<V1Job> {
  const job = parse(
    await readFile(join(repoRoot, "manifests/examples", `${name}.yaml`), "utf8"),
  ) as V1Job;
  if (job.metadata?.name !== name) throw new Error(`${name}.yaml holds ${job.metadata?.name}`);
  job.metadata.namespace = NS;
  const spec = job.spec?.template.spec;
  const container = spec?.containers[0];
  if (!spec || !container) throw new Error(`${name}: no pod template`);
  // The real edge label is on no simulated node; the restore pod is pinned by the operator.
  // The examples prefer edge nodes by label; here the pod is put on the edge node directly.
  delete spec.affinity;
  spec.nodeName = EDGE;
  for (const [k, v] of Object.entries(env)) {
    const e = container.env?.find((x) => x.name === k);
    if (!e) throw new Error(`${name}: the workload reads no ${k}`);
    e.value = v;
  }
  return job;
}

/** What a container has written to stdout so far on `node` ("" before it runs). */
async function logOf(node: SimNode, pod: string, container: string): Promise<string> {
  const p = await c.core.readNamespacedPod({ namespace: NS, name: pod }).catch(() => undefined);
  const uid = p?.metadata?.uid;
  if (!uid) return "";
  return readFile(join(node.root, "pods", uid, `${container}.log`), "utf8").catch(() => "");
}

interface Progress {
  value: number;
  origin?: string;
  extra?: string;
}

interface Case {
  job: string;
  container: string;
  policy: "checkpoint" | "restart";
  env: Record<string, string>;
  /** Progress in one log line. */
  parse: (line: string) => Progress | undefined;
  /** Progress to reach on the edge node before migrating. */
  migrateAt: number;
  /** The log's last line once the Job is done. */
  done: RegExp;
}

const cases: Case[] = [
  {
    job: "testcase-restart-policy",
    container: "burn",
    policy: "restart",
    // About 20 s at the 500m limit here; a progress line every ~0.1 s.
    env: { ITERATIONS: "4000000", REPORT_EVERY: "20000" },
    parse: (l) => {
      const m = /pod \S+: iteration (\d+)$/.exec(l);
      return m ? { value: Number(m[1]) } : undefined;
    },
    migrateAt: 400_000,
    done: /^done after 4000000 iterations$/,
  },
  {
    job: "testcase-checkpoint-policy",
    container: "hold",
    policy: "checkpoint",
    env: { HOLD_MIB: "16", TICKS: "30" },
    parse: (l) => {
      const m = /^tick (\d+): holding (\d+) MiB, checksum (\d+), started in (\S+), now in/.exec(l);
      return m
        ? { value: Number(m[1]), origin: m[4], extra: `${m[2]} MiB, checksum ${m[3]}` }
        : undefined;
    },
    migrateAt: 4,
    done: /^tick 30: holding 16 MiB, checksum 1, started in/,
  },
  {
    job: "testcase-checkpoint-cpu-limit",
    container: "compute",
    policy: "checkpoint",
    env: { ITERATIONS: "4000000", REPORT_EVERY: "20000" },
    parse: (l) => {
      const m = /progress (\d+), sum (\d+), started in (\S+), now in/.exec(l);
      return m ? { value: Number(m[1]), origin: m[3] } : undefined;
    },
    migrateAt: 400_000,
    // n(n+1)(2n+1)/6 mod 1e9+7 for n = 4e6: the computation went on correctly after the restore.
    done: /^done: sum of squares mod 1e9\+7 up to 4000000 is 611712$/,
  },
];

const progressLines = (log: string, k: Case): Progress[] =>
  log
    .split("\n")
    .map((l) => k.parse(l))
    .filter((p): p is Progress => p !== undefined);

beforeAll(async () => {
  c = adminClients(kubeconfig);
  batch = c.kc.makeApiClient(BatchV1Api);
  const tools = await ensureSimTools();
  await installOperatorRbac(kubectl, kubeconfig);
  await createNamespace(c, NS);
  const registries = {
    [registry.host]: { username: registry.username, password: registry.password, insecure: true },
  };
  const namespaces = [NS];
  edge = await SimNode.start({
    kubeconfig,
    name: EDGE,
    labels: { [G]: "edge" },
    tools,
    registries,
    namespaces,
  });
  cloud = await SimNode.start({
    kubeconfig,
    name: CLOUD,
    labels: { [G]: "cloud" },
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
      metadata: { name: EDGENODE },
      spec: {
        nodeSelector: { matchLabels: { [G]: "edge" } },
        pods: { namespaces: [NS] },
        // Only the hand-written Migrations move pods here: no threshold the workloads reach.
        thresholds: { memory: { triggerPercent: 99 } },
        cooldownSeconds: 0,
        cloud: { nodeSelector: { matchLabels: { [G]: "cloud" } } },
        restorePolicy: "checkpoint",
        fallbackToRestart: false,
        registry: { repository: REPO, insecure: true },
      },
    },
  });
  agent = await startSimAgent({
    kubeconfig,
    node: edge,
    edgeNode: EDGENODE,
    repository: REPO,
    registry,
  });
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  op = await startOperator({ name: "testcases-op", kubeconfig: saKubeconfig, natsUrl });
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
  await attempt(() =>
    c.custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: "edgenodes",
      name: EDGENODE,
    }),
  );
  await attempt(() => c.core.deleteNamespace({ name: NS }));
  await attempt(() =>
    waitUntil(
      "the namespace's pods to go",
      async () =>
        (await c.core.listNamespacedPod({ namespace: NS })).items.length === 0 ? true : undefined,
      { timeoutMs: 20_000, intervalMs: 200 },
    ),
  );
  for (const n of [edge, cloud]) if (n) await attempt(() => n.close());
  if (saKubeconfig) {
    const p = saKubeconfig;
    await attempt(() => rm(dirname(p), { recursive: true, force: true }));
  }
  if (errors.length > 0) console.error("testcases cleanup:", errors);
}, 60_000);

describe("the test-case Jobs of manifests/examples end to end (simulated edge and cloud nodes)", () => {
  it.each(cases)(
    "$job: migrates from the edge node to the cloud node under $policy and completes there",
    async (k) => {
      if (!edge || !cloud) throw new Error("nodes not started");
      const edgeNode = edge;
      const cloudNode = cloud;
      await batch.createNamespacedJob({ namespace: NS, body: await loadJob(k.job, k.env) });
      const podsOfJob = async () =>
        (
          await c.core.listNamespacedPod({
            namespace: NS,
            labelSelector: `batch.kubernetes.io/job-name=${k.job}`,
          })
        ).items.filter((p: V1Pod) => !p.metadata?.deletionTimestamp);
      const original = await waitUntil(
        "the Job's pod Running on the edge node",
        async () =>
          (await podsOfJob()).find(
            (p) => p.spec?.nodeName === EDGE && p.status?.phase === "Running",
          ),
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      const podName = original.metadata?.name ?? "";
      const lastOnEdge = async () =>
        progressLines(await logOf(edgeNode, podName, k.container), k).at(-1);
      const started = await waitUntil(
        "progress on the edge node",
        async () => {
          const p = await lastOnEdge();
          return p && p.value >= k.migrateAt ? p : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50 },
      );

      // The original's progress while the migration runs: its value when the dump began.
      const samples: { at: number; p: Progress }[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const p = await lastOnEdge().catch(() => undefined);
          if (p) samples.push({ at: Date.now(), p });
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const migName = k.job.replace("testcase-", "tc-");
      let m: Migration;
      try {
        await c.custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
          body: {
            apiVersion: "edgeshift.dev/v1alpha1",
            kind: "Migration",
            metadata: { name: migName },
            spec: { podName, restorePolicy: k.policy },
          },
        });
        m = await waitUntil(
          "the Migration to finish",
          async () => {
            const x = (await c.custom.getNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              plural: MIGRATION_PLURAL,
              namespace: NS,
              name: migName,
            })) as Migration;
            return x.status?.phase === "Succeeded" || x.status?.phase === "Failed" ? x : undefined;
          },
          { timeoutMs: 90_000, intervalMs: 50 },
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
      expect(m.status?.policy).toBe(k.policy);
      expect(m.status?.targetNode).toBe(CLOUD);
      const name = m.status?.restoredPod ?? "";
      expect(name).not.toBe("");

      // The first progress the pod on the cloud node logged.
      const first = await waitUntil(
        "progress on the cloud node",
        async () => progressLines(await logOf(cloudNode, name, k.container), k)[0],
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      const cks = edgeNode.checkpoints.filter((x) => x.pod === podName);
      const rss = cloudNode.restores.filter((x) => x.pod === name);
      let before: Progress;
      if (k.policy === "checkpoint") {
        // State kept: the checkpointed process goes on from where it was.
        expect(cks).toHaveLength(1);
        expect(rss).toHaveLength(1);
        const ck = cks[0];
        if (!ck) throw new Error("no checkpoint recorded");
        before = samples.filter((s) => s.at <= ck.startedAt.getTime()).at(-1)?.p ?? started;
        expect(before.value).toBeGreaterThanOrEqual(k.migrateAt);
        expect(first.value).toBeGreaterThanOrEqual(before.value);
        expect(first.origin).toBe(podName);
        expect(first.extra).toBe(started.extra);
        expect(cloudNode.container(NS, name, k.container)?.restoredFrom).toBe(rss[0]?.image);
      } else {
        // State not kept: a new process on the cloud node counts from zero again.
        expect(cks).toEqual([]);
        expect(rss).toEqual([]);
        before = samples.at(-1)?.p ?? started;
        expect(first.value).toBe(Number(k.env.REPORT_EVERY));
        expect(first.value).toBeLessThan(before.value);
        expect(cloudNode.container(NS, name, k.container)?.restoredFrom).toBeUndefined();
      }

      // The Job completes with the pod on the cloud node.
      const job = await waitUntil(
        `Job ${k.job} to finish`,
        async () => {
          const j = await batch.readNamespacedJob({ namespace: NS, name: k.job });
          const done = j.status?.conditions?.find(
            (x) => (x.type === "Complete" || x.type === "Failed") && x.status === "True",
          );
          return done ? { j, done } : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 200 },
      );
      expect(job.done.type, `${job.done.reason}: ${job.done.message}`).toBe("Complete");
      expect(job.j.status?.succeeded).toBe(1);
      const finished = await c.core.readNamespacedPod({ namespace: NS, name });
      expect(finished.spec?.nodeName).toBe(CLOUD);
      expect(finished.status?.phase).toBe("Succeeded");
      const lines = (await logOf(cloudNode, name, k.container)).trim().split("\n");
      expect(lines.at(-1)).toMatch(k.done);
      console.log(
        `${k.job} (${k.policy}): ${podName} on ${EDGE} at ${before.value} when migrated, ${name} on ${CLOUD} first logged ${first.value}, then "${lines.at(-1)}"`,
      );
    },
    240_000,
  );
});
