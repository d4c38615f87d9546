import { BatchV1Api, type V1Pod } from "@kubernetes/client-node";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { SimEnvironment } from "../sim/environment.ts";
import { counterPod, podProgress } from "../sim/pods.ts";
import type { CounterProgress } from "../sim/workloads.ts";
import type { Clients } from "../support/objects.ts";
import { printTable } from "./table.ts";

const NS = "edgeshift-demo";
const G = "demo.edgeshift.dev/group";
const EDGE = "demo-edge";
const CLOUD = "demo-cloud";
const EDGENODE = "demo";
const JOB = "testcase-checkpoint";
const TARGET = 1_500_000;

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
const say = (m: string) => console.log(`[${elapsed()}] ${m}`);

interface ClientsWithBatch extends Clients {
  batch: BatchV1Api;
}

const env = new SimEnvironment({
  name: EDGENODE,
  namespace: NS,
  groupLabel: G,
  // The counter at a 0.5-core limit runs at 90-100 % of it.
  decision: {
    thresholds: { cpu: { triggerPercent: 70 } },
    sustainedWindowSeconds: 3,
    breachPercent: 80,
  },
  log: say,
});
let stopping = false;
let teardownPromise: Promise<void> | undefined;

async function teardownOnce(): Promise<void> {
  say("Tearing down");
  const problems = await env.stop();
  if (problems.length > 0) {
    console.error("Teardown problems:");
    for (const e of problems) console.error(`  ${e}`);
  } else say("Everything stopped and removed");
}

function teardown(): Promise<void> {
  if (!teardownPromise) {
    // A last resort: the harness's children die with this process (pdeathsig).
    setTimeout(() => {
      console.error("Teardown did not finish within 90 s; exiting");
      process.exit(1);
    }, 90_000).unref();
    teardownPromise = teardownOnce();
  }
  return teardownPromise;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) {
      console.log(`Received ${signal} again; still tearing down`);
      return;
    }
    stopping = true;
    console.log(`\nReceived ${signal}`);
    void teardown().finally(() => process.exit(1));
  });
}

async function main(): Promise<void> {
  await env.start();
  const { edge, cloud, clients } = env;
  if (!edge || !cloud || !clients) throw new Error("the simulated environment did not start");
  const cl: ClientsWithBatch = { ...clients, batch: clients.kc.makeApiClient(BatchV1Api) };
  say(`EdgeNode ${EDGENODE} applied: checkpoint policy, CPU > 70 % of the limit for 3 s`);

  // The checkpoint test case: a Job running the in-memory counter at a 0.5-core limit.
  const template = counterPod("unused", EDGE, {
    labels: { app: "demo-counter" },
    cpuLimit: "500m",
    memoryMb: 16,
    // About 15 s of counting at half a core here: it finishes after the migration.
    target: TARGET,
  });
  await cl.batch.createNamespacedJob({
    namespace: NS,
    body: {
      metadata: { name: JOB },
      spec: {
        backoffLimit: 0,
        template: {
          metadata: { labels: { app: "demo-counter" } },
          spec: { ...template.spec, containers: template.spec?.containers ?? [] },
        },
      },
    },
  });
  say(`Job ${JOB} created (counter, 16 MiB held in memory, CPU limit 500m) on ${EDGE}`);
  const edgeNode = edge;
  const cloudNode = cloud;
  const podsOf = async () =>
    (
      await cl.core.listNamespacedPod({ namespace: NS, labelSelector: "app=demo-counter" })
    ).items.filter((p: V1Pod) => !p.metadata?.deletionTimestamp);
  const original = await waitUntil(
    "the Job's pod Running on the edge node",
    async () =>
      (await podsOf()).find((p) => p.spec?.nodeName === EDGE && p.status?.phase === "Running"),
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  const podName = original.metadata?.name ?? "";
  const started = await waitUntil(
    "the counter's first progress",
    async () => {
      const p = await podProgress(cl, edgeNode, NS, podName).catch(() => undefined);
      return p && p.counter > 0 ? p : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50 },
  );
  say(`Pod ${podName} running on ${EDGE}, counter at ${started.counter}; waiting for the breach`);

  // Sample the original's progress to know its value when the dump began.
  const samples: { at: number; p: CounterProgress }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const p = await podProgress(cl, edgeNode, NS, podName).catch(() => undefined);
      if (p) samples.push({ at: Date.now(), p });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const listMigs = async () =>
    (
      (await cl.custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS,
      })) as { items: Migration[] }
    ).items;
  let mig: Migration;
  let firstRestored: CounterProgress | undefined;
  let restoredName: string | undefined;
  let decisionSeenAt = 0;
  let finishedSeenAt = 0;
  try {
    const first = await waitUntil(
      "the decision engine's Migration",
      async () => (await listMigs()).find((m) => m.spec.podName === podName),
      { timeoutMs: 90_000, intervalMs: 50 },
    );
    decisionSeenAt = Date.now();
    const r = first.spec.reason;
    say(
      `Migration ${first.metadata.name} created by the decision engine: ${r?.type ?? "Manual"} ${r?.metric ?? ""} ${r?.value?.toFixed?.(1) ?? "?"} % > ${r?.threshold ?? "?"} % over ${r?.windowSeconds ?? "?"} s (sampled ${r?.sampledAt ?? "?"})`,
    );
    const migName = first.metadata.name ?? "";
    let phase: string | undefined;
    let phaseSince = Date.now();
    mig = await waitUntil(
      "the Migration to finish",
      async () => {
        const x = (await cl.custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
          name: migName,
        })) as Migration;
        const p = x.status?.phase;
        if (p && p !== phase) {
          const now = Date.now();
          const prev = phase ? ` (${phase} took ${now - phaseSince} ms)` : "";
          say(`  phase ${p}${prev}`);
          phase = p;
          phaseSince = now;
        }
        if (!firstRestored) {
          const rp = (await podsOf()).find(
            (q) => q.metadata?.name !== podName && q.spec?.nodeName === CLOUD,
          );
          if (rp?.metadata?.name) {
            restoredName = rp.metadata.name;
            firstRestored = await podProgress(cl, cloudNode, NS, restoredName).catch(
              () => undefined,
            );
            if (firstRestored) {
              say(
                `  restored pod ${restoredName} publishing on ${CLOUD}: counter ${firstRestored.counter}`,
              );
            }
          }
        }
        if (p === "Succeeded" || p === "Failed") {
          finishedSeenAt = Date.now();
          return x;
        }
        return undefined;
      },
      { timeoutMs: 120_000, intervalMs: 20 },
    );
  } finally {
    sampling = false;
    await sampler;
  }
  if (mig.status?.phase !== "Succeeded") {
    console.error("edge node errors:", edgeNode.errors, "cloud node errors:", cloudNode.errors);
    throw new Error(
      `Migration ${mig.metadata.name} failed: ${mig.status?.failureReason ?? ""} ${mig.status?.message ?? ""}`,
    );
  }
  restoredName ??= mig.status?.restoredPod;
  const name = restoredName ?? "";
  firstRestored ??= await waitUntil(
    "the restored counter's progress",
    () => podProgress(cl, cloudNode, NS, name),
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  const later = await waitUntil(
    "the restored counter to advance",
    async () => {
      const p = await podProgress(cl, cloudNode, NS, name);
      return p && p.counter > (firstRestored?.counter ?? 0) ? p : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  const restored = await cl.core.readNamespacedPod({ namespace: NS, name });
  if (restored.spec?.nodeName !== CLOUD) throw new Error(`restored pod ${name} is not on ${CLOUD}`);
  const ck = edgeNode.checkpoints.find((x) => x.pod === podName);
  const before =
    (ck ? samples.filter((s) => s.at <= ck.startedAt.getTime()).at(-1)?.p : undefined) ?? started;
  if (firstRestored.startedAt !== started.startedAt) {
    throw new Error("the restored counter is a new process (state lost): checkpoint degraded");
  }
  if (firstRestored.counter < before.counter) {
    throw new Error(
      `the restored counter (${firstRestored.counter}) is behind its value at checkpoint (${before.counter})`,
    );
  }
  say(
    `Pod ${name} runs on ${CLOUD} (${restored.status?.phase}): counter ${later.counter} and counting, same process start time as on ${EDGE}`,
  );
  // The Job adopts the restored pod and completes when the counter reaches its target there.
  const job = await waitUntil(
    `Job ${JOB} to finish`,
    async () => {
      const j = await cl.batch.readNamespacedJob({ namespace: NS, name: JOB });
      const done = j.status?.conditions?.find(
        (x) => (x.type === "Complete" || x.type === "Failed") && x.status === "True",
      );
      return done ? { j, done } : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  const final = await podProgress(cl, cloudNode, NS, name).catch(() => undefined);
  const finishedPod = await cl.core.readNamespacedPod({ namespace: NS, name });
  if (job.done.type !== "Complete") {
    throw new Error(`Job ${JOB} failed: ${job.done.reason ?? ""} ${job.done.message ?? ""}`);
  }
  say(
    `Job ${JOB} Complete (succeeded ${job.j.status?.succeeded ?? 0}): pod ${name} on ${finishedPod.spec?.nodeName} ${finishedPod.status?.phase}, counter ${final?.counter ?? "?"} of ${TARGET}`,
  );
  const rs = cloudNode.restores.find((x) => x.pod === name);
  printTable(mig, {
    decisionObservedMs: decisionSeenAt - Date.parse(mig.spec.reason?.sampledAt ?? ""),
    totalObservedMs: finishedSeenAt - decisionSeenAt,
    checkpointCounter: before.counter,
    restoredCounter: firstRestored.counter,
    criuDumpMs: ck?.checkpointMs,
    frozenMs: ck?.frozenUs !== undefined ? ck.frozenUs / 1000 : undefined,
    pullMs: rs?.pullMs,
    criuRestoreMs: rs?.restoreMs,
    checkpointToRunningMs: ck && rs ? rs.finishedAt.getTime() - ck.startedAt.getTime() : undefined,
  });
}

let code = 0;
try {
  await main();
  say("Demo succeeded");
} catch (err) {
  code = 1;
  if (!stopping)
    console.error(`\nDemo failed: ${err instanceof Error ? err.message : String(err)}`);
}
if (!stopping) {
  stopping = true;
  await teardown();
  process.exit(code);
}
