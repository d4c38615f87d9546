// `npm run bench -- e2e`: migrations on the cluster of real nodes (test/cluster/nodes.ts:
// kubelet + containerd + runc + CRIU per node), edgeshift installed as users install it
// (test/cluster/bundle.ts), measured beside the manual recipe of the upstream checkpoint
// documentation (kubernetes.io "Forensic container checkpointing" and its follow-up
// posts, criu.org/Kubernetes), run the way a user runs it, in the same run, on the same
// workload and sizes:
//
//   curl -X POST https://<node>:10250/checkpoint/<ns>/<pod>/<container>   (token: create nodes/checkpoint)
//   copy the archive off the node
//   buildah from scratch; buildah add <ctr> <archive> /; buildah config --annotation ...;
//   buildah commit; buildah push <checkpoint registry>
//   a pod from that image on the cloud node; the original deleted
//
// The workload is the checkpoint-policy example's pod (manifests/examples/
// testcase-checkpoint-policy.yaml: node:24-alpine, its env, resources and hardening;
// root where this machine's CRIU needs it), with a script that fills HOLD_MIB MiB at
// start with random bytes (the example fills 8 MiB a second with one byte value,
// which compression would shrink to nothing) and ticks every 0.2 s. Every checkpoint run
// checks the restored process is the original one (same origin pod, same checksum,
// tick going on past the one read before the checkpoint); a failed migration aborts
// the bench with the Migration's status message.
import { execFile } from "node:child_process";
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Pod,
  type V1PodSpec,
} from "@kubernetes/client-node";
import { stringify } from "yaml";
import {
  GROUP,
  MIGRATE_ANNOTATION,
  MIGRATION_PLURAL,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { monitorName } from "../../operator/monitor/inject.ts";
import { installBundle, REGISTRY_SECRET, SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { type NodeCluster, type RealNode, startNodeCluster } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";
import { loadExampleJob } from "../support/examples.ts";

const run = promisify(execFile);

const NS = "edgeshift-bench";
const EDGENODE = "bench";
const EXAMPLE = "testcase-checkpoint-policy";
const CONTAINER = "hold";
const TICK_MS = 200;

/** The example's workload, filling its memory at once and ticking every 0.2 s. */
const SCRIPT = `
const os = require("node:os");
const { randomFillSync } = require("node:crypto");
const origin = os.hostname();
const mib = Number(process.env.HOLD_MIB);
const held = [];
// Random bytes, every page touched: memory no compression shrinks.
for (let i = 0; i < mib; i++) held.push(randomFillSync(Buffer.allocUnsafeSlow(1 << 20)));
let tick = 0;
process.on("SIGTERM", () => process.exit(0));
setInterval(() => {
  tick++;
  let checksum = 0;
  for (const b of held) for (let j = 0; j < b.length; j += 4096) checksum = (checksum * 31 + b[j]) >>> 0;
  console.log(\`tick \${tick}: holding \${held.length} MiB, checksum \${checksum}, started in \${origin}, now in \${os.hostname()}\`);
  if (tick >= Number(process.env.TICKS || 900)) process.exit(0);
}, ${TICK_MS});
`;

export type Policy = "checkpoint" | "restart";

/** One edgeshift migration; durations in ms. */
export interface EdgeshiftRun {
  sizeMb: number;
  policy: Policy;
  /** Migration created by the bench -> checkpointStarted (restart: -> restoreStarted). */
  dispatchMs?: number;
  /** checkpointStarted -> checkpointed. */
  checkpointMs?: number;
  /** checkpointed -> imagePushed. */
  packPushMs?: number;
  /** imagePushed -> restoreStarted (checkpoint policy). */
  handMs?: number;
  /** restoreStarted -> restored. */
  restoreMs?: number;
  /** restored -> cutOver (the original's deletion requested). */
  cutoverMs?: number;
  /** Checkpoint runs (handoff Freeze): status.downtimeSeconds, the hold to the restored pod Ready. */
  downtimeMs?: number;
  /** Migration created by the bench -> Succeeded and the original gone, as the bench saw them. */
  totalMs: number;
  imageBytes?: number;
  archiveBytes?: number;
  /** Largest gap between two lines of the restored pod's log (checkpoint runs). */
  logGapMs?: number;
  /** Checkpoint runs: the restored process went on from the original's state. */
  stateKept?: boolean;
  note: string;
}

/** One run of the manual recipe; durations in ms. */
export interface ManualRun {
  sizeMb: number;
  /** curl POST .../checkpoint -> 200. */
  checkpointMs: number;
  /** cp of the archive off the node. */
  copyMs: number;
  /** buildah from scratch + add + config --annotation. */
  buildMs: number;
  /** buildah commit. */
  commitMs: number;
  /** buildah push. */
  pushMs: number;
  /** kubectl apply of the pod on the cloud node -> Running. */
  restoreMs: number;
  /** kubectl delete pod of the original (waits until it is gone). */
  deleteMs: number;
  /** checkpoint call -> restored Running and original deleted. */
  totalMs: number;
  imageBytes?: number;
  archiveBytes: number;
  logGapMs?: number;
  stateKept: boolean;
  note: string;
}

export interface E2eResult {
  versions: { kubernetes: string; etcd: string; containerd: string; criu: string; buildah: string };
  edgeshift: EdgeshiftRun[];
  manual: ManualRun[];
}

const between = (a?: string, b?: string): number | undefined => {
  if (!a || !b) return undefined;
  const d = Date.parse(b) - Date.parse(a);
  return Number.isNaN(d) ? undefined : d;
};

interface Tick {
  at: number;
  tick: number;
  holding: number;
  checksum: number;
  origin: string;
}

function parseTicks(log: string): Tick[] {
  const out: Tick[] = [];
  for (const line of log.split("\n")) {
    const m =
      /^(\S+) tick (\d+): holding (\d+) MiB, checksum (\d+), started in (\S+), now in (\S+)$/.exec(
        line,
      );
    if (!m) continue;
    out.push({
      at: Date.parse(m[1] ?? ""),
      tick: Number(m[2]),
      holding: Number(m[3]),
      checksum: Number(m[4]),
      origin: m[5] ?? "",
    });
  }
  return out;
}

function largestGap(ticks: Tick[]): number {
  let g = 0;
  for (let i = 1; i < ticks.length; i++)
    g = Math.max(g, (ticks[i]?.at ?? 0) - (ticks[i - 1]?.at ?? 0));
  return g;
}

interface Ctx {
  nc: NodeCluster;
  edge: RealNode;
  cloud: RealNode;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  kubectl: (args: string[], input?: string) => Promise<string>;
  log: (m: string) => void;
}

async function podLog(c: Ctx, name: string): Promise<Tick[]> {
  const text = await c.core
    .readNamespacedPodLog({ namespace: NS, name, container: CONTAINER, timestamps: true })
    .catch(() => "");
  return parseTicks(typeof text === "string" ? text : String(text));
}

async function workloadPod(name: string, node: string, sizeMb: number, manual: boolean) {
  const { job } = await loadExampleJob(EXAMPLE, {
    namespace: NS,
    nodeName: node,
    env: { HOLD_MIB: String(sizeMb), TICKS: "36000" },
    annotations: manual ? { [MIGRATE_ANNOTATION]: "false" } : undefined,
  });
  const t = job.spec?.template;
  const spec = t?.spec as V1PodSpec;
  const ctr = spec.containers[0];
  if (!ctr || ctr.name !== CONTAINER) throw new Error(`${EXAMPLE}: no container ${CONTAINER}`);
  ctr.args = [SCRIPT];
  // The example's 320Mi holds its 256 MiB; the node binary's own ~50 MiB on top.
  const mem = `${Math.max(320, sizeMb + 128)}Mi`;
  ctr.resources = { requests: { cpu: "50m", memory: mem }, limits: { cpu: "1", memory: mem } };
  ctr.imagePullPolicy = "IfNotPresent";
  const pod: V1Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      labels: { ...t?.metadata?.labels, app: name },
      annotations: t?.metadata?.annotations,
    },
    spec,
  };
  return pod;
}

/** Starts the workload on the edge node and waits until it holds its memory and ticks. */
async function startWorkload(c: Ctx, name: string, sizeMb: number, manual: boolean) {
  const pod = await workloadPod(name, c.edge.name, sizeMb, manual);
  await c.core.createNamespacedPod({ namespace: NS, body: pod });
  await waitUntil(
    `${name} holding ${sizeMb} MiB and ticking`,
    async () => {
      const t = (await podLog(c, name)).at(-1);
      return t && t.holding === sizeMb && t.tick >= 3 ? t : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 100 },
  );
  return pod;
}

async function lastTick(c: Ctx, name: string): Promise<Tick> {
  const t = (await podLog(c, name)).at(-1);
  if (!t) throw new Error(`${name} has no tick in its log`);
  return t;
}

async function podGone(c: Ctx, name: string): Promise<boolean> {
  return !(await c.core.readNamespacedPod({ namespace: NS, name }).catch(() => undefined));
}

async function deletePods(c: Ctx, names: string[]): Promise<void> {
  for (const name of names) {
    await c.core
      .deleteNamespacedPod({ namespace: NS, name, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  }
  await waitUntil(
    `pods ${names.join(", ")} gone`,
    async () => (await Promise.all(names.map((n) => podGone(c, n)))).every(Boolean) || undefined,
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

/**
 * Waits for lines the restored process wrote after `since` (ms): the original's
 * origin and checksum, ticks going on from at least the one read before the checkpoint. Throws when the
 * restored process is a new one.
 */
async function checkState(
  c: Ctx,
  restored: string,
  original: string,
  sizeMb: number,
  before: Tick,
  since: number,
): Promise<{ gap: number; resumed: number }> {
  const want = before.checksum;
  const fromTick = before.tick;
  const ticks = await waitUntil(
    `${restored} to tick on`,
    async () => {
      const all = await podLog(c, restored);
      const fresh = all.filter((t) => t.at > since);
      return fresh.length >= 3 ? all : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const fresh = ticks.filter((t) => t.at > since);
  for (const t of fresh) {
    if (t.origin !== original || t.checksum !== want || t.holding !== sizeMb) {
      throw new Error(
        `${restored} is not the original's process: tick ${t.tick}, started in ${t.origin}, holding ${t.holding} MiB, checksum ${t.checksum} (want ${original}, ${sizeMb} MiB, ${want})`,
      );
    }
  }
  const first = fresh[0]?.tick ?? 0;
  if (first < fromTick) {
    throw new Error(
      `${restored} resumed at tick ${first}, behind the original's ${fromTick} before the checkpoint`,
    );
  }
  for (let i = 1; i < fresh.length; i++) {
    if ((fresh[i]?.tick ?? 0) !== (fresh[i - 1]?.tick ?? 0) + 1)
      throw new Error(`${restored}'s ticks do not go on by one: ${fresh.map((t) => t.tick)}`);
  }
  return { gap: largestGap(ticks), resumed: first };
}

// --- edgeshift ---------------------------------------------------------------------

async function edgeshiftRun(
  c: Ctx,
  sizeMb: number,
  policy: Policy,
  name: string,
): Promise<EdgeshiftRun> {
  await startWorkload(c, name, sizeMb, false);
  // The operator's monitor joins every edge pod; migrate with it in place, as in production.
  await waitUntil(
    `the monitor next to ${name}`,
    async () => {
      const p = await c.core.readNamespacedPod({ namespace: NS, name });
      return p.status?.ephemeralContainerStatuses?.some(
        (s) => s.name === monitorName(CONTAINER) && s.state?.running,
      )
        ? true
        : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const before = await lastTick(c, name);
  const createdAt = Date.now();
  const t0 = performance.now();
  await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "Migration",
      metadata: { name },
      spec: { podName: name, restorePolicy: policy, fallbackToRestart: false },
    },
  });
  let succeededAt = 0;
  let goneAt = 0;
  const m = await waitUntil(
    `Migration ${name} to finish and ${name} to be gone`,
    async () => {
      const x = (await c.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: NS,
        name,
      })) as Migration;
      const ph = x.status?.phase;
      if (ph === "Failed") return x;
      if (ph === "Succeeded" && !succeededAt) succeededAt = performance.now();
      if (succeededAt && !goneAt && (await podGone(c, name))) goneAt = performance.now();
      return succeededAt && goneAt ? x : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 50 },
  );
  if (m.status?.phase !== "Succeeded") {
    throw new Error(
      `Migration ${name} (${sizeMb} MiB, ${policy}) failed: ${m.status?.failureReason ?? ""} ${m.status?.message ?? ""}`,
    );
  }
  const ts = m.status?.timestamps ?? {};
  const restored = m.status?.restoredPod ?? "";
  const created = new Date(createdAt).toISOString();
  const r: EdgeshiftRun = {
    sizeMb,
    policy,
    dispatchMs: between(
      created,
      policy === "checkpoint" ? ts.checkpointStarted : ts.restoreStarted,
    ),
    checkpointMs: between(ts.checkpointStarted, ts.checkpointed),
    packPushMs: between(ts.checkpointed, ts.imagePushed),
    handMs: policy === "checkpoint" ? between(ts.imagePushed, ts.restoreStarted) : undefined,
    restoreMs: between(ts.restoreStarted, ts.restored),
    cutoverMs: between(ts.restored, ts.cutOver),
    downtimeMs:
      m.status?.downtimeSeconds === undefined ? undefined : m.status.downtimeSeconds * 1000,
    totalMs: goneAt - t0,
    imageBytes: m.status?.containers?.[0]?.imageSizeBytes,
    archiveBytes: m.status?.containers?.[0]?.archiveSizeBytes,
    note: "",
  };
  if (policy === "checkpoint") {
    const s = await checkState(
      c,
      restored,
      name,
      sizeMb,
      before,
      Date.parse(ts.restoreStarted ?? ""),
    );
    r.logGapMs = s.gap;
    r.stateKept = true;
    r.note = `tick ${before.tick} before, resumed at ${s.resumed}`;
  } else {
    // A new process from the original image: it starts from tick 1 in the restored pod.
    const t = await waitUntil(
      `${restored} to tick`,
      async () => (await podLog(c, restored)).find((x) => x.origin === restored),
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    r.stateKept = false;
    r.note = `new process, tick ${t.tick} at first read (original was at ${before.tick})`;
  }
  c.log(
    `  edgeshift ${sizeMb} MiB ${policy}: total ${Math.round(r.totalMs)} ms (dispatch ${r.dispatchMs}, checkpoint ${r.checkpointMs ?? "-"}, pack+push ${r.packPushMs ?? "-"}, hand ${r.handMs ?? "-"}, restore ${r.restoreMs}, cutover ${r.cutoverMs}), image ${r.imageBytes ?? "-"} B; ${r.note}`,
  );
  await c.custom
    .deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
    })
    .catch(() => undefined);
  await deletePods(c, [restored, name]);
  return r;
}

// --- the manual recipe ----------------------------------------------------------------

interface Manual {
  dir: string;
  header: string;
  authfile: string;
  buildah: string[];
  registry: string;
  registryUrl: string;
  registryAuth: string;
}

/** What a user sets up once: a ServiceAccount allowed `create` on nodes/checkpoint, its token, registry credentials. */
async function setUpManual(c: Ctx): Promise<Manual> {
  const reg = c.nc.control.registry;
  if (!reg) throw new Error("the cluster has no checkpoint registry");
  await c.kubectl(
    ["apply", "--server-side", "-f", "-"],
    [
      {
        apiVersion: "v1",
        kind: "ServiceAccount",
        metadata: { name: "checkpointer", namespace: NS },
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: { name: "bench-checkpointer" },
        rules: [{ apiGroups: [""], resources: ["nodes/checkpoint"], verbs: ["create"] }],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "bench-checkpointer" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "bench-checkpointer",
        },
        subjects: [{ kind: "ServiceAccount", name: "checkpointer", namespace: NS }],
      },
    ]
      .map((o) => stringify(o))
      .join("---\n"),
  );
  const token = (
    await c.kubectl(["-n", NS, "create", "token", "checkpointer", "--duration=2h"])
  ).trim();
  const dir = join(c.nc.dir, "manual");
  await mkdir(dir, { recursive: true });
  // The token and the password go to files (curl -H @file, buildah --authfile), never a command line.
  const header = join(dir, "auth-header");
  await writeFile(header, `Authorization: Bearer ${token}\n`, { mode: 0o600 });
  const authfile = join(dir, "auth.json");
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString("base64");
  await writeFile(authfile, JSON.stringify({ auths: { [reg.host]: { auth } } }), { mode: 0o600 });
  return {
    dir,
    header,
    authfile,
    // Storage in the run's directory; vfs, so nothing stays mounted.
    buildah: [
      "buildah",
      "--root",
      join(dir, "storage"),
      "--runroot",
      join(dir, "run"),
      "--storage-driver",
      "vfs",
    ],
    registry: reg.host,
    registryUrl: reg.hostUrl,
    registryAuth: `Basic ${auth}`,
  };
}

async function imageBytes(mm: Manual, repo: string): Promise<number | undefined> {
  const res = await fetch(`${mm.registryUrl}/v2/${repo}/manifests/latest`, {
    headers: {
      authorization: mm.registryAuth,
      accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    },
  });
  if (!res.ok) return undefined;
  const m = (await res.json()) as { config?: { size: number }; layers?: { size: number }[] };
  return (m.config?.size ?? 0) + (m.layers ?? []).reduce((a, l) => a + l.size, 0);
}

async function manualRun(c: Ctx, mm: Manual, sizeMb: number, name: string): Promise<ManualRun> {
  const original = await startWorkload(c, name, sizeMb, true);
  const before = await lastTick(c, name);
  // BUILDAH_ISOLATION=chroot: no runtime needed for `add` from a host file.
  const inCluster = (args: string[]) =>
    c.nc.inCluster(["env", "BUILDAH_ISOLATION=chroot", `TMPDIR=${mm.dir}`, ...args]);
  const b = (args: string[]) => inCluster([...mm.buildah, ...args]).then((r) => r.stdout.trim());
  const step = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t = performance.now();
    const v = await f();
    return [v, performance.now() - t];
  };
  const t0 = performance.now();
  const [resp, checkpointMs] = await step(() =>
    inCluster([
      "curl",
      "-sS",
      "--fail-with-body",
      "-X",
      "POST",
      "--cacert",
      c.nc.control.pki.caCert,
      "-H",
      `@${mm.header}`,
      `https://${c.edge.ip}:10250/checkpoint/${NS}/${name}/${CONTAINER}?timeout=120`,
    ]),
  );
  const nodePath = (JSON.parse(resp.stdout) as { items: string[] }).items[0] ?? "";
  const archive = join(mm.dir, basename(nodePath));
  const [, copyMs] = await step(() =>
    copyFile(join(c.edge.checkpointDir, basename(nodePath)), archive),
  );
  const tag = `localhost/${name}:latest`;
  const dest = `${mm.registry}/manual/${name}:latest`;
  const [ctr, buildMs] = await step(async () => {
    const ctr = await b(["from", "scratch"]);
    await b(["add", ctr, archive, "/"]);
    await b([
      "config",
      "--annotation",
      `io.kubernetes.cri-o.annotations.checkpoint.name=${CONTAINER}`,
      "--annotation",
      `org.criu.checkpoint.container.name=${CONTAINER}`,
      ctr,
    ]);
    return ctr;
  });
  const [, commitMs] = await step(() => b(["commit", "-q", ctr, tag]));
  const [, pushMs] = await step(() =>
    b(["push", "--authfile", mm.authfile, "--tls-verify=false", tag, `docker://${dest}`]),
  );
  // The user's own pod manifest, the image swapped for the checkpoint and set on the cloud node.
  const restored = `${name}-restored`;
  const spec = structuredClone(original.spec as V1PodSpec);
  spec.nodeName = c.cloud.name;
  spec.imagePullSecrets = [{ name: REGISTRY_SECRET }];
  const ctr0 = spec.containers[0];
  if (ctr0) ctr0.image = dest;
  const pod = {
    ...original,
    metadata: {
      ...original.metadata,
      name: restored,
      labels: { ...original.metadata?.labels, app: restored },
    },
    spec,
  };
  const [restoredAt, restoreMs] = await step(async () => {
    const since = Date.now();
    await c.kubectl(["apply", "--server-side", "-f", "-"], stringify(pod));
    const state = await waitUntil(
      `${restored} Running on ${c.cloud.name}`,
      async () => {
        const p = await c.core
          .readNamespacedPod({ namespace: NS, name: restored })
          .catch(() => undefined);
        const waiting = p?.status?.containerStatuses?.[0]?.state?.waiting;
        if (waiting?.reason && /Err|BackOff|Invalid/.test(waiting.reason)) {
          return `${waiting.reason}: ${waiting.message ?? ""}`;
        }
        if (p?.status?.phase === "Failed") return `Failed: ${p.status.message ?? ""}`;
        return p?.status?.phase === "Running" ? "Running" : undefined;
      },
      { timeoutMs: 180_000, intervalMs: 50 },
    );
    if (state !== "Running")
      throw new Error(`the manual restore of ${name} failed: ${restored} ${state}`);
    return since;
  });
  const [, deleteMs] = await step(() => c.kubectl(["-n", NS, "delete", "pod", name]));
  const totalMs = performance.now() - t0;
  const s = await checkState(c, restored, name, sizeMb, before, restoredAt);
  const archiveBytes = Number((await run("stat", ["-c", "%s", archive])).stdout.trim());
  const r: ManualRun = {
    sizeMb,
    checkpointMs,
    copyMs,
    buildMs,
    commitMs,
    pushMs,
    restoreMs,
    deleteMs,
    totalMs,
    imageBytes: await imageBytes(mm, `manual/${name}`),
    archiveBytes,
    logGapMs: s.gap,
    stateKept: true,
    note: `tick ${before.tick} before, resumed at ${s.resumed}`,
  };
  c.log(
    `  manual ${sizeMb} MiB: total ${Math.round(totalMs)} ms (curl ${Math.round(checkpointMs)}, copy ${Math.round(copyMs)}, from+add+config ${Math.round(buildMs)}, commit ${Math.round(commitMs)}, push ${Math.round(pushMs)}, pod Running ${Math.round(restoreMs)}, delete ${Math.round(deleteMs)}), image ${r.imageBytes ?? "-"} B; ${r.note}`,
  );
  await deletePods(c, [restored]);
  await b(["rm", "--all"]).catch(() => "");
  await b(["rmi", "--all", "--force"]).catch(() => "");
  await rm(archive, { force: true });
  await rm(join(c.edge.checkpointDir, basename(nodePath)), { force: true });
  return r;
}

// --- the run -----------------------------------------------------------------------

let current: { nc?: NodeCluster; starting?: Promise<NodeCluster>; stopping?: Promise<void> } = {};

async function teardown(log: (m: string) => void): Promise<void> {
  if (current.stopping) return current.stopping;
  const state = current;
  state.stopping = (async () => {
    const nc = state.nc ?? (await state.starting?.catch(() => undefined));
    if (!nc) return;
    log("tearing down the cluster");
    await nc.stop().catch((e: Error) => log(`teardown failed: ${e.message}`));
    log("cluster stopped and removed");
  })();
  return state.stopping;
}

export async function runE2eBench(o: {
  sizesMb: number[];
  runs: number;
  /** The edge node's link shaped to this many Mbit/s both ways (tc tbf) for every run. */
  edgeMbit?: number;
  log: (m: string) => void;
}): Promise<E2eResult> {
  const log = o.log;
  current = {};
  const onSignal = (signal: NodeJS.Signals) => {
    log(`received ${signal}`);
    setTimeout(() => process.exit(1), 120_000).unref();
    void teardown(log).finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    current.starting = startNodeCluster({ log: (m) => log(`  ${m}`) });
    const nc = await current.starting;
    current.nc = nc;
    const [edge, cloud] = nc.nodes;
    if (!edge || !cloud) throw new Error("the cluster has no edge and cloud node");
    const bundle = await installBundle(nc, {
      appNamespaces: [NS],
      edgeNode: {
        name: EDGENODE,
        spec: {
          pods: { namespaces: [NS] },
          // Never migrates by itself: usage can reach neither 100 % of the memory limit
          // nor 100 % of the CPU limit in every sample of an hour. Every migration is
          // a Migration the bench writes.
          thresholds: { cpu: { triggerPercent: 100 }, memory: { triggerPercent: 100 } },
          sustainedWindowSeconds: 3600,
          breachPercent: 100,
          cooldownSeconds: 0,
          maxConcurrentMigrations: 1,
          restorePolicy: "checkpoint",
          fallbackToRestart: false,
        },
      },
      log: (m) => log(`  ${m}`),
    });
    const kc = new KubeConfig();
    kc.loadFromFile(nc.kubeconfig);
    const c: Ctx = {
      nc,
      edge,
      cloud,
      core: kc.makeApiClient(CoreV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
      kubectl: bundle.kubectlRun,
      log,
    };
    const mm = await setUpManual(c);
    const criu = (
      await run(join(nc.binaries.criuDir, "criu"), ["--version"]).catch(() => ({ stdout: "" }))
    ).stdout.match(/Version: (\S+)/)?.[1];
    const buildah = (await run("buildah", ["--version"])).stdout.match(/version (\S+)/)?.[1];
    const versions = { ...nc.versions, criu: criu ?? "?", buildah: buildah ?? "?" };
    if (o.edgeMbit) {
      await edge.shape(o.edgeMbit);
      log(`edge link shaped to ${o.edgeMbit} Mbit/s both ways (tc tbf)`);
    }
    log(`cluster directory ${nc.dir}; KUBECONFIG=${nc.kubeconfig}`);
    log(
      `cluster up: Kubernetes ${versions.kubernetes}, containerd ${versions.containerd}, CRIU ${versions.criu}, buildah ${versions.buildah}`,
    );

    // Not counted: the base image onto both nodes, first runs of every path.
    const smallest = Math.min(...o.sizesMb);
    log(`warm-up (not counted): edgeshift and the manual recipe once at ${smallest} MiB`);
    await edgeshiftRun(c, smallest, "checkpoint", "warm-es");
    await manualRun(c, mm, smallest, "warm-manual");

    const result: E2eResult = { versions, edgeshift: [], manual: [] };
    for (const sizeMb of o.sizesMb) {
      for (let i = 0; i < o.runs; i++) {
        log(`${sizeMb} MiB, run ${i + 1}/${o.runs}`);
        // Interleaved, so drift on the machine touches every column alike.
        result.edgeshift.push(await edgeshiftRun(c, sizeMb, "checkpoint", `es-ck-${sizeMb}-${i}`));
        result.edgeshift.push(await edgeshiftRun(c, sizeMb, "restart", `es-rs-${sizeMb}-${i}`));
        result.manual.push(await manualRun(c, mm, sizeMb, `manual-${sizeMb}-${i}`));
      }
    }
    return result;
  } catch (err) {
    if (current.nc) await diagnose(current.nc, log).catch(() => {});
    throw err;
  } finally {
    await teardown(log);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** The components' last words when a run failed. */
async function diagnose(nc: NodeCluster, log: (m: string) => void): Promise<void> {
  const kubectl = (args: string[]) =>
    run(nc.kubectl, ["--kubeconfig", nc.kubeconfig, ...args], { maxBuffer: 8 << 20 })
      .then((r) => r.stdout)
      .catch((e: Error) => e.message);
  log(`pods:\n${await kubectl(["-n", NS, "get", "pods", "-o", "wide"])}`);
  log(
    `agent logs:\n${await kubectl(["-n", SYSTEM_NAMESPACE, "logs", "-l", "app.kubernetes.io/name=edgeshift-agent", "--tail=30"])}`,
  );
  log(
    `operator logs:\n${await kubectl(["-n", SYSTEM_NAMESPACE, "logs", "-l", "app.kubernetes.io/name=edgeshift-operator", "--tail=30"])}`,
  );
}
