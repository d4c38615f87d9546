import { performance } from "node:perf_hooks";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { monitorName } from "../../operator/monitor/inject.ts";
import { waitUntil } from "../cluster/process.ts";
import { SimEnvironment } from "../sim/environment.ts";
import { counterPod, podProgress } from "../sim/pods.ts";
import type { CounterProgress } from "../sim/workloads.ts";

const NS = "edgeshift-bench";
const G = "bench.edgeshift.dev/group";
const EDGE = "bench-edge";
const CLOUD = "bench-cloud";
const EDGENODE = "bench";

export type Policy = "checkpoint" | "restart";

/** One migration; durations in ms, undefined when not applicable. */
export interface E2eRun {
  sizeMb: number;
  policy: Policy;
  /** status.timestamps checkpointStarted -> checkpointed. */
  checkpointMs?: number;
  /** status.timestamps checkpointed -> imagePushed. */
  packPushMs?: number;
  /** status.timestamps restoreStarted -> restored. */
  restoreMs?: number;
  /** Migration created (by the bench) -> Succeeded seen by the bench (polled every 20 ms). */
  totalMs: number;
  /** CRIU dump start on the edge node -> first progress reading of the restored pod on the cloud node (polled every 20 ms). */
  downtimeMs?: number;
  /** The restored process is the checkpointed one (same start time, counter not behind). */
  stateKept: boolean;
  /** CRIU dump alone, CRIU restore alone (node records). */
  criuDumpMs?: number;
  criuRestoreMs?: number;
  imageMb?: number;
}

export interface E2eSummary {
  sizeMb: number;
  policy: Policy;
  runs: number;
  checkpointMs?: number;
  packPushMs?: number;
  restoreMs?: number;
  totalMs: number;
  downtimeMs?: number;
  stateKept: boolean;
  criuDumpMs?: number;
  criuRestoreMs?: number;
  imageMb?: number;
}

export function median(xs: (number | undefined)[]): number | undefined {
  const v = xs
    .filter((x): x is number => x !== undefined && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

const between = (a?: string, b?: string): number | undefined => {
  if (!a || !b) return undefined;
  const d = Date.parse(b) - Date.parse(a);
  return Number.isNaN(d) ? undefined : d;
};

export async function runE2eBench(o: {
  sizesMb: number[];
  runs: number;
  log: (m: string) => void;
}): Promise<{ runs: E2eRun[]; summary: E2eSummary[] }> {
  const log = o.log;
  // Never migrates by itself: the counters have no CPU limit (a quarter of the machine
  // at most) and the window is an hour; the bench starts every migration by hand.
  const env = new SimEnvironment({
    name: EDGENODE,
    namespace: NS,
    groupLabel: G,
    decision: {
      thresholds: { cpu: { triggerPercent: 100 } },
      sustainedWindowSeconds: 3600,
      breachPercent: 100,
    },
    log,
  });
  const teardown = async (): Promise<void> => {
    log("tearing down");
    const problems = await env.stop();
    for (const e of problems) log(`teardown: ${e}`);
    if (problems.length === 0) log("everything stopped and removed");
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`received ${signal}`);
    void teardown().finally(() => process.exit(1));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    await env.start();
    const { edge: edgeNode, cloud: cloudNode, clients: c } = env;
    if (!edgeNode || !cloudNode || !c) throw new Error("the simulated environment did not start");

    const getMig = async (name: string) =>
      (await c.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS,
        name,
      })) as Migration;

    const runOne = async (sizeMb: number, policy: Policy, i: number): Promise<E2eRun> => {
      const pod = `c${sizeMb}-${policy === "checkpoint" ? "ck" : "rs"}-${i}`;
      const label = `app=${pod}`;
      await c.core.createNamespacedPod({
        namespace: NS,
        body: counterPod(pod, EDGE, { labels: { app: pod }, memoryMb: sizeMb }),
      });
      const started = await waitUntil(
        `${pod} holding ${sizeMb} MB and counting`,
        async () => {
          const p = await podProgress(c, edgeNode, NS, pod).catch(() => undefined);
          return p && p.heldMb === sizeMb && p.counter > 0 ? p : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      // The operator's monitor joins every edge pod; migrate with it in place, as in production.
      await waitUntil(
        `the monitor next to ${pod}`,
        async () => (edgeNode.ephemeralRunning(NS, pod, monitorName("app")) ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 50 },
      ).catch(() => log(`  (no monitor next to ${pod}; migrating anyway)`));

      // The original's progress, to know its value when the dump began.
      const samples: { at: number; p: CounterProgress }[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const p = await podProgress(c, edgeNode, NS, pod).catch(() => undefined);
          if (p) samples.push({ at: Date.now(), p });
          await new Promise((r) => setTimeout(r, 20));
        }
      })();

      let firstRestored: CounterProgress | undefined;
      let firstRestoredAt = 0;
      let restoredName: string | undefined;
      let m: Migration;
      let totalMs = 0;
      try {
        await c.custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
          body: {
            apiVersion: "edgeshift.dev/v1alpha1",
            kind: "Migration",
            metadata: { name: pod },
            spec: { podName: pod, restorePolicy: policy },
          },
        });
        const t0 = performance.now();
        m = await waitUntil(
          `Migration ${pod} to finish`,
          async () => {
            if (!firstRestored) {
              const r = (
                await c.core.listNamespacedPod({ namespace: NS, labelSelector: label })
              ).items.find((p) => p.metadata?.name !== pod && p.spec?.nodeName === CLOUD);
              if (r?.metadata?.name) {
                restoredName = r.metadata.name;
                firstRestored = await podProgress(c, cloudNode, NS, restoredName).catch(
                  () => undefined,
                );
                if (firstRestored) firstRestoredAt = Date.now();
              }
            }
            const x = await getMig(pod);
            const ph = x.status?.phase;
            if (ph === "Succeeded" || ph === "Failed") {
              totalMs = performance.now() - t0;
              return x;
            }
            return undefined;
          },
          { timeoutMs: 180_000, intervalMs: 20 },
        );
      } finally {
        sampling = false;
        await sampler;
      }
      if (m.status?.phase !== "Succeeded") {
        log(`  edge node errors: ${JSON.stringify(edgeNode.errors.slice(-5))}`);
        log(`  cloud node errors: ${JSON.stringify(cloudNode.errors.slice(-5))}`);
        throw new Error(
          `Migration ${pod} failed: ${m.status?.failureReason ?? ""} ${m.status?.message ?? ""}`,
        );
      }
      restoredName ??= m.status?.restoredPod;
      const name = restoredName ?? "";
      if (!firstRestored) {
        firstRestored = await waitUntil(
          "the restored counter's progress",
          () => podProgress(c, cloudNode, NS, name),
          { timeoutMs: 20_000, intervalMs: 20 },
        );
        firstRestoredAt = Date.now();
      }
      const ts = m.status?.timestamps ?? {};
      const ck = edgeNode.checkpoints.find((x) => x.pod === pod);
      const rs = cloudNode.restores.find((x) => x.pod === name);
      const before =
        (ck ? samples.filter((s) => s.at <= ck.startedAt.getTime()).at(-1)?.p : undefined) ??
        started;
      const stateKept =
        firstRestored.startedAt === started.startedAt && firstRestored.counter >= before.counter;
      const run: E2eRun = {
        sizeMb,
        policy,
        checkpointMs: between(ts.checkpointStarted, ts.checkpointed),
        packPushMs: between(ts.checkpointed, ts.imagePushed),
        restoreMs: between(ts.restoreStarted, ts.restored),
        totalMs,
        downtimeMs: ck ? firstRestoredAt - ck.startedAt.getTime() : undefined,
        stateKept,
        criuDumpMs: ck?.checkpointMs,
        criuRestoreMs: rs?.restoreMs,
        imageMb:
          m.status?.containers?.[0]?.imageSizeBytes !== undefined
            ? (m.status.containers[0].imageSizeBytes ?? 0) / 2 ** 20
            : undefined,
      };
      log(
        `  ${pod}: total ${Math.round(totalMs)} ms, checkpoint ${run.checkpointMs ?? "-"} ms, pack+push ${run.packPushMs ?? "-"} ms, restore ${run.restoreMs ?? "-"} ms, downtime ${run.downtimeMs ?? "-"} ms, state kept ${stateKept} (counter ${before.counter} at dump, ${firstRestored.counter} first read on ${CLOUD})`,
      );

      // Clean up: the Migration, then every pod of the run (restored and any leftover original).
      await c.custom
        .deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
          name: pod,
        })
        .catch(() => undefined);
      await c.core
        .deleteCollectionNamespacedPod({ namespace: NS, labelSelector: label })
        .catch(() => undefined);
      await waitUntil(
        `the pods of ${pod} gone`,
        async () =>
          (await c.core.listNamespacedPod({ namespace: NS, labelSelector: label })).items.length ===
          0
            ? true
            : undefined,
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      return run;
    };

    const runs: E2eRun[] = [];
    const summary: E2eSummary[] = [];
    for (const sizeMb of o.sizesMb) {
      for (const policy of ["checkpoint", "restart"] as const) {
        const mine: E2eRun[] = [];
        for (let i = 0; i < o.runs; i++) {
          log(`${sizeMb} MB, ${policy}, run ${i + 1}/${o.runs}`);
          mine.push(await runOne(sizeMb, policy, i));
        }
        runs.push(...mine);
        summary.push({
          sizeMb,
          policy,
          runs: mine.length,
          checkpointMs: median(mine.map((r) => r.checkpointMs)),
          packPushMs: median(mine.map((r) => r.packPushMs)),
          restoreMs: median(mine.map((r) => r.restoreMs)),
          totalMs: median(mine.map((r) => r.totalMs)) ?? Number.NaN,
          downtimeMs: median(mine.map((r) => r.downtimeMs)),
          stateKept: mine.every((r) => r.stateKept),
          criuDumpMs: median(mine.map((r) => r.criuDumpMs)),
          criuRestoreMs: median(mine.map((r) => r.criuRestoreMs)),
          imageMb: median(mine.map((r) => r.imageMb)),
        });
      }
    }
    return { runs, summary };
  } finally {
    await teardown();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
