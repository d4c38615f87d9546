// A simulated node: plays kubelet + CRI-O for one Node registered with the
// real (local) control plane, running its pods' containers for real with
// SimRuntime (runc + CRIU). It registers the Node and keeps its status and
// lease fresh, polls the pods bound to it, starts their containers (or
// restores them when the image is a CRI-O checkpoint image), reports pod
// status the way a kubelet does, serves the kubelet checkpoint endpoint
// (real `runc checkpoint --leave-running` + a CRI-O-format archive), and
// stops and removes pods marked for deletion.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  ApiException,
  CoordinationV1Api,
  type V1Container,
  type V1ContainerStatus,
  V1MicroTime,
  type V1Pod,
} from "@kubernetes/client-node";
import {
  type CheckpointCall,
  KubeletError,
  type KubeletServer,
  startKubeletServer,
} from "../../migration/kubelet/server.ts";
import {
  credentialsFromDockerConfigJson,
  RegistryCredentials,
} from "../../migration/registry/auth.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { adminClients, type Clients, createNode, setNodeStatus } from "../support/objects.ts";
import { repoRoot } from "../support/operator.ts";
import {
  checkpointToArchive,
  PullError,
  parseImageRef,
  pullCheckpointImage,
  type RegistryAccess,
  unpackRootfsDiff,
} from "./crio.ts";
import { type ContainerSpec, type JoinedProcess, SimRuntime } from "./runtime.ts";
import type { SimTools } from "./setup.ts";
import { counterWorkload } from "./workloads.ts";

export interface SimNodeOptions {
  /** Admin kubeconfig of the control plane. */
  kubeconfig: string;
  name: string;
  labels?: Record<string, string>;
  tools: SimTools;
  /** status.nodeInfo.containerRuntimeVersion; default cri-o://1.30.4 (checkpoint and restore). */
  runtimeVersion?: string;
  capacity?: { cpu: string; memory: string; pods: string };
  /**
   * Registries this node pulls from, by host[:port]: their credentials (the
   * node's global auth file, used when a pod names no pull secret) and
   * whether they speak plain HTTP. Images on other hosts are "local": every
   * such image is the project's workload root filesystem.
   */
  registries?: Record<string, { username?: string; password?: string; insecure?: boolean }>;
  pollMs?: number;
  /**
   * Run only pods of these namespaces (default: all). Pods elsewhere stay
   * untouched (Pending), e.g. the agent DaemonSet's pod when a test runs the
   * agent as a host process instead.
   */
  namespaces?: string[];
  /** Fault injection for tests: runs on a downloaded checkpoint layer before its digest is checked. */
  afterLayerDownload?: (blobPath: string) => Promise<void>;
  /** Fault injection for tests: runs on the unpacked checkpoint folder before `runc restore`. */
  beforeRestore?: (
    checkpointDir: string,
    pod: { namespace: string; name: string },
  ) => Promise<void>;
  /**
   * The host program an ephemeral container runs, joined to its target
   * container's PID namespace. Default: the project's monitor
   * (sidecar/main.ts with this process's Node), whatever the image.
   */
  ephemeralCommand?: (image: string) => string[];
  /** Restores that outlive this fail (CRIU 4.1.1 can spin on a damaged image). Default 60 s. */
  restoreTimeoutMs?: number;
}

export interface ContainerRecord {
  name: string;
  image: string;
  /** Runtime container id; undefined while it could not be created. */
  id?: string;
  spec?: ContainerSpec;
  state: "running" | "waiting" | "terminated";
  reason?: string;
  message?: string;
  startedAt?: Date;
  /** Set when the container was restored from a checkpoint image. */
  restoredFrom?: string;
}

interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  dir: string;
  podIP: string;
  startTime: Date;
  containers: Map<string, ContainerRecord>;
  lastStatus?: string;
  changedAt: Date;
  lastRefresh: number;
  /** Ephemeral containers (monitors) joined to their target's PID namespace. */
  monitors: Map<string, MonitorRecord>;
}

interface MonitorRecord {
  image: string;
  joined?: JoinedProcess;
  startedAt: Date;
  exitCode?: number | null;
  error?: string;
}

export interface CheckpointRecord {
  namespace: string;
  pod: string;
  container: string;
  archive: string;
  archiveBytes: number;
  /** Wall clock around the whole call (dump + archive). */
  startedAt: Date;
  finishedAt: Date;
  /** runc checkpoint (CRIU dump) alone. */
  checkpointMs: number;
  /** Dump plus the archive. */
  totalMs: number;
  frozenUs?: number;
}

export interface RestoreRecord {
  namespace: string;
  pod: string;
  container: string;
  image: string;
  layerBytes: number;
  pullMs: number;
  /** runc restore (CRIU) alone. */
  restoreMs: number;
  totalMs: number;
  /** Wall clock: pod picked up, container running. */
  startedAt: Date;
  finishedAt: Date;
}

let nodeCount = 0;

/** "500m" -> 0.5, "2" -> 2. */
export function parseCpu(q: string): number {
  return q.endsWith("m") ? Number(q.slice(0, -1)) / 1000 : Number(q);
}

/** "256Mi" -> bytes. */
export function parseMemory(q: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]i?|[kmgt])?$/.exec(q);
  if (!m) return Number(q);
  const n = Number(m[1]);
  const unit = m[2] ?? "";
  const pow = { K: 1, M: 2, G: 3, T: 4 }[unit.charAt(0).toUpperCase()] ?? 0;
  return Math.round(n * (unit.endsWith("i") ? 1024 : 1000) ** pow);
}

export class SimNode {
  readonly name: string;
  readonly runtime: SimRuntime;
  readonly root: string;
  readonly checkpointDir: string;
  readonly kubelet: KubeletServer;
  readonly checkpoints: CheckpointRecord[] = [];
  readonly restores: RestoreRecord[] = [];
  /** Errors of the pod loop, for debugging a test. */
  readonly errors: string[] = [];
  /** Fault injection, changeable between pods. */
  readonly faults: Pick<SimNodeOptions, "beforeRestore" | "afterLayerDownload"> = {};
  private readonly opts: SimNodeOptions;
  private readonly c: Clients;
  private readonly coordination: CoordinationV1Api;
  private readonly pods = new Map<string, PodRecord>();
  private readonly index: number;
  private ipCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;
  private tickRunning: Promise<void> | undefined;
  private closed = false;

  private constructor(
    opts: SimNodeOptions,
    c: Clients,
    runtime: SimRuntime,
    root: string,
    kubelet: KubeletServer,
  ) {
    this.opts = opts;
    this.name = opts.name;
    this.c = c;
    this.runtime = runtime;
    this.root = root;
    this.checkpointDir = join(root, "checkpoints");
    this.kubelet = kubelet;
    this.coordination = c.kc.makeApiClient(CoordinationV1Api);
    this.index = ++nodeCount;
    this.faults.beforeRestore = opts.beforeRestore;
    this.faults.afterLayerDownload = opts.afterLayerDownload;
  }

  /** Registers the Node, serves its kubelet endpoint and starts the pod loop. */
  static async start(opts: SimNodeOptions): Promise<SimNode> {
    const c = adminClients(opts.kubeconfig);
    const root = await mkdtemp(join(tmpdir(), `edgeshift-simnode-${opts.name}-`));
    let runtime: SimRuntime | undefined;
    let kubelet: KubeletServer | undefined;
    try {
      runtime = await SimRuntime.create({ criuBinDir: opts.tools.criuBinDir, name: opts.name });
      await mkdir(join(root, "checkpoints"), { recursive: true });
      let self: SimNode | undefined;
      kubelet = await startKubeletServer({
        kubeconfig: opts.kubeconfig,
        nodeName: opts.name,
        checkpoint: (call) => {
          if (!self) throw new KubeletError(503, "starting");
          return self.handleCheckpoint(call);
        },
      });
      const node = new SimNode(opts, c, runtime, root, kubelet);
      self = node;
      const runtimeVersion = opts.runtimeVersion ?? "cri-o://1.30.4";
      await createNode(c, opts.name, opts.labels ?? {}, runtimeVersion, opts.capacity).catch(
        async (err: unknown) => {
          if (!(err instanceof ApiException && err.code === 409)) throw err;
          await setNodeStatus(c, opts.name, runtimeVersion, opts.capacity);
        },
      );
      await c.core.patchNodeStatus(
        {
          name: opts.name,
          body: { status: { daemonEndpoints: { kubeletEndpoint: { Port: kubelet.port } } } },
        },
        mergePatch,
      );
      await node.heartbeat();
      node.timer = setInterval(() => node.kick(), opts.pollMs ?? 200);
      node.beat = setInterval(() => void node.heartbeat(), 10_000);
      return node;
    } catch (err) {
      await kubelet?.close();
      await runtime?.close().catch(() => {});
      await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  /** Host folder behind a pod's emptyDir volume (e.g. the counter's /progress). */
  volumeDir(podUid: string, volume: string): string {
    return join(this.root, "pods", podUid, "volumes", volume);
  }

  /** The runtime container of a pod's container, if it runs here. */
  container(namespace: string, pod: string, container: string): ContainerRecord | undefined {
    for (const r of this.pods.values()) {
      if (r.namespace === namespace && r.name === pod) return r.containers.get(container);
    }
    return undefined;
  }

  /** Stops the loop, removes every container, the Node object and lease, and all files. */
  async close(opts: { deleteNode?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.beat) clearInterval(this.beat);
    await this.tickRunning;
    const errors: unknown[] = [];
    await this.kubelet.close().catch((e) => errors.push(e));
    await this.runtime.close().catch((e) => errors.push(e));
    if (opts.deleteNode ?? true) {
      await this.c.core.deleteNode({ name: this.name }).catch(() => {});
      await this.coordination
        .deleteNamespacedLease({ name: this.name, namespace: "kube-node-lease" })
        .catch(() => {});
    }
    await rm(this.root, { recursive: true, force: true }).catch((e) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, `closing sim node ${this.name}`);
  }

  // --- node ----------------------------------------------------------------------------

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    const runtime = this.opts.runtimeVersion ?? "cri-o://1.30.4";
    await setNodeStatus(this.c, this.name, runtime, this.opts.capacity).catch(() => {});
    const body = {
      metadata: { name: this.name, namespace: "kube-node-lease" },
      spec: { holderIdentity: this.name, leaseDurationSeconds: 40, renewTime: new V1MicroTime() },
    };
    await this.coordination
      .replaceNamespacedLease({ name: this.name, namespace: "kube-node-lease", body })
      .catch(() => this.coordination.createNamespacedLease({ namespace: "kube-node-lease", body }))
      .catch(() => {});
  }

  // --- pods ----------------------------------------------------------------------------

  private kick(): void {
    if (this.tickRunning || this.closed) return;
    this.tickRunning = this.tick()
      .catch((err: unknown) => this.note(`tick: ${(err as Error).message}`))
      .finally(() => {
        this.tickRunning = undefined;
      });
  }

  private note(msg: string): void {
    this.errors.push(msg);
    if (this.errors.length > 100) this.errors.shift();
  }

  private async tick(): Promise<void> {
    const list = await this.c.core.listPodForAllNamespaces({
      fieldSelector: `spec.nodeName=${this.name}`,
    });
    const seen = new Set<string>();
    for (const p of list.items) {
      if (this.closed) return;
      const uid = p.metadata?.uid ?? "";
      const namespace = p.metadata?.namespace ?? "";
      const name = p.metadata?.name ?? "";
      if (this.opts.namespaces && !this.opts.namespaces.includes(namespace)) continue;
      seen.add(uid);
      if (p.metadata?.deletionTimestamp) {
        await this.stopPod(uid);
        await this.c.core
          .deleteNamespacedPod({
            namespace,
            name,
            gracePeriodSeconds: 0,
            body: { gracePeriodSeconds: 0, preconditions: { uid } },
          })
          .catch(() => {});
        continue;
      }
      let rec = this.pods.get(uid);
      if (!rec) {
        if (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") continue;
        rec = await this.startPod(p);
      }
      await this.refresh(rec);
      await this.syncMonitors(p, rec);
      await this.report(p, rec).catch((err: unknown) =>
        this.note(`status of ${namespace}/${name}: ${(err as Error).message}`),
      );
    }
    // Pods removed behind our back (force deletion): their containers go too.
    for (const uid of [...this.pods.keys()]) if (!seen.has(uid)) await this.stopPod(uid);
  }

  private async startPod(p: V1Pod): Promise<PodRecord> {
    const uid = p.metadata?.uid ?? "";
    const rec: PodRecord = {
      uid,
      namespace: p.metadata?.namespace ?? "",
      name: p.metadata?.name ?? "",
      dir: join(this.root, "pods", uid),
      podIP: `10.244.${this.index}.${++this.ipCount}`,
      startTime: new Date(),
      containers: new Map(),
      changedAt: new Date(),
      lastRefresh: Date.now(),
      monitors: new Map(),
    };
    this.pods.set(uid, rec);
    await mkdir(rec.dir, { recursive: true });
    for (const c of p.spec?.containers ?? []) {
      const cr: ContainerRecord = { name: c.name, image: c.image ?? "", state: "waiting" };
      rec.containers.set(c.name, cr);
      try {
        await this.startContainer(p, rec, c, cr);
      } catch (err) {
        cr.state = "waiting";
        cr.reason = err instanceof PullError ? err.reason : "CreateContainerError";
        cr.message = (err as Error).message;
        this.note(`${rec.namespace}/${rec.name}/${c.name}: ${cr.reason}: ${cr.message}`);
      }
    }
    rec.changedAt = new Date();
    return rec;
  }

  private async registryAccess(p: V1Pod, host: string): Promise<RegistryAccess | undefined> {
    const known = this.opts.registries?.[host];
    for (const s of p.spec?.imagePullSecrets ?? []) {
      if (!s.name) continue;
      const secret = await this.c.core
        .readNamespacedSecret({ namespace: p.metadata?.namespace ?? "", name: s.name })
        .catch(() => undefined);
      const data = secret?.data?.[".dockerconfigjson"];
      if (!data) continue;
      const credentials = credentialsFromDockerConfigJson(Buffer.from(data, "base64"), host);
      if (credentials) return { credentials, insecure: known?.insecure };
    }
    if (!known) return undefined;
    return {
      insecure: known.insecure,
      credentials:
        known.username !== undefined
          ? new RegistryCredentials(known.username, known.password ?? "")
          : undefined,
    };
  }

  /** The container as the pod spec describes it; volumes are emptyDir (per pod) or hostPath. */
  private async containerSpec(p: V1Pod, rec: PodRecord, c: V1Container): Promise<ContainerSpec> {
    let args = [...(c.command ?? []), ...(c.args ?? [])];
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    // The project's images have one entrypoint: the counter workload.
    if (args.length === 0) args = counterWorkload({ progressDir: "" }).args;
    const mounts: ContainerSpec["mounts"] = [];
    for (const vm of c.volumeMounts ?? []) {
      const vol = p.spec?.volumes?.find((v) => v.name === vm.name);
      let source: string | undefined;
      if (vol?.emptyDir) {
        source = this.volumeDir(rec.uid, vm.name);
        await mkdir(source, { recursive: true });
      } else if (vol?.hostPath) {
        source = vol.hostPath.path;
      }
      if (source) mounts.push({ source, destination: vm.mountPath, readOnly: vm.readOnly });
    }
    const limits = c.resources?.limits ?? {};
    const id = `${rec.name.slice(0, 40)}-${c.name.slice(0, 20)}-${rec.uid.slice(0, 8)}`;
    return {
      id,
      rootfs: this.opts.tools.rootfs,
      args,
      env,
      mounts,
      cpuQuota: limits.cpu ? parseCpu(String(limits.cpu)) : undefined,
      memoryLimit: limits.memory ? parseMemory(String(limits.memory)) : undefined,
      logFile: join(rec.dir, `${c.name}.log`),
      hostname: rec.name.slice(0, 63),
    };
  }

  private async startContainer(
    p: V1Pod,
    rec: PodRecord,
    c: V1Container,
    cr: ContainerRecord,
  ): Promise<void> {
    const image = c.image ?? "";
    const ref = parseImageRef(image);
    const access = ref ? await this.registryAccess(p, ref.registry) : undefined;
    const spec = await this.containerSpec(p, rec, c);
    const started = performance.now();
    const startedAt = new Date();
    // Like CRI-O: an image from a registry is pulled and inspected; one carrying
    // the checkpoint annotation is restored instead of started.
    const pulled = access
      ? await pullCheckpointImage(image, access, rec.dir, {
          afterDownload: this.faults.afterLayerDownload,
        })
      : undefined;
    if (!pulled) {
      await this.runtime.createContainer(spec);
      cr.id = spec.id;
      cr.spec = spec;
      cr.state = "running";
      cr.startedAt = new Date();
      return;
    }
    const pullMs = performance.now() - started;
    const seed = join(rec.dir, `${c.name}-rootfs-diff`);
    try {
      // CRI-O refuses a restore whose container lacks a bind mount the original had.
      const bindMounts = JSON.parse(
        await readFile(join(pulled.dir, "bind.mounts"), "utf8").catch(() => "[]"),
      ) as { destination?: string }[];
      const have = new Set((spec.mounts ?? []).map((m) => m.destination));
      const missing = bindMounts.map((b) => b.destination ?? "").filter((d) => d && !have.has(d));
      if (missing.length > 0) {
        throw new PullError(
          "CreateContainerError",
          `failed to restore container ${c.name}: bind mounts of the checkpoint are missing: ${missing.join(", ")}`,
        );
      }
      await unpackRootfsDiff(pulled, seed);
      await this.faults.beforeRestore?.(join(pulled.dir, "checkpoint"), {
        namespace: rec.namespace,
        name: rec.name,
      });
      let restoreMs: number;
      try {
        const r = await this.runtime.restore(
          { ...spec, rootfsDiff: seed },
          join(pulled.dir, "checkpoint"),
          { timeoutMs: this.opts.restoreTimeoutMs ?? 60_000 },
        );
        restoreMs = r.durationMs;
      } catch (err) {
        throw new PullError(
          "CreateContainerError",
          `failed to restore container ${c.name} from checkpoint image ${image}: ${(err as Error).message}`,
        );
      }
      cr.id = spec.id;
      cr.spec = spec;
      cr.state = "running";
      cr.startedAt = new Date();
      cr.restoredFrom = image;
      this.restores.push({
        namespace: rec.namespace,
        pod: rec.name,
        container: c.name,
        image,
        layerBytes: pulled.layerBytes,
        pullMs,
        restoreMs,
        totalMs: performance.now() - started,
        startedAt,
        finishedAt: new Date(),
      });
    } finally {
      await rm(dirname(pulled.dir), { recursive: true, force: true });
      await rm(seed, { recursive: true, force: true });
    }
  }

  /** Notices containers that ended (about once a second). */
  private async refresh(rec: PodRecord): Promise<void> {
    if (Date.now() - rec.lastRefresh < 1000) return;
    rec.lastRefresh = Date.now();
    for (const cr of rec.containers.values()) {
      if (cr.state !== "running" || !cr.id) continue;
      const st = await this.runtime.state(cr.id).catch(() => undefined);
      if (!st || st.status === "stopped") {
        // runc does not keep a detached container's exit code: the test
        // workloads end only by finishing (exit 0) or by being killed.
        cr.state = "terminated";
        cr.reason = "Completed";
        rec.changedAt = new Date();
      }
    }
  }

  private async report(p: V1Pod, rec: PodRecord): Promise<void> {
    const cs = [...rec.containers.values()];
    const allRunning = cs.length > 0 && cs.every((c) => c.state === "running");
    const allDone = cs.length > 0 && cs.every((c) => c.state === "terminated");
    const phase = allDone ? "Succeeded" : allRunning ? "Running" : "Pending";
    const mons = [...rec.monitors.entries()];
    const key = JSON.stringify([
      cs.map((c) => [c.name, c.state, c.reason, c.message]),
      mons.map(([n, m]) => [n, !!m.joined, m.exitCode, m.error]),
    ]);
    if (key === rec.lastStatus && p.status?.phase === phase) return;
    const at = rec.changedAt.toISOString();
    const cond = (type: string, ok: boolean, reason?: string) => ({
      type,
      status: ok ? "True" : "False",
      lastTransitionTime: at,
      ...(reason && !ok ? { reason } : {}),
    });
    const notReady = allDone ? "PodCompleted" : "ContainersNotReady";
    const statuses: V1ContainerStatus[] = cs.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.restoredFrom ?? c.image,
      containerID: c.id ? `cri-o://${c.id}` : undefined,
      ready: c.state === "running",
      started: c.state === "running",
      restartCount: 0,
      state:
        c.state === "running"
          ? { running: { startedAt: c.startedAt ?? rec.startTime } }
          : c.state === "terminated"
            ? {
                terminated: {
                  exitCode: 0,
                  reason: c.reason ?? "Completed",
                  startedAt: c.startedAt ?? rec.startTime,
                  finishedAt: rec.changedAt,
                },
              }
            : { waiting: { reason: c.reason ?? "ContainerCreating", message: c.message } },
    }));
    await this.c.core.patchNamespacedPodStatus(
      {
        namespace: rec.namespace,
        name: rec.name,
        body: {
          status: {
            phase,
            hostIP: "127.0.0.1",
            hostIPs: [{ ip: "127.0.0.1" }],
            podIP: rec.podIP,
            podIPs: [{ ip: rec.podIP }],
            startTime: rec.startTime.toISOString(),
            conditions: [
              cond("PodReadyToStartContainers", true),
              cond("Initialized", true),
              cond("Ready", allRunning, notReady),
              cond("ContainersReady", allRunning, notReady),
              cond("PodScheduled", true),
            ],
            containerStatuses: statuses,
            ephemeralContainerStatuses: mons.map(([n, m]) => ({
              name: n,
              image: m.image,
              imageID: m.image,
              ready: false,
              restartCount: 0,
              state: m.error
                ? { waiting: { reason: "CreateContainerError", message: m.error } }
                : m.exitCode !== undefined
                  ? {
                      terminated: {
                        exitCode: m.exitCode ?? 137,
                        startedAt: m.startedAt,
                        finishedAt: rec.changedAt,
                      },
                    }
                  : { running: { startedAt: m.startedAt } },
            })),
          },
        },
      },
      mergePatch,
    );
    rec.lastStatus = key;
  }

  /**
   * Starts each ephemeral container with a targetContainerName as a host
   * process in that container's PID namespace (runInPidNamespaceOf), the way
   * the runtime does, with its env (secretKeyRef values resolved).
   */
  private async syncMonitors(p: V1Pod, rec: PodRecord): Promise<void> {
    for (const ec of p.spec?.ephemeralContainers ?? []) {
      const existing = rec.monitors.get(ec.name);
      if (existing) {
        if (
          existing.joined &&
          existing.exitCode === undefined &&
          existing.joined.child.exitCode !== null
        ) {
          existing.exitCode = existing.joined.child.exitCode;
          rec.changedAt = new Date();
        }
        continue;
      }
      const target = ec.targetContainerName
        ? rec.containers.get(ec.targetContainerName)
        : undefined;
      if (!target?.id || target.state !== "running") continue;
      const m: MonitorRecord = { image: ec.image ?? "", startedAt: new Date() };
      rec.monitors.set(ec.name, m);
      rec.changedAt = new Date();
      try {
        const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
        for (const e of ec.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) {
            const secret = await this.c.core.readNamespacedSecret({
              namespace: rec.namespace,
              name: ref.name ?? "",
            });
            env[e.name] = Buffer.from(secret.data?.[ref.key] ?? "", "base64").toString();
          } else if (e.value !== undefined) env[e.name] = e.value;
        }
        const argv = this.opts.ephemeralCommand?.(m.image) ?? [
          process.execPath,
          join(repoRoot, "sidecar/main.ts"),
        ];
        m.joined = await this.runtime.runInPidNamespaceOf(target.id, argv, {
          env,
          logFile: join(rec.dir, `${ec.name}.log`),
        });
      } catch (err) {
        m.error = (err as Error).message;
        this.note(`${rec.namespace}/${rec.name}/${ec.name}: ${m.error}`);
      }
    }
  }

  /** Log of an ephemeral container (a monitor) of a pod running here. */
  async ephemeralLog(namespace: string, pod: string, name: string): Promise<string> {
    for (const r of this.pods.values()) {
      if (r.namespace === namespace && r.name === pod) {
        return readFile(join(r.dir, `${name}.log`), "utf8").catch(() => "");
      }
    }
    return "";
  }

  /** Whether an ephemeral container of the pod runs here now. */
  ephemeralRunning(namespace: string, pod: string, name: string): boolean {
    for (const r of this.pods.values()) {
      if (r.namespace === namespace && r.name === pod) {
        const m = r.monitors.get(name);
        return (
          !!m?.joined && m.joined.child.exitCode === null && m.joined.child.signalCode === null
        );
      }
    }
    return false;
  }

  private async stopPod(uid: string): Promise<void> {
    const rec = this.pods.get(uid);
    if (!rec) return;
    for (const m of rec.monitors.values()) await m.joined?.stop().catch(() => {});
    for (const cr of rec.containers.values()) {
      if (cr.id) await this.runtime.delete(cr.id).catch((e: Error) => this.note(e.message));
    }
    this.pods.delete(uid);
  }

  // --- checkpoint ----------------------------------------------------------------------

  private async handleCheckpoint(call: CheckpointCall): Promise<string> {
    const { namespace, pod, container } = call;
    let p: V1Pod;
    try {
      p = await this.c.core.readNamespacedPod({ namespace, name: pod });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) {
        throw new KubeletError(404, "pod does not exist");
      }
      throw err;
    }
    if (p.spec?.nodeName !== this.name) throw new KubeletError(404, "pod does not exist");
    if (!p.spec.containers.some((c) => c.name === container)) {
      throw new KubeletError(404, `container ${container} does not exist`);
    }
    const rec = this.pods.get(p.metadata?.uid ?? "");
    const cr = rec?.containers.get(container);
    if (!rec || !cr?.id || !cr.spec || cr.state !== "running") {
      throw new KubeletError(
        500,
        `checkpointing of ${namespace}/${pod}/${container} failed (rpc error: code = Unknown desc = container is not running)`,
      );
    }
    const timeoutMs =
      call.timeoutSeconds !== undefined && call.timeoutSeconds > 0
        ? call.timeoutSeconds * 1000
        : 120_000;
    const startedAt = new Date();
    try {
      const a = await checkpointToArchive(
        this.runtime,
        this.checkpointDir,
        {
          namespace,
          pod,
          podUid: rec.uid,
          container,
          image: cr.image,
          containerId: cr.id,
          spec: cr.spec,
          createdAt: cr.startedAt ?? rec.startTime,
        },
        { timeoutMs },
      );
      this.checkpoints.push({
        namespace,
        pod,
        container,
        archive: a.path,
        archiveBytes: a.sizeBytes,
        startedAt,
        finishedAt: new Date(),
        checkpointMs: a.checkpointMs,
        totalMs: a.totalMs,
        frozenUs: a.frozenUs,
      });
      return a.path;
    } catch (err) {
      const msg = (err as Error).message;
      const code = /timed out/.test(msg) ? "DeadlineExceeded" : "Unknown";
      throw new KubeletError(
        500,
        `checkpointing of ${namespace}/${pod}/${container} failed (rpc error: code = ${code} desc = ${msg})`,
      );
    }
  }
}
