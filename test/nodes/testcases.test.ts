// The three test-case Jobs of manifests/examples/ end to end on the real nodes.
// Each Job is loaded from its YAML and adapted only to this cluster (namespace,
// pod put on edge-1, shorter runs through the env the workloads read, uid 0
// where CRIU could not dump another user's process here). The pods stay ones
// the EdgeNode selects (a hand-written Migration obeys spec.pods and the
// opt-out annotation, as the decision engine does); the engine, which would
// move these CPU-bound Jobs by itself, is kept away by triggers out of reach
// for the length of this file (see holdDecisions).
// A Migration with the policy the test case names moves it to cloud-1, where
// the Job completes. Progress is what the workloads write, read with
// `kubectl logs`: a restored container's log starts with the original's lines
// (containerd carries the log in the checkpoint), then the restored process's.
import { BatchV1Api } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import {
  EDGENODE_PLURAL,
  type EdgeNode,
  type EdgeNodeSpec,
  GROUP,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { expectedSum, parseTimestamped } from "../demo/handover.ts";
import { loadExampleJob } from "../support/examples.ts";
import {
  at,
  awaitMigration,
  cleanUp,
  createMigration,
  logOf,
  nodesByRole,
  podsOf,
  sampler,
} from "./moves.ts";
import { clients, cluster, kubectl } from "./support.ts";

interface Progress {
  value: number;
  /** The pod the process started in. */
  origin?: string;
  /** The pod it runs in now (its hostname). */
  now?: string;
  /** What must not change across a checkpoint (memory held, checksum). */
  held?: string;
}

interface Case {
  job: string;
  container: string;
  policy: "checkpoint" | "restart";
  env: Record<string, string>;
  parse: (line: string) => Progress | undefined;
  /** Progress to reach on edge-1 before migrating. */
  migrateAt: number;
  /** The log's last line once the Job is done. */
  done: RegExp;
}

const ITERATIONS = 2_000_000;
const cases: Case[] = [
  {
    job: "testcase-restart-policy",
    container: "burn",
    policy: "restart",
    env: { ITERATIONS: String(ITERATIONS), REPORT_EVERY: "20000" },
    parse: (l) => {
      const m = /pod (\S+): iteration (\d+)$/.exec(l);
      return m ? { value: Number(m[2]), now: m[1] } : undefined;
    },
    migrateAt: 200_000,
    done: new RegExp(`^done after ${ITERATIONS} iterations$`),
  },
  {
    job: "testcase-checkpoint-policy",
    container: "hold",
    policy: "checkpoint",
    env: { HOLD_MIB: "16", TICKS: "25" },
    parse: (l) => {
      const m =
        /^tick (\d+): holding (\d+) MiB, checksum (\d+), started in (\S+), now in (\S+)$/.exec(l);
      return m
        ? {
            value: Number(m[1]),
            origin: m[4],
            now: m[5],
            held: `${m[2]} MiB, checksum ${m[3]}`,
          }
        : undefined;
    },
    migrateAt: 4,
    done: /^tick 25: holding 16 MiB, checksum \d+, started in/,
  },
  {
    job: "testcase-checkpoint-cpu-limit",
    container: "compute",
    policy: "checkpoint",
    env: { ITERATIONS: String(ITERATIONS), REPORT_EVERY: "20000" },
    parse: (l) => {
      const m = /progress (\d+), sum (\d+), started in (\S+), now in (\S+)$/.exec(l);
      return m ? { value: Number(m[1]), origin: m[3], now: m[4] } : undefined;
    },
    migrateAt: 200_000,
    // The computation went on correctly after the restore.
    done: new RegExp(
      `^done: sum of squares mod 1e9\\+7 up to ${ITERATIONS} is ${expectedSum(ITERATIONS)}$`,
    ),
  },
];

const progress = (log: string, k: Case): Progress[] =>
  log
    .split("\n")
    .map((l) => k.parse(l))
    .filter((p): p is Progress => p !== undefined);

const NS = () => cluster().appNamespace;
let current: { id: string; migrations: string[] } | undefined;

/**
 * Puts the shared EdgeNode's triggers out of the decision engine's reach: 100 %
 * of the CPU and memory limits in every sample of a full hour (as
 * test/bench/e2e.ts does), so only the test's own Migrations move its pods.
 * Returns what puts the EdgeNode's values back.
 */
async function holdDecisions(): Promise<() => Promise<void>> {
  const { custom } = clients();
  const ref = { group: GROUP, version: VERSION, plural: EDGENODE_PLURAL, name: cluster().edgeNode };
  const keys = ["thresholds", "sustainedWindowSeconds", "breachPercent"] as const;
  const patch = (spec: Partial<EdgeNodeSpec>) =>
    custom.patchClusterCustomObject({
      ...ref,
      // CustomObjectsApi sends a JSON Patch: "add" sets a member, "remove" drops one.
      body: keys.map((k) =>
        spec[k] === undefined
          ? { op: "remove", path: `/spec/${k}` }
          : { op: "add", path: `/spec/${k}`, value: spec[k] },
      ),
    });
  const saved = ((await custom.getClusterCustomObject(ref)) as EdgeNode).spec;
  await patch({
    thresholds: { cpu: { triggerPercent: 100 }, memory: { triggerPercent: 100 } },
    sustainedWindowSeconds: 3600,
    breachPercent: 100,
  });
  return async () => {
    await patch(saved);
  };
}

let releaseDecisions: (() => Promise<void>) | undefined;
beforeAll(async () => {
  releaseDecisions = await holdDecisions();
});
afterAll(async () => {
  await releaseDecisions?.();
});

afterEach(async () => {
  if (current) await cleanUp(NS(), current.id, current.migrations);
  current = undefined;
}, 120_000);

describe("the test-case Jobs of manifests/examples on real nodes", () => {
  it.each(cases)(
    "$job: moves from edge-1 to cloud-1 under $policy and completes there",
    async (k) => {
      const ns = NS();
      const { edge, cloud } = nodesByRole();
      const id = k.job.replace("testcase-", "tc-");
      const migName = id;
      current = { id, migrations: [migName] };
      const { job } = await loadExampleJob(k.job, {
        namespace: ns,
        env: k.env,
        nodeName: edge,
      });
      job.metadata = { ...job.metadata, labels: { ...job.metadata?.labels, test: id } };
      const tpl = job.spec?.template;
      if (tpl) tpl.metadata = { ...tpl.metadata, labels: { ...tpl.metadata?.labels, test: id } };
      await kubectl(["apply", "--server-side", "-f", "-"], stringify(job));

      const jobPods = () => podsOf(ns, `batch.kubernetes.io/job-name=${k.job}`);
      const original = await waitUntil(
        "the Job's pod Running on edge-1",
        async () =>
          (await jobPods()).find((p) => p.spec?.nodeName === edge && p.status?.phase === "Running"),
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      const podName = original.metadata?.name ?? "";
      const lastOnEdge = async () => progress(await logOf(ns, podName, k.container), k).at(-1);
      const started = await waitUntil(
        `progress ${k.migrateAt} on edge-1`,
        async () => {
          const p = await lastOnEdge();
          return p && p.value >= k.migrateAt ? p : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );

      // The original's progress while it moves, to know its value when the dump began.
      const seen = sampler(lastOnEdge, 100);
      let m: Awaited<ReturnType<typeof awaitMigration>>;
      try {
        await createMigration(ns, migName, {
          podName,
          restorePolicy: k.policy,
          fallbackToRestart: false,
        });
        m = await awaitMigration(ns, migName);
      } finally {
        await seen.stop();
      }
      expect(m.status?.phase, `${m.status?.failureReason}: ${m.status?.message}`).toBe("Succeeded");
      expect(m.status?.policy).toBe(k.policy);
      expect(m.status?.sourceNode).toBe(edge);
      expect(m.status?.targetNode).toBe(cloud);
      const restored = m.status?.restoredPod ?? "";
      expect(restored).not.toBe("");

      // The restored process's own lines: under the checkpoint policy the log
      // starts with the original's (carried in the checkpoint, all written
      // before the dump ended); the rest the runtime received after it.
      const since = k.policy === "checkpoint" ? at(m.status?.timestamps?.checkpointed) : 0;
      const own = await waitUntil(
        "progress written on cloud-1",
        async () => {
          const lines = parseTimestamped(
            await kubectl(["-n", ns, "logs", restored, "-c", k.container, "--timestamps"]),
          ).flatMap((l) => {
            const p = k.parse(l.text);
            return p ? [{ at: l.at, p }] : [];
          });
          const mine = lines.filter((x) => x.at > since).map((x) => x.p);
          return mine.length > 0 ? { lines: lines.map((x) => x.p), mine } : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      const first = own.mine[0] as Progress;
      let before: Progress;
      if (k.policy === "checkpoint") {
        // State kept: the process goes on from where it was when the dump began.
        expect(m.status?.containers?.[0]?.image).toMatch(/@sha256:[0-9a-f]{64}$/);
        before = seen.before(at(m.status?.timestamps?.checkpointStarted)) ?? started;
        expect(before.value).toBeGreaterThanOrEqual(k.migrateAt);
        expect(first.value).toBeGreaterThanOrEqual(before.value);
        expect(first.origin).toBe(podName);
        expect(first.held).toBe(started.held);
        // CRIU restores the process's own UTS namespace: it still calls itself
        // by the original pod's name.
        expect(first.now).toBe(podName);
        // The carried-over log is the original's, from its start.
        expect(own.lines[0]?.value).toBeLessThanOrEqual(started.value);
      } else {
        // State not kept: a new process on cloud-1 counts from zero again.
        expect(m.status?.containers?.[0]?.image).toBeUndefined();
        before = seen.samples.at(-1)?.v ?? started;
        expect(first.now).toBe(restored);
        expect(first.value).toBe(Number(k.env.REPORT_EVERY));
        expect(first.value).toBeLessThan(before.value);
      }

      // The Job completes with the pod on cloud-1, and only that pod.
      const batch = clients().kc.makeApiClient(BatchV1Api);
      const done = await waitUntil(
        `Job ${k.job} to finish`,
        async () => {
          const j = await batch.readNamespacedJob({ namespace: ns, name: k.job });
          const c = j.status?.conditions?.find(
            (x) => (x.type === "Complete" || x.type === "Failed") && x.status === "True",
          );
          return c ? { j, c } : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 500 },
      );
      expect(done.c.type, `${done.c.reason}: ${done.c.message}`).toBe("Complete");
      expect(done.j.status?.succeeded).toBe(1);
      expect(done.j.status?.failed ?? 0).toBe(0);
      const pods = await jobPods();
      expect(pods.map((p) => [p.metadata?.name, p.spec?.nodeName, p.status?.phase])).toEqual([
        [restored, cloud, "Succeeded"],
      ]);
      const last = (await logOf(ns, restored, k.container)).trim().split("\n").at(-1);
      expect(last).toMatch(k.done);
      console.log(
        `[measure] ${k.job} (${k.policy}): ${podName} on ${edge} at ${before.value} when the dump began, ${restored} on ${cloud} first wrote ${first.value}, then "${last}"; migration ${m.status?.duration}`,
      );
    },
    420_000,
  );
});
