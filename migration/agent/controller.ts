import { access, readFile } from "node:fs/promises";
import type { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { formatDuration } from "../../operator/api/duration.ts";
import { migrationFinished } from "../../operator/api/status.ts";
import {
  type ContainerCheckpointStatus,
  EDGENODE_LABEL,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationList,
  type MigrationStatus,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { getCondition, setCondition } from "../../operator/kube/conditions.ts";
import { type InformerMetrics, SupervisedInformer } from "../../operator/kube/informer.ts";
import {
  setMigrationFinalizers,
  writeMigrationStatus,
} from "../../operator/kube/migration-status.ts";
import { isNotFound } from "../../operator/kube/patch.ts";
import { RequeueError, WorkQueue } from "../../operator/kube/workqueue.ts";
import { deleteArchive } from "../archive/gc.ts";
import { type ArchiveOwner, matchArchive } from "../archive/match.ts";
import { recordCheckpointRequest } from "../archive/requests.ts";
import { type ArchiveInfo, validateArchive } from "../archive/validate.ts";
import { CheckpointError, checkpoint, type KubeletPin } from "../kubelet/client.ts";
import { tagForMigration } from "../oci/tag.ts";
import type { RegistryCredentials } from "../registry/auth.ts";
import { deleteCheckpointImages, IMAGE_FINALIZER } from "../registry/cleanup.ts";
import { RegistryClient } from "../registry/client.ts";
import { pushCheckpointImage } from "../registry/push.ts";
import { parseRepository } from "../registry/reference.ts";
import { findAdoptableArchive } from "./adopt.ts";
import type { AgentConfig } from "./config.ts";
import { classifyStepError, type StepCondition, StepFailure } from "./errors.ts";
import {
  type ContainerCgroup,
  checkpointHeld,
  FreezeError,
  findContainerCgroup,
  recoverHold,
  selfFrozen,
  setFrozen,
} from "./freezer.ts";

/**
 * A source container this agent froze (handoff Freeze). Until `committed` (the
 * image reported: the operator may restore from it) the agent thaws it by
 * itself on any failure and when `fenceTimeoutMs` has passed since the freeze,
 * an edge partition included, and then never reports the image. Once
 * committed, only a Migration seen Failed or deleted thaws it; a Succeeded one
 * deletes it (the kubelet's SIGKILL, for which runc thaws it: it never runs again).
 */
interface Fence {
  uid: string;
  cgroups: ContainerCgroup[];
  frozenAt: number;
  committed: boolean;
  abandoned: boolean;
  /** When this agent thawed it again (epoch ms). */
  thawedAt?: number;
  /** Why it gave the original up: what the Migration fails with, whatever a retry would find. */
  abandonedWith?: StepFailure;
  timer?: NodeJS.Timeout;
}

export interface AgentDeps {
  config: AgentConfig;
  kubeConfig: KubeConfig;
  custom: CustomObjectsApi;
  log: Logger;
  registry: Registry;
  credentials: () => Promise<RegistryCredentials | undefined>;
  informerMetrics?: InformerMetrics;
}

const now = () => new Date().toISOString();

/** Held by a Migration while its checkpoint images exist in the registry. */
export { IMAGE_FINALIZER };

const AGENT_STEPS = ["checkpoint", "push"] as const;

/**
 * The agent's metrics. Each step's duration, its successes and both byte kinds
 * exist at 0 from the start ("avoid missing metrics"), so a node that has not
 * moved anything yet still shows in rate() and sums; failure reasons appear as
 * they happen.
 */
export function agentMetrics(registry: Registry) {
  const steps = new Histogram({
    name: "edgeshift_agent_step_duration_seconds",
    help: "Duration of the agent's steps (checkpoint, push) per container",
    labelNames: ["step"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const results = new Counter({
    name: "edgeshift_agent_steps_total",
    help: "Agent steps by result",
    labelNames: ["step", "result"],
    registers: [registry],
  });
  const bytes = new Counter({
    name: "edgeshift_agent_bytes_total",
    help: "Checkpoint archive bytes read and layer bytes uploaded",
    labelNames: ["kind"],
    registers: [registry],
  });
  for (const step of AGENT_STEPS) {
    steps.zero({ step });
    results.inc({ step, result: "success" }, 0);
  }
  for (const kind of ["archive", "uploaded"]) bytes.inc({ kind }, 0);
  return { steps, results, bytes };
}

/**
 * The node-local half of a migration. For each Migration of a pod on this node
 * in the Checkpointing phase: kubelet checkpoint -> validate -> pack and push
 * -> delete the archive, writing every result to status before the next step,
 * so a restarted agent resumes instead of checkpointing or pushing twice.
 */
export class AgentController {
  private readonly deps: AgentDeps;
  /** kubeletTLS NodeSelfSigned: the kubelet certificate seen first, for this agent's lifetime. */
  private readonly kubeletPin: KubeletPin = {};
  private readonly log: Logger;
  private readonly informer: SupervisedInformer<Migration>;
  private readonly queue: WorkQueue;
  private readonly steps: Histogram<"step">;
  private readonly results: Counter<"step" | "result">;
  private readonly bytes: Counter<"kind">;
  private readonly fences = new Map<string, Fence>();
  /** Migrations (key/uid) whose rollback thaw is done: nothing to look at again. */
  private readonly settled = new Set<string>();

  constructor(deps: AgentDeps) {
    this.deps = deps;
    this.log = deps.log.child({ controller: "agent", node: deps.config.node });
    // One agent per EdgeNode on a node: a cloud node runs the agent of every
    // EdgeNode whose pods may return from it, and each serves only its own.
    const labelSelector = deps.config.edgeNode
      ? `${SOURCE_NODE_LABEL}=${deps.config.node},${EDGENODE_LABEL}=${deps.config.edgeNode}`
      : `${SOURCE_NODE_LABEL}=${deps.config.node}`;
    this.queue = new WorkQueue({ name: "agent-migrations", log: this.log, baseDelayMs: 500 });
    this.informer = new SupervisedInformer<Migration>({
      kubeConfig: deps.kubeConfig,
      resource: "migrations",
      path: `/apis/${GROUP}/${VERSION}/${MIGRATION_PLURAL}`,
      labelSelector,
      list: async () =>
        (await deps.custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          labelSelector,
        })) as MigrationList,
      onChange: (m) => this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`),
      log: this.log,
      metrics: deps.informerMetrics,
    });
    const metrics = agentMetrics(deps.registry);
    this.steps = metrics.steps;
    this.results = metrics.results;
    this.bytes = metrics.bytes;
  }

  get synced(): boolean {
    return this.informer.hasSynced;
  }

  get healthy(): boolean {
    return this.informer.healthy;
  }

  async start(): Promise<void> {
    this.queue.start((key) => this.reconcile(key), 1);
    await this.informer.start();
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    await this.queue.shutdown();
    // A frozen original stays frozen across the agent's restart: the next
    // agent resumes its fence from status.timestamps.frozen.
    for (const f of this.fences.values()) clearTimeout(f.timer);
  }

  private async read(namespace: string, name: string): Promise<Migration | undefined> {
    try {
      return (await this.deps.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace,
        name,
      })) as Migration;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Our turn: the operator moved it to Checkpointing and no step has ended it. */
  private ours(m: Migration): boolean {
    if (m.metadata.labels?.[SOURCE_NODE_LABEL] !== this.deps.config.node) return false;
    if (m.status?.phase !== "Checkpointing" && m.status?.phase !== "Pushing") return false;
    const conds = m.status?.conditions;
    if (getCondition(conds, "Checkpointed")?.status === "False") return false;
    const pushed = getCondition(conds, "ImagePushed")?.status;
    return pushed !== "True" && pushed !== "False";
  }

  private async reconcile(key: string): Promise<undefined> {
    const [namespace = "", name = ""] = key.split("/");
    if (!this.informer.get(name, namespace)) return undefined;
    // The cache can lag our own writes; each step starts from what is recorded now.
    let m = await this.read(namespace, name);
    if (!m) {
      this.dropFence(key);
      for (const mark of this.settled) if (mark.startsWith(`${key}/`)) this.settled.delete(mark);
      return undefined;
    }
    await this.thawRolledBack(key, m);
    if (migrationFinished(m) && m.metadata.labels?.[SOURCE_NODE_LABEL] === this.deps.config.node) {
      // Ended by the operator while a step was still retrying (a CheckpointTimeout
      // while the API server refused our writes): its archives serve nobody now.
      await this.cleanup(m, this.log.child({ key }));
    }
    if (
      m.metadata.finalizers?.includes(IMAGE_FINALIZER) &&
      (m.metadata.deletionTimestamp || migrationFinished(m))
    ) {
      await this.releaseImages(m);
      return undefined;
    }
    if (!this.ours(m)) return undefined;
    const log = this.log.child({ key });
    const containers = m.status?.containers?.map((c) => c.name) ?? m.spec.containers ?? [];
    let step: StepCondition = "Checkpointed";
    try {
      if (containers.length === 0) {
        throw new StepFailure(
          "Checkpointed",
          "CheckpointFailed",
          "the Migration lists no container to checkpoint",
        );
      }
      // Given up (a failed step whose record did not get through, or the fence
      // deadline): that is the outcome; nothing is checkpointed or held again.
      const given = this.fences.get(key);
      if (given?.abandoned && given.uid === m.metadata.uid)
        throw given.abandonedWith ?? this.fenceFailure();
      if (getCondition(m.status?.conditions, "Checkpointed")?.status !== "True") {
        m = await this.checkpointAll(key, m, containers, log);
      } else if (m.status?.handoff === "Freeze") {
        await this.resumeFence(key, m, containers);
      }
      step = "ImagePushed";
      m = await this.pushAll(key, m, containers, log);
    } catch (err) {
      const outcome = classifyStepError(err, step);
      if (outcome.kind === "conflict") throw new RequeueError("conflict");
      if (outcome.kind !== "failed") {
        // The API server blipped or refused one of our own calls: that says
        // nothing about the checkpoint or the image. Nothing is undone (the
        // archive and any pushed image stay for the retry, which adopts them);
        // the queue backs off, and the operator's CheckpointTimeout bounds it.
        const fields = { err, status: outcome.status, step, apiMessage: outcome.message };
        if (outcome.kind === "apiRefused") {
          log.error(
            fields,
            "The API server refused the agent's request; retrying with backoff (check the admission policies on Migrations)",
          );
        } else {
          log.warn(fields, "A Kubernetes API call failed; retrying with backoff");
        }
        throw err;
      }
      const { failure } = outcome;
      log.warn({ err, reason: failure.reason }, "Migration step failed");
      // Not reported: nothing restores from it, so the original runs on at once.
      await this.thawFence(
        key,
        log,
        `the ${step === "Checkpointed" ? "checkpoint" : "push"} failed`,
        failure,
      );
      this.results.inc({
        step: failure.condition === "Checkpointed" ? "checkpoint" : "push",
        result: failure.reason,
      });
      // The step may have written since `m` was read: record the failure on the latest.
      const latest = await this.read(namespace, name);
      if (!latest) {
        // Deleted: its archives serve nobody.
        await this.cleanup(m, log);
        return undefined;
      }
      // The failure is recorded before anything is deleted: should this write
      // not get through, the retry runs the step again with all it made.
      const thawedAt = this.fences.get(key)?.thawedAt;
      const failed = await this.writeStatus(latest, (s) => {
        if (thawedAt && !s.timestamps?.thawed)
          s.timestamps = { ...s.timestamps, thawed: new Date(thawedAt).toISOString() };
        s.conditions = setCondition(
          s.conditions,
          {
            type: failure.condition,
            status: "False",
            reason: failure.reason,
            message: failure.message,
            observedGeneration: latest.metadata.generation,
          },
          new Date(),
        );
      });
      await this.cleanup(failed, log);
    }
    return undefined;
  }

  private async checkpointAll(
    key: string,
    m0: Migration,
    containers: string[],
    log: Logger,
  ): Promise<Migration> {
    const { config } = this.deps;
    let m = m0;
    const started = Date.now();
    const freeze = m.status?.handoff === "Freeze";
    let frozenAt = Date.parse(m.status?.timestamps?.frozen ?? "");
    if (!m.status?.timestamps?.checkpointStarted) {
      m = await this.writeStatus(m, (s) => {
        s.timestamps = { ...s.timestamps, checkpointStarted: now() };
        s.conditions = setCondition(
          s.conditions,
          {
            type: "Checkpointed",
            status: "Unknown",
            reason: "InProgress",
            message: "checkpointing through the kubelet",
          },
          new Date(),
        );
      });
    }
    for (const name of containers) {
      const entry = m.status?.containers?.find((c) => c.name === name);
      // Under Freeze an archive is the move's only if the container has not run
      // since: held frozen. One it ran past (the agent died before it could
      // hold it) is stale, and the container is checkpointed again.
      const cg = freeze ? await this.cgroupOf(m, name) : undefined;
      const heldCg = cg && (await this.isHeld(cg)) ? cg : undefined;
      const fresh = async (path: string) => {
        if (!freeze || heldCg) return true;
        log.warn(
          { container: name, archive: path },
          "The container ran after this archive; checkpointing it again",
        );
        await deleteArchive(config.checkpointDir, path, { logger: log }).catch(() => {});
        return false;
      };
      if (heldCg)
        this.addHeld(
          this.fenceFor(key, m, Number.isFinite(frozenAt) ? frozenAt : Date.now()),
          heldCg,
        );
      // A restarted agent finds the archive it already made: no second checkpoint.
      if (
        entry?.archivePath &&
        (await exists(entry.archivePath)) &&
        (await fresh(entry.archivePath))
      )
        continue;
      const target = {
        namespace: m.metadata.namespace ?? "",
        pod: m.spec.podName,
        container: name,
      };
      // Killed while the kubelet was checkpointing: the kubelet finished without us.
      const found = await this.findArchive(m, target, log);
      const adopted = found && (await fresh(found.path)) ? found : undefined;
      if (adopted) {
        log.info(
          { container: name, archive: adopted.path },
          "Adopted the archive of an interrupted checkpoint",
        );
        m = await this.writeStatus(m, (s) => {
          s.containers = upsert(s.containers, {
            name,
            archivePath: adopted.path,
            archiveSizeBytes: adopted.sizeBytes,
          });
        });
        continue;
      }
      // Before the call: the sweeper deletes only archives the ledger accounts for.
      await recordCheckpointRequest(config.checkpointDir, target).catch((err: unknown) => {
        throw new StepFailure(
          "Checkpointed",
          "CheckpointFailed",
          `cannot record the checkpoint request in ${config.checkpointDir}: ${(err as Error).message}`,
        );
      });
      const t0 = performance.now();
      const kubeletCa =
        config.kubeletTlsMode === "NodeSelfSigned"
          ? undefined
          : await readFile(config.kubeletCaFile);
      const call = () =>
        kubeletCheckpoint(target, {
          host: config.kubeletHost,
          port: config.kubeletPort,
          token: async () => (await readFile(config.tokenFile, "utf8")).trim(),
          tlsMode: config.kubeletTlsMode,
          nodeName: config.node,
          pin: this.kubeletPin,
          ca: kubeletCa,
          timeoutSeconds: config.checkpointTimeoutSeconds,
          logger: log,
        });
      let path: string;
      let gapMs: number | undefined;
      if (cg) {
        const held = await checkpointHeld(cg, call);
        path = held.value;
        gapMs = held.gapMs;
        if (!Number.isFinite(frozenAt)) frozenAt = held.heldAt;
        this.addHeld(this.fenceFor(key, m, frozenAt), cg);
        const fields = { container: name, gapMs, states: held.states };
        if (gapMs > 0)
          log.warn(
            fields,
            "The runtime resumed the container before it was held: it ran on for gapMs after the dump",
          );
        else log.info(fields, "Held the container frozen at its checkpointed state");
      } else {
        path = await call();
      }
      const info = await validateArchive(path, { checkpointDir: config.checkpointDir });
      const mismatch = matchArchive(info.metadata, target);
      if (mismatch) {
        throw new StepFailure(
          "Checkpointed",
          "ArchiveInvalid",
          `the kubelet returned ${info.path}, but ${mismatch}`,
        );
      }
      this.steps.observe({ step: "checkpoint" }, (performance.now() - t0) / 1000);
      this.results.inc({ step: "checkpoint", result: "success" });
      log.info(
        { container: name, archive: info.path, bytes: info.sizeBytes },
        "Checkpointed container",
      );
      m = await this.writeStatus(m, (s) => {
        s.containers = upsert(s.containers, {
          name,
          archivePath: info.path,
          archiveSizeBytes: info.sizeBytes,
          ...(gapMs !== undefined ? { freezeGapMilliseconds: gapMs } : {}),
        });
        if (freeze && Number.isFinite(frozenAt) && !s.timestamps?.frozen)
          s.timestamps = { ...s.timestamps, frozen: new Date(frozenAt).toISOString() };
      });
    }
    const seconds = (Date.now() - started) / 1000;
    return this.writeStatus(m, (s) => {
      s.timestamps = { ...s.timestamps, checkpointed: now() };
      s.conditions = setCondition(
        s.conditions,
        {
          type: "Checkpointed",
          status: "True",
          reason: "CheckpointCreated",
          message: `checkpointed ${containers.length} container(s) in ${formatDuration(seconds)}`,
        },
        new Date(),
      );
    });
  }

  private async pushAll(
    key: string,
    m0: Migration,
    containers: string[],
    log: Logger,
  ): Promise<Migration> {
    const { config } = this.deps;
    let m = m0;
    const started = Date.now();
    const credentials = await this.deps.credentials();
    const ca = config.registryCaFile ? await readFile(config.registryCaFile) : undefined;
    if (!m.metadata.finalizers?.includes(IMAGE_FINALIZER)) {
      // Before anything is pushed: whatever happens next, the images get cleaned up.
      m = await this.setFinalizers(m, [...(m.metadata.finalizers ?? []), IMAGE_FINALIZER]);
    }
    for (const name of containers) {
      const entry = m.status?.containers?.find((c) => c.name === name);
      if (entry?.digest) continue;
      if (!entry?.archivePath)
        throw new StepFailure("ImagePushed", "ArchiveInvalid", `no archive recorded for ${name}`);
      const info = await validateArchive(entry.archivePath, {
        checkpointDir: config.checkpointDir,
      });
      const t0 = performance.now();
      const res = await this.withRetries(() =>
        pushCheckpointImage({
          archive: info,
          repository: config.registryRepository,
          tag: tagForMigration(m.metadata.name ?? "", name),
          compression: config.compression,
          insecure: config.registryInsecure,
          ca,
          credentials,
          logger: log,
        }),
      );
      this.steps.observe({ step: "push" }, (performance.now() - t0) / 1000);
      this.results.inc({ step: "push", result: "success" });
      this.bytes.inc({ kind: "archive" }, res.sizes.archiveBytes);
      this.bytes.inc({ kind: "uploaded" }, res.sizes.uploadedBytes);
      log.info(
        { container: name, image: res.reference, digest: res.digest, bytes: res.sizes.layerBytes },
        "Pushed checkpoint image",
      );
      m = await this.writeStatus(m, (s) => {
        s.containers = upsert(s.containers, {
          name,
          // The digest only: the operator builds the image reference from the
          // EdgeNode's repository (admission refuses an image from the agent).
          digest: res.digest,
          imageSizeBytes: res.sizes.layerBytes,
        });
      });
      // The image holds the checkpoint now; the archive (process memory) must not linger on the node.
      await deleteArchive(config.checkpointDir, info.path, { logger: log });
    }
    const seconds = (Date.now() - started) / 1000;
    // The commit point of a Freeze hand-off: once this write is sent the
    // operator may restore, so the original is never thawed by a deadline again.
    const fence = this.fences.get(key);
    if (fence?.abandoned) throw fence.abandonedWith ?? this.fenceFailure();
    if (fence) {
      fence.committed = true;
      clearTimeout(fence.timer);
    }
    return this.writeStatus(m, (s) => {
      s.timestamps = { ...s.timestamps, imagePushed: now() };
      s.conditions = setCondition(
        s.conditions,
        {
          type: "ImagePushed",
          status: "True",
          reason: "ImagePushed",
          message: `pushed ${containers.length} checkpoint image(s) in ${formatDuration(seconds)}`,
        },
        new Date(),
      );
    });
  }

  /**
   * Handoff Freeze: the container `name` of this Migration's pod, by the pod
   * UID and container ID the operator recorded (nothing the node or the
   * workload wrote decides what is frozen).
   */
  private async cgroupOf(m: Migration, name: string): Promise<ContainerCgroup> {
    const id = m.status?.containers?.find((c) => c.name === name)?.containerID;
    if (!id)
      throw new FreezeError(
        `the operator recorded no running container ${name} to freeze (was it running?)`,
      );
    return findContainerCgroup(this.deps.config.cgroupRoot, m.status?.sourcePodUID ?? "", id);
  }

  /** The fence of `key`, armed from the first hold: thawed by itself if not committed in time. */
  private fenceFor(key: string, m: Migration, heldAt: number): Fence {
    let fence = this.fences.get(key);
    if (fence && fence.uid !== m.metadata.uid) {
      this.dropFence(key);
      fence = undefined;
    }
    if (!fence) {
      fence = {
        uid: m.metadata.uid ?? "",
        cgroups: [],
        frozenAt: heldAt,
        committed: getCondition(m.status?.conditions, "ImagePushed")?.status === "True",
        abandoned: false,
      };
      this.fences.set(key, fence);
    }
    if (!fence.committed && !fence.timer) {
      const left = fence.frozenAt + this.deps.config.fenceTimeoutMs - Date.now();
      fence.timer = setTimeout(() => void this.fenceExpired(key), Math.max(0, left));
      fence.timer.unref?.();
    }
    return fence;
  }

  private addHeld(fence: Fence, cg: ContainerCgroup): void {
    if (!fence.cgroups.some((c) => c.dir === cg.dir)) fence.cgroups.push(cg);
  }

  /**
   * A restarted agent finds the containers it checkpointed frozen: it takes
   * the fence up again from the recorded freeze (already past its deadline,
   * it thaws them at once).
   */
  private async resumeFence(key: string, m: Migration, containers: string[]): Promise<void> {
    if (this.fences.has(key)) return;
    const recorded = Date.parse(m.status?.timestamps?.frozen ?? "");
    const held: ContainerCgroup[] = [];
    for (const name of containers) {
      const cg = await this.held(m, name);
      // Checkpointed, yet running: what it did since is in no image. Not a move.
      if (!cg)
        throw new StepFailure(
          "ImagePushed",
          "FreezeFailed",
          `container ${name} is no longer held frozen at its checkpointed state; the checkpoint is stale and is not pushed`,
        );
      held.push(cg);
    }
    const fence = this.fenceFor(key, m, Number.isFinite(recorded) ? recorded : Date.now());
    for (const cg of held) this.addHeld(fence, cg);
  }

  /**
   * Whether the container is held at its checkpointed state (frozen by itself);
   * a hold a killed agent left half-done (its pod's cgroup frozen) is finished first.
   */
  private async held(m: Migration, name: string): Promise<ContainerCgroup | undefined> {
    const cg = await this.cgroupOf(m, name).catch(() => undefined);
    return cg && (await this.isHeld(cg)) ? cg : undefined;
  }

  private async isHeld(cg: ContainerCgroup): Promise<boolean> {
    if (await recoverHold(cg))
      this.log.warn({ cgroup: cg.dir }, "Finished a hold an earlier agent left half-done");
    return selfFrozen(cg);
  }

  private fenceFailure(): StepFailure {
    return new StepFailure(
      "ImagePushed",
      "FenceExpired",
      `the image was not reported within ${formatDuration(this.deps.config.fenceTimeoutMs / 1000)} of the hold (a slow push, or the edge node cut off from the API server or the registry); the original was thawed and runs on`,
    );
  }

  /** Fence deadline: not committed in time, the original runs on and the image is never reported. */
  private async fenceExpired(key: string): Promise<void> {
    const log = this.log.child({ key });
    const why = "the fence deadline passed before the image was reported";
    await this.thawFence(key, log, why, this.fenceFailure());
    // Records FenceExpired once the API server answers (the push, if still running, ends in it).
    this.queue.add(key);
  }

  /** Thaws what this agent froze for `key`, unless the operator may already restore from it. */
  private async thawFence(
    key: string,
    log: Logger,
    why: string,
    failure: StepFailure,
  ): Promise<void> {
    const fence = this.fences.get(key);
    if (!fence || fence.committed || fence.abandoned) return;
    fence.abandoned = true;
    fence.abandonedWith = failure;
    clearTimeout(fence.timer);
    await this.thawCgroups(fence, log, why);
  }

  private async thawCgroups(fence: Fence, log: Logger, why: string): Promise<void> {
    for (const cg of fence.cgroups) {
      try {
        await setFrozen(cg, false);
      } catch (err) {
        // Gone (deleted meanwhile) is thawed enough; anything else is said loudly.
        if ((err as NodeJS.ErrnoException)?.code !== "ENOENT")
          log.error({ err, cgroup: cg.dir }, "Failed to thaw the source container");
      }
    }
    fence.thawedAt = Date.now();
    const ms = fence.thawedAt - fence.frozenAt;
    log.warn({ frozenMs: ms, why }, "Thawed the source container: it runs on");
  }

  private dropFence(key: string): void {
    const f = this.fences.get(key);
    if (f) clearTimeout(f.timer);
    this.fences.delete(key);
  }

  /**
   * A Freeze Migration of this node that failed or is being deleted before it
   * succeeded, once the operator has released it (status.timestamps.released:
   * the restored pod is gone, its containers stopped, or was never created):
   * the original is thawed (found by its recorded container, whatever this
   * agent remembers) and that is reported, which lets the operator drop the
   * Migration's finalizer. Before the release a restored copy may still run,
   * so the original stays frozen.
   */
  private async thawRolledBack(key: string, m: Migration): Promise<void> {
    if (m.status?.handoff !== "Freeze") return;
    if (m.metadata.labels?.[SOURCE_NODE_LABEL] !== this.deps.config.node) return;
    const rolledBack =
      m.status?.phase === "Failed" ||
      (Boolean(m.metadata.deletionTimestamp) && m.status?.phase !== "Succeeded");
    if (!rolledBack || !m.status?.timestamps?.frozen || !m.status.timestamps.released) return;
    const mark = `${key}/${m.metadata.uid}`;
    if (this.settled.has(mark)) return;
    const log = this.log.child({ key });
    let thawed = false;
    for (const c of m.status.containers ?? []) {
      // Gone, or not held (never, or already thawed): nothing to thaw.
      const cg = await this.held(m, c.name);
      if (!cg) continue;
      await setFrozen(cg, false);
      thawed = true;
    }
    this.dropFence(key);
    if (thawed)
      log.info({ phase: m.status.phase }, "The migration was rolled back: thawed the original");
    // Thawed, or found not held: either way released, and the operator waits for this.
    if (!m.status.timestamps.thawed)
      await this.writeStatus(m, (s) => {
        s.timestamps = { ...s.timestamps, thawed: now() };
      }).catch((err) => {
        // Gone meanwhile: nobody waits for the report.
        if (!(err instanceof StepFailure)) throw err;
      });
    this.settled.add(mark);
  }

  /**
   * The newest archive written since this Migration's checkpoint started that
   * holds this container by its own metadata, if any (adopt.ts).
   */
  private async findArchive(
    m: Migration,
    target: ArchiveOwner,
    log: Logger,
  ): Promise<ArchiveInfo | undefined> {
    const since = Date.parse(m.status?.timestamps?.checkpointStarted ?? "");
    if (!Number.isFinite(since)) return undefined;
    return findAdoptableArchive(
      this.deps.config.checkpointDir,
      { ...target, since },
      { logger: log },
    );
  }

  /** A registry that does not answer gets two more tries with backoff before the step fails. */
  private async withRetries<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const outcome = classifyStepError(err, "ImagePushed");
        const down = outcome.kind === "failed" && outcome.failure.reason === "RegistryUnavailable";
        if (attempt >= 3 || !down) throw err;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  /**
   * The Migration ended (the restored pod pulled its image, or it failed) or is
   * being deleted: under the Delete retention its images (process memory) leave
   * the registry, then the finalizer goes.
   */
  private async releaseImages(m: Migration): Promise<void> {
    const { config } = this.deps;
    if (config.imageRetention === "Delete") {
      const repo = parseRepository(config.registryRepository);
      const client = new RegistryClient({
        registry: repo.apiHost,
        insecure: config.registryInsecure,
        ca: config.registryCaFile ? await readFile(config.registryCaFile) : undefined,
        credentials: await this.deps.credentials(),
        logger: this.log,
      });
      const digests = (m.status?.containers ?? []).flatMap((c) => (c.digest ? [c.digest] : []));
      await deleteCheckpointImages(client, repo.name, digests);
      this.log.info(
        { key: `${m.metadata.namespace}/${m.metadata.name}`, digests },
        "Deleted checkpoint images",
      );
    }
    await this.setFinalizers(
      m,
      (m.metadata.finalizers ?? []).filter((f) => f !== IMAGE_FINALIZER),
    );
  }

  private setFinalizers(m: Migration, finalizers: string[]): Promise<Migration> {
    return setMigrationFinalizers(this.deps.custom, m, finalizers);
  }

  /** After a failure nothing of the checkpoint stays on the node. */
  private async cleanup(m: Migration, log: Logger): Promise<void> {
    for (const c of m.status?.containers ?? []) {
      if (!c.archivePath) continue;
      await deleteArchive(this.deps.config.checkpointDir, c.archivePath, { logger: log }).catch(
        (err) => log.warn({ err, archive: c.archivePath }, "Failed to delete archive"),
      );
    }
  }

  private async writeStatus(
    m: Migration,
    mutate: (s: MigrationStatus) => void,
  ): Promise<Migration> {
    try {
      return await writeMigrationStatus(this.deps.custom, m, mutate);
    } catch (err) {
      if (isNotFound(err)) {
        throw new StepFailure("Checkpointed", "CheckpointFailed", "the Migration was deleted");
      }
      throw err;
    }
  }
}

/**
 * The kubelet's checkpoint call, every failure of it a CheckpointError: one
 * that escapes the client unwrapped (the answer cut short, the token file
 * unreadable) is still the kubelet step's, never the API server's.
 */
async function kubeletCheckpoint(...args: Parameters<typeof checkpoint>): Promise<string> {
  try {
    return await checkpoint(...args);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(
      "CheckpointFailed",
      `The kubelet checkpoint call failed: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  }
}

function upsert(
  list: ContainerCheckpointStatus[] | undefined,
  entry: ContainerCheckpointStatus,
): ContainerCheckpointStatus[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((c) => c.name === entry.name);
  if (i >= 0) out[i] = { ...out[i], ...entry };
  else out.push(entry);
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
