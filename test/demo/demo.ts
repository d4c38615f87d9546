// `npm run demo`: one automatic migration on a local cluster of real nodes.
// The cluster (test/cluster/nodes.ts: an edge and a cloud node, each a real
// kubelet + containerd + runc + CRIU) gets edgeshift installed as users install
// it (test/cluster/bundle.ts). The example test-case Job
// manifests/examples/testcase-checkpoint-cpu-limit.yaml runs on the edge node,
// its injected monitor reports it busy, the operator's decision engine creates
// the Migration, the edge agent checkpoints it through its kubelet, the image
// goes through the checkpoint registry, and the restored pod completes the Job
// on the cloud node. Every phase is printed as the Migration's status reports
// it; the closing table comes from that status and from `kubectl logs`.
// Everything is torn down on exit, Ctrl-C or SIGTERM.
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Job,
  type V1Pod,
  Watch,
} from "@kubernetes/client-node";
import { stringify } from "yaml";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { GROUP, MIGRATION_PLURAL, VERSION } from "../../operator/api/v1alpha1.ts";
import { monitorName } from "../../operator/monitor/inject.ts";
import { installBundle, SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { type NodeCluster, type RealNode, startNodeCluster } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";
import { loadExampleJob } from "../support/examples.ts";
import {
  expectedSum,
  findHandover,
  type LogLine,
  parseProgress,
  parseTimestamped,
} from "./handover.ts";
import { printTable } from "./table.ts";

const NS = "edgeshift-demo";
const EDGENODE = "demo";
const EXAMPLE = "testcase-checkpoint-cpu-limit";
const CONTAINER = "compute";
// About 40 s of work at the example's 500m limit here (~130k iterations/s), a progress
// line every ~0.15 s: the original is still running when the migration is done (it
// takes ~15 s from the pod's start), and the Job completes on the cloud node.
const ITERATIONS = 5_000_000;
const REPORT_EVERY = 20_000;

const STEPS = [
  "created",
  "checkpointStarted",
  "checkpointed",
  "imagePushed",
  "restoreStarted",
  "restored",
  "cutOver",
  "finished",
] as const;

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
const say = (m: string) => console.log(`[${elapsed()}] ${m}`);
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 23);

let nc: NodeCluster | undefined;
let starting: Promise<NodeCluster> | undefined;
let stopping = false;
let teardownPromise: Promise<void> | undefined;

/** What a stopped cluster must not leave: its directory, its nodes' cgroups, its holders. */
function leftovers(c: NodeCluster): string[] {
  const left: string[] = [];
  if (existsSync(c.dir)) left.push(`directory ${c.dir}`);
  for (const root of c.cgroupRoots) {
    for (const h of ["pids", "memory", "cpu", "freezer", "unified"]) {
      if (existsSync(join("/sys/fs/cgroup", h, root)))
        left.push(`cgroup /sys/fs/cgroup/${h}${root}`);
    }
  }
  for (const pid of c.holders) if (pid && existsSync(`/proc/${pid}`)) left.push(`process ${pid}`);
  return left;
}

async function teardownOnce(): Promise<void> {
  // A start in progress is waited for: its processes, mounts and cgroups are only
  // known to the harness once it returns (or fails, and then it has cleaned up).
  if (!nc && starting) {
    say("Waiting for the cluster start in progress before tearing it down");
    const failed = await starting.then(
      () => false,
      () => true,
    );
    // A failed start has already stopped and removed what it had started.
    if (failed) say("The interrupted start stopped and removed what it had started");
  }
  const c = nc;
  if (!c) return;
  say("Tearing down the cluster");
  try {
    await c.stop();
  } catch (err) {
    console.error(`Teardown failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const left = leftovers(c);
  if (left.length > 0) {
    console.error("Teardown left:");
    for (const l of left) console.error(`  ${l}`);
  } else say("Everything stopped and removed");
}

function teardown(): Promise<void> {
  if (!teardownPromise) {
    // A last resort: the harness's children die with this process (pdeathsig), and the
    // next cluster start removes the cgroups of a run that is gone.
    setTimeout(() => {
      console.error("Teardown did not finish within 120 s; exiting");
      process.exit(1);
    }, 120_000).unref();
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
    void teardown().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  });
}

/**
 * The example Job, adapted only where this cluster needs it: its namespace and a
 * shorter run (and uid 0 where CRIU could not dump another user's process: see
 * test/support/examples.ts).
 */
function loadJob(): Promise<{ job: V1Job; asRoot: boolean }> {
  return loadExampleJob(EXAMPLE, {
    namespace: NS,
    env: { ITERATIONS: String(ITERATIONS), REPORT_EVERY: String(REPORT_EVERY) },
  });
}

/**
 * Follows the namespace's Migrations with a watch (re-listing when it ends), so
 * every status update is seen when the API server sends it.
 */
function watchMigrations(kc: KubeConfig, onEvent: (m: Migration) => void): () => void {
  let aborted = false;
  let ctl: AbortController | undefined;
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${MIGRATION_PLURAL}`;
  const custom = kc.makeApiClient(CustomObjectsApi);
  void (async () => {
    while (!aborted) {
      try {
        const list = (await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: NS,
        })) as {
          metadata: { resourceVersion: string };
          items: Migration[];
        };
        for (const m of list.items) onEvent(m);
        await new Promise<void>((res) => {
          void new Watch(kc)
            .watch(
              path,
              { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true },
              (type, obj: Migration) => {
                if (type === "ADDED" || type === "MODIFIED") onEvent(obj);
              },
              () => res(),
            )
            .then((c) => {
              ctl = c;
              if (aborted) c.abort();
            })
            .catch(() => res());
        });
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  })();
  return () => {
    aborted = true;
    ctl?.abort();
  };
}

const podReady = (p?: V1Pod) =>
  p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

async function main(): Promise<void> {
  say("Starting a local cluster of real nodes (kubelet + containerd + runc + CRIU)");
  starting = startNodeCluster({ log: (m) => say(`  ${m}`) });
  nc = await starting;
  const c = nc;
  if (stopping) return;
  const [edge, cloud] = c.nodes;
  if (!edge || !cloud) throw new Error("the cluster has no edge and cloud node");
  say(
    `Cluster up: Kubernetes ${c.versions.kubernetes}, containerd ${c.versions.containerd}, nodes ${edge.name} (edge) and ${cloud.name} (cloud)`,
  );
  say(`  export KUBECONFIG=${c.kubeconfig}   (kubectl and Lens can follow along)`);

  const bundle = await installBundle(c, {
    appNamespaces: [NS],
    edgeNode: {
      name: EDGENODE,
      spec: {
        pods: { namespaces: [NS] },
        // The test case runs at 90-100 % of its 0.5-core limit.
        thresholds: { cpu: { triggerPercent: 70 } },
        samplingIntervalSeconds: 1,
        sustainedWindowSeconds: 3,
        breachPercent: 80,
        cooldownSeconds: 0,
        restorePolicy: "checkpoint",
        // A failed checkpoint or restore must show as a failure, not as a restart.
        fallbackToRestart: false,
      },
    },
    log: (m) => say(`  ${m}`),
  });
  const kubectl = bundle.kubectlRun;
  say(
    `EdgeNode ${EDGENODE} applied: checkpoint policy, CPU > 70 % of the limit in 80 % of 3 s, no fallback to restart`,
  );

  const kc = new KubeConfig();
  kc.loadFromFile(c.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const batch = kc.makeApiClient(BatchV1Api);

  const { job, asRoot } = await loadJob();
  if (asRoot) {
    say(
      "This machine's root lacks CAP_SYS_RESOURCE, without which CRIU cannot dump another user's process: the Job runs as uid 0 (otherwise as the example's 65532)",
    );
  }
  await kubectl(["apply", "--server-side", "-f", "-"], stringify(job));
  say(
    `Job ${EXAMPLE} applied from manifests/examples (ITERATIONS=${ITERATIONS}, REPORT_EVERY=${REPORT_EVERY}, CPU limit 500m, prefers edge nodes)`,
  );
  const jobPods = async () =>
    (
      await core.listNamespacedPod({
        namespace: NS,
        labelSelector: `app.kubernetes.io/name=${EXAMPLE}`,
      })
    ).items;
  const scheduledPod = async () => {
    const uid = (await batch.readNamespacedJob({ namespace: NS, name: EXAMPLE })).metadata?.uid;
    return waitUntil(
      "the Job's pod to be scheduled",
      async () =>
        (await jobPods()).find(
          (p) => p.spec?.nodeName && p.metadata?.ownerReferences?.some((o) => o.uid === uid),
        ),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  };
  let scheduled = await scheduledPod();
  if (scheduled.spec?.nodeName === edge.name) {
    say(
      `Pod ${scheduled.metadata?.name} scheduled on ${edge.name} by the scheduler (the example's preferred edge-node affinity)`,
    );
  } else {
    // The affinity's weight is already the highest (100). spec.nodeName puts the pod on
    // the edge node without a rule that travels with it: the restore pod drops nodeName
    // (migration/restore/pod.ts), so the restored copy can still go to the cloud node.
    say(
      `The scheduler put ${scheduled.metadata?.name} on ${scheduled.spec?.nodeName} despite the preferred edge affinity; applying the Job again with its pod set to ${edge.name} (spec.nodeName)`,
    );
    await kubectl(["-n", NS, "delete", "job", EXAMPLE, "--cascade=orphan", "--wait=true"]);
    await kubectl(["-n", NS, "delete", "pod", scheduled.metadata?.name ?? "", "--grace-period=1"]);
    const spec = job.spec?.template.spec;
    if (spec) spec.nodeName = edge.name;
    await kubectl(["apply", "--server-side", "-f", "-"], stringify(job));
    scheduled = await scheduledPod();
    if (scheduled.spec?.nodeName !== edge.name) {
      throw new Error(
        `${scheduled.metadata?.name} is on ${scheduled.spec?.nodeName}, not ${edge.name}`,
      );
    }
    say(`Pod ${scheduled.metadata?.name} set on ${edge.name}`);
  }
  const podName = scheduled.metadata?.name ?? "";
  await waitUntil(
    `${podName} Running`,
    async () => {
      const p = await core.readNamespacedPod({ namespace: NS, name: podName });
      return p.status?.phase === "Running" ? p : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  const logOf = async (pod: string) =>
    parseTimestamped(
      await kubectl(["-n", NS, "logs", pod, "-c", CONTAINER, "--timestamps"]).catch(() => ""),
    );
  const progressOf = (l: LogLine) => parseProgress(l.text);
  const first = await waitUntil(
    "the workload's first progress line",
    async () => (await logOf(podName)).map(progressOf).find((p) => p),
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  say(`Pod ${podName} running on ${edge.name}: progress ${first.value} of ${ITERATIONS}`);
  await waitUntil(
    "the operator to inject the monitor",
    async () => {
      const p = await core.readNamespacedPod({ namespace: NS, name: podName });
      return p.status?.ephemeralContainerStatuses?.some(
        (s) => s.name === monitorName(CONTAINER) && s.state?.running,
      )
        ? true
        : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  say(
    `Monitor ${monitorName(CONTAINER)} injected as an ephemeral container (pod not restarted); waiting for the sustained breach`,
  );

  // Each phase as the Migration's status reports it, seen through a watch.
  let mig: Migration | undefined;
  let seenAt = 0;
  let finishedAt = 0;
  let phase: string | undefined;
  let phaseSince = 0;
  const printedSteps = new Set<string>();
  let originalAtCheckpoint: Promise<LogLine[]> | undefined;
  let originalAtCutover: Promise<LogLine[]> | undefined;
  let done: (m: Migration) => void = () => {};
  const finished = new Promise<Migration>((res) => {
    done = res;
  });
  const stopWatch = watchMigrations(kc, (m) => {
    if (m.spec.podName !== podName) return;
    const now = Date.now();
    if (!mig) {
      seenAt = now;
      const r = m.spec.reason;
      say(
        `Migration ${m.metadata.name} created by the decision engine: ${r?.type ?? "Manual"} ${r?.metric ?? ""} ${r?.value?.toFixed?.(1) ?? "?"} % > ${r?.threshold ?? "?"} % over ${r?.windowSeconds ?? "?"} s (sample of ${r?.sampledAt ?? "?"})`,
      );
    }
    mig = m;
    const p = m.status?.phase;
    const ts = m.status?.timestamps ?? {};
    if (p && p !== phase) {
      const prev = phase ? `; ${phase} took ${now - phaseSince} ms as seen` : "";
      const where =
        p === "Checkpointing"
          ? `: ${m.status?.sourceNode} -> ${m.status?.targetNode}, policy ${m.status?.policy}`
          : p === "Failed"
            ? `: ${m.status?.failureReason} ${m.status?.message ?? ""}`
            : "";
      say(`  phase ${p} seen at ${clock(now)}${where}${prev}`);
      phase = p;
      phaseSince = now;
    }
    // Every step's timestamp as the status records it, in the order of the steps.
    for (const k of STEPS) {
      const v = ts[k];
      if (!v || printedSteps.has(k)) continue;
      printedSteps.add(k);
      const what =
        k === "restoreStarted" && m.status?.restoredPod ? ` (${m.status.restoredPod})` : "";
      say(`    status.timestamps.${k} = ${v}${what}`);
    }
    // The original's own log, once checkpointed and once more before it is removed.
    if (!originalAtCheckpoint && ts.checkpointed) originalAtCheckpoint = logOf(podName);
    if (!originalAtCutover && ts.restored) originalAtCutover = logOf(podName);
    if (p === "Succeeded" || p === "Failed") {
      finishedAt = now;
      done(m);
    }
  });
  try {
    mig = await Promise.race([
      finished,
      new Promise<never>((_, rej) =>
        setTimeout(
          () => rej(new Error(`no finished Migration of ${podName} within 5 minutes`)),
          300_000,
        ).unref(),
      ),
    ]);
  } finally {
    stopWatch();
  }
  if (mig.status?.phase !== "Succeeded") {
    await diagnose(kubectl, podName, mig, edge);
    throw new Error(
      `Migration ${mig.metadata.name} failed: ${mig.status?.failureReason ?? ""} ${mig.status?.message ?? ""}`,
    );
  }
  const restoredName = mig.status?.restoredPod ?? "";
  const restored = await core.readNamespacedPod({ namespace: NS, name: restoredName });
  if (restored.spec?.nodeName !== cloud.name) {
    throw new Error(`restored pod ${restoredName} runs on ${restored.spec?.nodeName}`);
  }
  say(
    `Pod ${restoredName} runs on ${cloud.name} (${podReady(restored) ? "Ready" : restored.status?.phase}); the original ${podName} was removed`,
  );

  // The restored pod's log: the checkpoint's copy of the original's lines, then the
  // restored process's. The hand-over is the largest gap between two lines.
  const withRestored = await waitUntil(
    "the restored process's first lines",
    async () => {
      const lines = await logOf(restoredName);
      const h = findHandover(lines);
      return h && lines.length - h.index >= 3 ? { lines, h } : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  const { h } = withRestored;
  const carried = progressOf(h.before);
  const resumed = progressOf(h.after);
  if (!carried || !resumed) {
    throw new Error(
      `the restored log's hand-over is not between progress lines: "${h.before.text}" / "${h.after.text}"`,
    );
  }
  say(
    `  restored process's first line on ${cloud.name}: progress ${resumed.value} (the checkpoint carried the log up to ${carried.value}; ${h.gapMs} ms gap)`,
  );
  const origCk = originalAtCheckpoint ? await originalAtCheckpoint : [];
  const origLast = originalAtCutover ? await originalAtCutover : origCk;
  const ckStart = Date.parse(mig.status?.timestamps?.checkpointStarted ?? "");
  // The original's own log; should it have been removed before the demo read it, the
  // same lines are at the head of the restored pod's log.
  const atCheckpoint = (origCk.length > 0 ? origCk : withRestored.lines.slice(0, h.index))
    .filter((l) => l.at <= ckStart)
    .map(progressOf)
    .filter((p) => p)
    .at(-1);
  const originalLast = origLast
    .map(progressOf)
    .filter((p) => p)
    .at(-1);
  if (resumed.origin !== carried.origin) {
    throw new Error(
      `the restored process started in ${resumed.origin}, not in ${carried.origin}: a new process, state lost`,
    );
  }
  // The kubelet copies the container's log after the dump while the original runs
  // on, so the log may carry lines the dumped state had not printed yet; the
  // restored process prints those again. It must never be behind the original's
  // progress when the checkpoint started.
  if (atCheckpoint && resumed.value < atCheckpoint.value) {
    throw new Error(
      `the restored progress (${resumed.value}) is behind the original's at checkpoint start (${atCheckpoint.value})`,
    );
  }
  // A move: frozen from the end of the dump, the original printed nothing the
  // checkpoint does not hold.
  if (mig.status?.handoff === "Freeze" && originalLast && originalLast.value > carried.value) {
    throw new Error(
      `handoff Freeze, yet the original printed progress ${originalLast.value} after the checkpoint's ${carried.value}`,
    );
  }
  const repeated = withRestored.lines
    .slice(0, h.index)
    .map(progressOf)
    .filter((p) => p && p.value >= resumed.value).length;
  if (repeated > 0) {
    say(
      `  the log copy carried ${repeated} line(s) the dumped state had not printed yet; the restored process printed them again`,
    );
  }

  // The Job counts the restored pod as its own and completes on the cloud node.
  const finalJob = await waitUntil(
    `Job ${EXAMPLE} to finish`,
    async () => {
      const j = await batch.readNamespacedJob({ namespace: NS, name: EXAMPLE });
      const cond = j.status?.conditions?.find(
        (x) => (x.type === "Complete" || x.type === "Failed") && x.status === "True",
      );
      return cond ? { j, cond } : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 500 },
  );
  const finalLog = await logOf(restoredName);
  const lastLine = finalLog.at(-1)?.text ?? "";
  const want = `done: sum of squares mod 1e9+7 up to ${ITERATIONS} is ${expectedSum(ITERATIONS)}`;
  const jobPodsAfter = await jobPods();
  say(
    `Job ${EXAMPLE} ${finalJob.cond.type}: succeeded ${finalJob.j.status?.succeeded ?? 0}, failed ${finalJob.j.status?.failed ?? 0}; pods ${jobPodsAfter.map((p) => `${p.metadata?.name} on ${p.spec?.nodeName} ${p.status?.phase}`).join(", ")}`,
  );
  say(`  last line of ${restoredName}: ${lastLine}`);
  if (finalJob.cond.type !== "Complete" || (finalJob.j.status?.failed ?? 0) !== 0) {
    throw new Error(`Job ${EXAMPLE}: ${finalJob.cond.reason ?? ""} ${finalJob.cond.message ?? ""}`);
  }
  if (lastLine !== want) throw new Error(`the workload ended with "${lastLine}", not "${want}"`);

  console.log(`\nkubectl -n ${NS} logs ${restoredName} --timestamps, around the hand-over:`);
  const around = finalLog.slice(Math.max(0, h.index - 3), h.index + 3);
  for (const [i, l] of around.entries()) {
    const mark = i === Math.min(3, h.index) ? "   <- first line of the restored process" : "";
    console.log(`  ${l.stamp} ${l.text}${mark}`);
  }

  const restoredFirstAt = h.after.at;
  printTable(mig, {
    decisionObservedMs: seenAt - Date.parse(mig.spec.reason?.sampledAt ?? ""),
    totalObservedMs: finishedAt - seenAt,
    seenToCheckpointStartedMs: Date.parse(mig.status?.timestamps?.checkpointStarted ?? "") - seenAt,
    restoreStartedToFirstLineMs:
      restoredFirstAt - Date.parse(mig.status?.timestamps?.restoreStarted ?? ""),
    logGapMs: h.gapMs,
    nextLargestGapMs: h.nextLargestGapMs,
    reportEvery: REPORT_EVERY,
    originalAtCheckpoint: atCheckpoint?.value,
    carried: carried.value,
    repeated,
    resumed: resumed.value,
    originalLast: originalLast?.value,
    origin: carried.origin,
    resumedIn: resumed.now,
  });
}

/** What the demo saw when a Migration failed: its status, the pods, the components' logs. */
async function diagnose(
  kubectl: (args: string[]) => Promise<string>,
  podName: string,
  m: Migration,
  edge: RealNode,
): Promise<void> {
  const show = async (title: string, args: string[]) => {
    console.error(`\n--- ${title}`);
    console.error((await kubectl(args).catch((e: Error) => e.message)).trimEnd());
  };
  console.error(`\n--- Migration ${m.metadata.name} status\n${stringify(m.status)}`);
  await show(`kubectl -n ${NS} describe pods`, ["-n", NS, "describe", "pods"]);
  await show(`kubectl -n ${NS} logs ${podName}`, ["-n", NS, "logs", podName, "-c", CONTAINER]);
  await show("operator logs", [
    "-n",
    SYSTEM_NAMESPACE,
    "logs",
    "-l",
    "app.kubernetes.io/name=edgeshift-operator",
    "--tail=60",
    "--prefix",
  ]);
  await show("agent logs", [
    "-n",
    SYSTEM_NAMESPACE,
    "logs",
    "-l",
    "app.kubernetes.io/name=edgeshift-agent",
    "--tail=60",
    "--prefix",
  ]);
  // CRIU's own account of a failed dump, where runc left it on the edge node.
  const found = await edge
    .exec(["sh", "-c", "ls /run/containerd/io.containerd.runtime.v2.task/k8s.io/*/criu-dump.log"])
    .catch(() => ({ stdout: "" }));
  for (const f of found.stdout.split("\n").filter(Boolean)) {
    const { stdout } = await edge.exec(["tail", "-n", "40", f]).catch(() => ({ stdout: "" }));
    console.error(`\n--- ${edge.name}:${f} (last 40 lines)\n${stdout.trimEnd()}`);
  }
}

let code = 0;
try {
  await main();
  if (!stopping) say("Demo succeeded");
} catch (err) {
  code = 1;
  if (!stopping) {
    console.error(`\nDemo failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
if (!stopping) {
  stopping = true;
  await teardown();
  process.exit(code);
}
