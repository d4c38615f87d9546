import type {
  CoreV1Api,
  CustomObjectsApi,
  V1ContainerStatus,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import {
  buildRestorePod,
  JOB_TRACKING_FINALIZER,
  migratedContainers,
  ownerKind,
  restorePodName,
  revealToOwner,
} from "../../migration/restore/pod.ts";
import {
  buildPrepullPod,
  nodeHasImages,
  prepullImages,
  prepullPodName,
  prepullState,
} from "../../migration/restore/prepull.ts";
import { chooseTarget } from "../../migration/target/choose.ts";
import { claimNames, volumeRefusals } from "../../migration/target/volumes.ts";
import { formatDuration } from "../api/duration.ts";
import { migrationFinished } from "../api/status.ts";
import {
  API_VERSION,
  EDGENODE_LABEL,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationStatus,
  type RestorePolicy,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../api/v1alpha1.ts";
import type { EdgeNodeController } from "../edgenode/controller.ts";
import { nodeRuntimeSupport } from "../edgenode/preflight.ts";
import { getCondition, setCondition } from "../kube/conditions.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { SupervisedInformer } from "../kube/informer.ts";
import { writeMigrationStatus } from "../kube/migration-status.ts";
import { isConflict, isNotFound, mergePatch } from "../kube/patch.ts";
import { type QueueMetrics, RequeueError, WorkQueue } from "../kube/workqueue.ts";

export interface MigrationControllerDeps {
  core: CoreV1Api;
  custom: CustomObjectsApi;
  migrations: SupervisedInformer<Migration>;
  edgeNodes: EdgeNodeController;
  recorder: EventRecorder;
  registry: Registry;
  log: Logger;
  workers: number;
  /** How long a restored pod may take to become Ready. */
  restoreTimeoutMs: number;
  /** How long the agent may take to report the checkpoint and push. */
  checkpointTimeoutMs: number;
  queueMetrics?: QueueMetrics;
}

/** Ends the migration: the original keeps running, the reason goes to status. */
class Failure extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

const DELETION_COST = "controller.kubernetes.io/pod-deletion-cost";
const migratedNames = (m: Migration) => (m.status?.containers ?? []).map((c) => c.name);
// Milliseconds kept: steps often take less than a second.
const iso = (d = new Date()) => d.toISOString();
const POLL_MS = 500;

function podReady(p: V1Pod | undefined): boolean {
  return p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** What the container's last run ended with: the runtime's reason and message (a failed CRIU restore is there). */
function lastEnd(s: V1ContainerStatus): string {
  const t = s.lastState?.terminated;
  if (!t) return "";
  const what = [t.reason, t.message?.replace(/\s+/g, " ").trim()].filter(Boolean).join(": ");
  return `; last run exited ${t.exitCode}${what ? ` (${what})` : ""}`;
}

/** Why a restored pod can never start, as the kubelet reports it; undefined while it may. */
export function podBroken(p: V1Pod): string | undefined {
  if (p.status?.phase === "Failed")
    return p.status.message || p.status.reason || "the restored pod failed";
  for (const s of p.status?.containerStatuses ?? []) {
    const w = s.state?.waiting;
    if (
      w &&
      [
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
      ].includes(w.reason ?? "")
    ) {
      return `${s.name}: ${w.reason}${w.message ? `: ${w.message}` : ""}${w.reason === "CrashLoopBackOff" ? lastEnd(s) : ""}`;
    }
    const t = s.state?.terminated;
    if (t && t.exitCode !== 0) {
      const what = [t.reason, t.message?.replace(/\s+/g, " ").trim()].filter(Boolean).join(": ");
      return `${s.name} exited ${t.exitCode}${what ? ` (${what})` : ""}`;
    }
  }
  return undefined;
}

/**
 * Runs a Migration from validation to cutover, make-before-break: the original
 * is removed only after the restored pod is Ready. Every step is recorded in
 * status before the next starts, so a restarted operator resumes; any failure
 * before cutover removes the restored pod and leaves the original running.
 */
export class MigrationController {
  private readonly deps: MigrationControllerDeps;
  private readonly log: Logger;
  private readonly queue: WorkQueue;
  private readonly total: Counter<"policy" | "result">;
  private readonly stepSeconds: Histogram<"step">;
  private readonly checkpointBytes: Histogram;

  constructor(deps: MigrationControllerDeps) {
    this.deps = deps;
    this.log = deps.log.child({ controller: "migration" });
    this.queue = new WorkQueue({ name: "migrations", metrics: deps.queueMetrics, log: this.log });
    this.total = new Counter({
      name: "edgeshift_migrations_total",
      help: "Migrations that ended, by policy and result",
      labelNames: ["policy", "result"],
      registers: [deps.registry],
    });
    this.stepSeconds = new Histogram({
      name: "edgeshift_migration_step_duration_seconds",
      help: "Duration of each migration step",
      labelNames: ["step"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120],
      registers: [deps.registry],
    });
    this.checkpointBytes = new Histogram({
      name: "edgeshift_checkpoint_size_bytes",
      help: "Size of checkpoint archives",
      buckets: [1 << 20, 8 << 20, 32 << 20, 128 << 20, 512 << 20, 2 << 30, 8 << 30],
      registers: [deps.registry],
    });
  }

  enqueue(m: Migration): void {
    this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`);
  }

  start(): void {
    this.queue.start((key) => this.reconcile(key), this.deps.workers);
    for (const m of this.deps.migrations.list()) this.enqueue(m);
  }

  async stop(): Promise<void> {
    await this.queue.shutdown();
  }

  private async reconcile(key: string): Promise<undefined | { requeueAfterMs: number }> {
    const [namespace = "", name = ""] = key.split("/");
    const m = this.deps.migrations.get(name, namespace);
    if (!m || migrationFinished(m) || m.metadata.deletionTimestamp) return undefined;
    const log = this.log.child({ key });
    try {
      switch (m.status?.phase ?? "Pending") {
        case "Pending":
          await this.validate(m, log);
          return undefined;
        case "Checkpointing":
        case "Pushing":
          await this.prepull(m);
          return await this.awaitImage(m);
        case "Restoring":
          return await this.restore(m, log);
        case "CuttingOver":
          return await this.cutOver(m, log);
        default:
          return undefined;
      }
    } catch (err) {
      if (err instanceof Failure) {
        await this.fail(m, err, log);
        return undefined;
      }
      if (isConflict(err)) throw new RequeueError("conflict");
      throw err;
    }
  }

  // --- steps ------------------------------------------------------------------

  private async readPod(namespace: string, name: string): Promise<V1Pod | undefined> {
    try {
      return await this.deps.core.readNamespacedPod({ namespace, name });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async validate(m: Migration, log: Logger): Promise<void> {
    const ns = m.metadata.namespace ?? "";
    const pod = await this.readPod(ns, m.spec.podName);
    if (!pod) throw new Failure("PodNotFound", `pod ${ns}/${m.spec.podName} does not exist`);
    const source = pod.spec?.nodeName ?? "";
    const en = this.deps.edgeNodes.ownerOf(source);
    if (!en)
      throw new Failure(
        "NotOnEdgeNode",
        `pod ${m.spec.podName} runs on ${source || "no node"}, which no EdgeNode selects`,
      );
    const owner = ownerKind(pod);
    if (owner.kind === "Unsupported") {
      throw new Failure(
        "UnsupportedOwner",
        `pods owned by a ${owner.ownerKind} are not migrated (bare pods, Jobs and ReplicaSets are)`,
      );
    }
    const names = (pod.spec?.containers ?? []).map((c) => c.name);
    const unknown = (m.spec.containers ?? []).filter((c) => !names.includes(c));
    if (unknown.length)
      throw new Failure(
        "ContainerNotFound",
        `pod ${m.spec.podName} has no container ${unknown.join(", ")}`,
      );
    const containers = migratedContainers(pod, m);

    let policy: RestorePolicy = m.spec.restorePolicy ?? en.spec.restorePolicy ?? "checkpoint";
    let note = "";
    const fallback = m.spec.fallbackToRestart ?? en.spec.fallbackToRestart ?? true;
    const sourceNode = this.deps.edgeNodes.nodes.get(source) ?? { metadata: { name: source } };
    if (policy === "checkpoint") {
      const rt = nodeRuntimeSupport(sourceNode);
      if (!rt.checkpoint || !en.spec.registry) {
        const why = !en.spec.registry ? "the EdgeNode names no registry" : rt.message;
        if (fallback) {
          policy = "restart";
          note = `fell back to restart: ${why}`;
        } else throw new Failure("RuntimeUnsupported", `cannot checkpoint on ${source}: ${why}`);
      }
    }

    const choose = (checkpoint: boolean, podsByNode: Map<string, V1Pod[]>) =>
      chooseTarget({
        pod,
        sourceNode,
        candidates: [...this.deps.edgeNodes.nodes.list()],
        podsByNode,
        cloudSelector: en.spec.cloud.nodeSelector,
        targetNode: m.spec.targetNode,
        checkpoint,
      });
    const podsByNode = await this.podsByNode();
    let target = choose(policy === "checkpoint", podsByNode);
    if (!target.ok && policy === "checkpoint" && fallback) {
      // No cloud node restores this runtime's checkpoints (other runtime family,
      // restore off or unconfirmed): the restart policy may still have a target.
      const restart = choose(false, podsByNode);
      if (restart.ok) {
        policy = "restart";
        note = `fell back to restart: no cloud node can restore the checkpoint (${target.message})`;
        target = restart;
      }
    }
    if (!target.ok) throw new Failure("NoTarget", target.message);
    const volumes = await this.volumeRefusals(pod, target.node);
    if (volumes.length > 0) {
      throw new Failure(
        "VolumeUnavailable",
        `${target.node} cannot provide the pod's volumes: ${volumes.join("; ")}`,
      );
    }

    // The agent finds its Migrations by this label; a hand-written Migration gets it here.
    if (
      m.metadata.labels?.[SOURCE_NODE_LABEL] !== source ||
      m.metadata.labels?.[EDGENODE_LABEL] !== en.metadata.name
    ) {
      await this.deps.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: ns,
          name: m.metadata.name ?? "",
          body: {
            metadata: {
              labels: { [SOURCE_NODE_LABEL]: source, [EDGENODE_LABEL]: en.metadata.name ?? "" },
            },
          },
        },
        mergePatch,
      );
    }
    await this.write(m, (s) => {
      s.phase = policy === "checkpoint" ? "Checkpointing" : "Restoring";
      s.edgeNode = en.metadata.name;
      s.policy = policy;
      s.sourceNode = source;
      s.targetNode = target.node;
      s.containers = containers.map((name) => ({ name }));
      s.timestamps = {
        ...s.timestamps,
        created: m.metadata.creationTimestamp ? iso(new Date(m.metadata.creationTimestamp)) : iso(),
      };
      s.message = note || `moving ${containers.join(", ")} from ${source} to ${target.node}`;
      s.conditions = setCondition(
        s.conditions,
        { type: "Succeeded", status: "Unknown", reason: "InProgress", message: s.message },
        new Date(),
      );
      // Why no checkpoint is taken stays in status after the message moves on.
      if (note) {
        s.conditions = setCondition(
          s.conditions,
          { type: "Checkpointed", status: "False", reason: "FellBackToRestart", message: note },
          new Date(),
        );
      }
    });
    log.info({ source, target: target.node, policy, note }, "Validated Migration");
    if (note) await this.event(m, "Warning", "FellBackToRestart", "Validate", note);
    await this.event(
      m,
      "Normal",
      "MigrationStarted",
      "Validate",
      `${policy}: ${source} -> ${target.node}${note ? ` (${note})` : ""}`,
    );
  }

  /** Why `node` cannot give the pod its volumes (see migration/target/volumes.ts). */
  private async volumeRefusals(pod: V1Pod, node: string): Promise<string[]> {
    const names = claimNames(pod);
    if (names.length === 0) return [];
    const namespace = pod.metadata?.namespace ?? "";
    const claims = new Map<string, V1PersistentVolumeClaim>();
    const volumes = new Map<string, V1PersistentVolume>();
    for (const name of new Set(names)) {
      const claim = await this.deps.core
        .readNamespacedPersistentVolumeClaim({ namespace, name })
        .catch((err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      if (!claim) continue;
      claims.set(name, claim);
      const pv = claim.spec?.volumeName;
      if (!pv || volumes.has(pv)) continue;
      const v = await this.deps.core.readPersistentVolume({ name: pv }).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      if (v) volumes.set(pv, v);
    }
    const target = this.deps.edgeNodes.nodes.get(node) ?? { metadata: { name: node } };
    return volumeRefusals({ pod, target, claims, volumes });
  }

  private async podsByNode(): Promise<Map<string, V1Pod[]>> {
    const out = new Map<string, V1Pod[]>();
    for (const node of this.deps.edgeNodes.nodes.list()) {
      const name = node.metadata?.name ?? "";
      // Cloud nodes only matter; a field-selected list per candidate keeps this bounded.
      if (this.deps.edgeNodes.ownerOf(name)) continue;
      const pods = await this.deps.core.listPodForAllNamespaces({
        fieldSelector: `spec.nodeName=${name}`,
      });
      out.set(name, pods.items);
    }
    return out;
  }

  private async awaitImage(m: Migration): Promise<{ requeueAfterMs: number } | undefined> {
    const conds = m.status?.conditions;
    const cp = getCondition(conds, "Checkpointed");
    const push = getCondition(conds, "ImagePushed");
    const failed = cp?.status === "False" ? cp : push?.status === "False" ? push : undefined;
    if (failed) {
      const en = this.deps.edgeNodes.ownerOf(m.status?.sourceNode ?? "");
      if (
        failed.reason === "RuntimeUnsupported" &&
        (m.spec.fallbackToRestart ?? en?.spec.fallbackToRestart ?? true)
      ) {
        await this.write(m, (s) => {
          s.policy = "restart";
          s.phase = "Restoring";
          s.failureReason = undefined;
          s.message = `fell back to restart: ${failed.message}`;
        });
        await this.event(m, "Warning", "FellBackToRestart", "Checkpoint", failed.message);
        return undefined;
      }
      throw new Failure(failed.reason, failed.message);
    }
    if (push?.status === "True") {
      const t = m.status?.timestamps ?? {};
      if (t.checkpointStarted && t.checkpointed)
        this.observe("checkpoint", t.checkpointStarted, t.checkpointed);
      if (t.checkpointed && t.imagePushed) this.observe("push", t.checkpointed, t.imagePushed);
      for (const c of m.status?.containers ?? [])
        if (c.archiveSizeBytes) this.checkpointBytes.observe(c.archiveSizeBytes);
      await this.write(m, (s) => {
        s.phase = "Restoring";
      });
      return undefined;
    }
    const since = Date.parse(m.status?.timestamps?.created ?? "") || Date.now();
    if (Date.now() - since > this.deps.checkpointTimeoutMs) {
      throw new Failure(
        "CheckpointTimeout",
        `the edge agent on ${m.status?.sourceNode} did not push the checkpoint within ${formatDuration(this.deps.checkpointTimeoutMs / 1000)}`,
      );
    }
    return { requeueAfterMs: 2000 };
  }

  private async restore(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    const ns = m.metadata.namespace ?? "";
    const original = await this.readPod(ns, m.spec.podName);
    if (!original || original.metadata?.deletionTimestamp) {
      throw new Failure(
        "SourcePodGone",
        `the original pod ${m.spec.podName} went away during the migration`,
      );
    }
    const name = restorePodName(m.spec.podName, m.metadata.uid ?? "");
    if (!m.status?.restoredPod) {
      // Recorded before it is created: a restarted operator finds it by this name.
      await this.write(m, (s) => {
        s.restoredPod = name;
        s.timestamps = { ...s.timestamps, restoreStarted: iso() };
      });
      return { requeueAfterMs: 0 };
    }
    let restored = await this.readPod(ns, name);
    if (!restored) {
      const en = this.deps.edgeNodes.ownerOf(m.status?.sourceNode ?? "");
      const policy = m.status?.policy ?? "restart";
      if (policy === "checkpoint") {
        const waiting = await this.awaitPrepull(m, original);
        if (waiting) return waiting;
      }
      const images = Object.fromEntries(
        (m.status?.containers ?? []).filter((c) => c.image).map((c) => [c.name, c.image ?? ""]),
      );
      const owner = ownerKind(original);
      const body = buildRestorePod({
        pod: original,
        migration: m,
        targetNode: m.status?.targetNode ?? "",
        policy,
        images: policy === "checkpoint" ? images : {},
        pullSecret: policy === "checkpoint" ? en?.spec.registry?.secretRef?.name : undefined,
        hideFromOwner: owner.kind === "Job" || owner.kind === "ReplicaSet",
      });
      try {
        restored = await this.deps.core.createNamespacedPod({ namespace: ns, body });
      } catch (err) {
        if (!isConflict(err))
          throw new Failure(
            "RestoreFailed",
            `cannot create the restored pod: ${(err as Error).message.slice(0, 300)}`,
          );
        return { requeueAfterMs: POLL_MS };
      }
      log.info({ pod: name, node: m.status?.targetNode }, "Created restored pod");
      await this.removePrepull(m);
      await this.event(
        m,
        "Normal",
        "RestoreStarted",
        "Restore",
        `created ${name} for ${m.status?.targetNode}`,
      );
    }
    const unschedulable = restored.status?.conditions?.find(
      (c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable",
    );
    if (unschedulable)
      throw new Failure(
        "TargetUnschedulable",
        `the scheduler cannot place the restored pod: ${unschedulable.message ?? ""}`.slice(0, 500),
      );
    const broken = podBroken(restored);
    if (broken) throw new Failure("RestoreFailed", broken);
    if (!podReady(restored)) {
      const started = Date.parse(m.status?.timestamps?.restoreStarted ?? "") || Date.now();
      if (Date.now() - started > this.deps.restoreTimeoutMs) {
        throw new Failure(
          "RestoreTimeout",
          `the restored pod was not Ready within ${formatDuration(this.deps.restoreTimeoutMs / 1000)}`,
        );
      }
      return { requeueAfterMs: POLL_MS };
    }
    const t = iso();
    if (m.status?.timestamps?.restoreStarted)
      this.observe("restore", m.status.timestamps.restoreStarted, t);
    await this.write(m, (s) => {
      s.phase = "CuttingOver";
      s.timestamps = { ...s.timestamps, restored: t };
      s.conditions = setCondition(
        s.conditions,
        {
          type: "Restored",
          status: "True",
          reason: "PodReady",
          message: `${name} is Ready on ${restored.spec?.nodeName}`,
        },
        new Date(),
      );
    });
    await this.event(
      m,
      "Normal",
      "Restored",
      "Restore",
      `${name} is Ready on ${restored.spec?.nodeName}`,
    );
    return undefined;
  }

  private async cutOver(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    const ns = m.metadata.namespace ?? "";
    const original = await this.readPod(ns, m.spec.podName);
    const restored = await this.readPod(ns, m.status?.restoredPod ?? "");
    if (!restored)
      throw new Failure("CutOverFailed", "the restored pod disappeared before cutover");
    const owner = original ? ownerKind(original) : { kind: "None" as const };
    if (original && !original.metadata?.deletionTimestamp) {
      if (owner.kind === "ReplicaSet") {
        // The ReplicaSet removes the surplus pod with the lowest deletion cost once it adopts ours.
        if (original.metadata?.annotations?.[DELETION_COST] !== "-2147483648") {
          await this.deps.core.patchNamespacedPod(
            {
              namespace: ns,
              name: m.spec.podName,
              body: { metadata: { annotations: { [DELETION_COST]: "-2147483648" } } },
            },
            mergePatch,
          );
        }
      } else {
        if (
          owner.kind === "Job" &&
          original.metadata?.finalizers?.includes(JOB_TRACKING_FINALIZER)
        ) {
          // Without its tracking finalizer the Job does not count the removed original as a
          // failed pod (which could exhaust backoffLimit and fail the whole Job).
          await this.deps.core.patchNamespacedPod(
            {
              namespace: ns,
              name: m.spec.podName,
              body: {
                metadata: {
                  resourceVersion: original.metadata.resourceVersion,
                  finalizers: original.metadata.finalizers.filter(
                    (f) => f !== JOB_TRACKING_FINALIZER,
                  ),
                },
              },
            },
            mergePatch,
          );
        }
        // Bare pod and Job: we remove the original; the Job then adopts the restored pod at once.
        await this.deps.core
          .deleteNamespacedPod({ namespace: ns, name: m.spec.podName })
          .catch((err) => {
            if (!isNotFound(err)) throw err;
          });
        log.info({ pod: m.spec.podName }, "Deleted the original pod");
      }
    }
    const reveal = original ? revealToOwner(restored, original) : undefined;
    if (reveal && owner.kind !== "None") {
      await this.deps.core.patchNamespacedPod(
        { namespace: ns, name: restored.metadata?.name ?? "", body: reveal },
        mergePatch,
      );
    }
    if (original && !original.metadata?.deletionTimestamp) return { requeueAfterMs: POLL_MS };
    const t = iso();
    await this.finish(
      m,
      "Succeeded",
      "CutOver",
      `running on ${restored.spec?.nodeName} as ${restored.metadata?.name}`,
      t,
    );
    if (m.status?.timestamps?.restored) this.observe("cutover", m.status.timestamps.restored, t);
    return undefined;
  }

  // --- base images on the target ---------------------------------------------------

  /**
   * While the edge checkpoints, the target's kubelet pulls the checkpoint's base
   * images (the runtime needs them to restore and will not pull them through the
   * kubelet's registry settings itself; see migration/restore/prepull.ts).
   */
  private async prepull(m: Migration, known?: V1Pod): Promise<void> {
    const target = m.status?.targetNode;
    if (m.status?.policy !== "checkpoint" || !target) return;
    const ns = m.metadata.namespace ?? "";
    if (await this.readPod(ns, prepullPodName(m.spec.podName, m.metadata.uid ?? ""))) return;
    const original = known ?? (await this.readPod(ns, m.spec.podName));
    if (!original || this.targetHoldsBaseImages(m, original)) return;
    try {
      await this.deps.core.createNamespacedPod({
        namespace: ns,
        body: buildPrepullPod(original, m, migratedNames(m), target),
      });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }

  /** The kubelet lists the images it holds in the node's status: nothing to pull then. */
  private targetHoldsBaseImages(m: Migration, original: V1Pod): boolean {
    const target = this.deps.edgeNodes.nodes.get(m.status?.targetNode ?? "");
    return nodeHasImages(target, prepullImages(original, migratedNames(m)));
  }

  /** Undefined once the base images are on the target; a requeue while they are pulled. */
  private async awaitPrepull(
    m: Migration,
    original: V1Pod,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    if (this.targetHoldsBaseImages(m, original)) return undefined;
    const ns = m.metadata.namespace ?? "";
    const pod = await this.readPod(ns, prepullPodName(m.spec.podName, m.metadata.uid ?? ""));
    if (!pod) {
      await this.prepull(m, original);
      return { requeueAfterMs: POLL_MS };
    }
    const st = prepullState(pod);
    if (st.state === "failed") {
      throw new Failure(
        "BaseImageUnavailable",
        `the target node cannot pull the checkpoint's base image: ${st.message}`.slice(0, 500),
      );
    }
    if (st.state === "pulled") return undefined;
    const started = Date.parse(m.status?.timestamps?.restoreStarted ?? "") || Date.now();
    if (Date.now() - started > this.deps.restoreTimeoutMs) {
      throw new Failure(
        "RestoreTimeout",
        `the base images were not on the target node within ${formatDuration(this.deps.restoreTimeoutMs / 1000)}`,
      );
    }
    return { requeueAfterMs: POLL_MS };
  }

  private async removePrepull(m: Migration): Promise<void> {
    await this.deps.core
      .deleteNamespacedPod({
        namespace: m.metadata.namespace ?? "",
        name: prepullPodName(m.spec.podName, m.metadata.uid ?? ""),
        gracePeriodSeconds: 0,
      })
      .catch((err) => {
        if (!isNotFound(err)) throw err;
      });
  }

  // --- endings ------------------------------------------------------------------

  private async fail(m: Migration, f: Failure, log: Logger): Promise<void> {
    log.warn({ reason: f.reason, message: f.message }, "Migration failed");
    const ns = m.metadata.namespace ?? "";
    await this.removePrepull(m);
    const restoredName = m.status?.restoredPod;
    if (restoredName) {
      // Make-before-break: the restored pod goes, the original stays.
      await this.deps.core
        .deleteNamespacedPod({ namespace: ns, name: restoredName, gracePeriodSeconds: 0 })
        .catch((err) => {
          if (!isNotFound(err)) throw err;
        });
    }
    await this.finish(m, "Failed", f.reason, f.message, iso());
  }

  private async finish(
    m: Migration,
    phase: "Succeeded" | "Failed",
    reason: string,
    message: string,
    at: string,
  ): Promise<void> {
    const created =
      Date.parse(m.status?.timestamps?.created ?? m.metadata.creationTimestamp?.toString() ?? "") ||
      Date.parse(at);
    const seconds = Math.max(0, (Date.parse(at) - created) / 1000);
    await this.write(m, (s) => {
      s.phase = phase;
      s.message = message;
      s.failureReason = phase === "Failed" ? reason : undefined;
      s.timestamps = {
        ...s.timestamps,
        finished: at,
        ...(phase === "Succeeded" ? { cutOver: at } : {}),
      };
      s.durationSeconds = Math.round(seconds * 1000) / 1000;
      s.duration = formatDuration(seconds);
      s.conditions = setCondition(
        s.conditions,
        { type: "Succeeded", status: phase === "Succeeded" ? "True" : "False", reason, message },
        new Date(),
      );
    });
    this.total.inc({
      policy: m.status?.policy ?? m.spec.restorePolicy ?? "unknown",
      result: phase === "Succeeded" ? "succeeded" : "failed",
    });
    this.observe("total", iso(new Date(created)), at);
    await this.event(
      m,
      phase === "Succeeded" ? "Normal" : "Warning",
      phase === "Succeeded" ? "MigrationSucceeded" : reason,
      "Finish",
      message,
    );
  }

  private observe(step: string, from: string, to: string): void {
    const s = (Date.parse(to) - Date.parse(from)) / 1000;
    if (Number.isFinite(s) && s >= 0) this.stepSeconds.observe({ step }, s);
  }

  private async event(
    m: Migration,
    type: "Normal" | "Warning",
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    await this.deps.recorder.record(
      { apiVersion: API_VERSION, kind: MIGRATION_KIND, metadata: m.metadata },
      type,
      reason,
      action,
      note,
    );
    const podMeta = { name: m.spec.podName, namespace: m.metadata.namespace };
    await this.deps.recorder.record(
      { apiVersion: "v1", kind: "Pod", metadata: podMeta },
      type,
      reason,
      action,
      `Migration ${m.metadata.name}: ${note}`,
    );
  }

  private async write(m: Migration, mutate: (s: MigrationStatus) => void): Promise<void> {
    await writeMigrationStatus(this.deps.custom, m, (s) => {
      mutate(s);
      s.observedGeneration = m.metadata.generation;
    });
  }
}
