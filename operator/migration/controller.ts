import type {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  V1ContainerStatus,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { imageCleanupPod, imageCleanupPodName } from "../../migration/agent/image-cleanup.ts";
import { IMAGE_FINALIZER } from "../../migration/registry/cleanup.ts";
import { checkpointImages } from "../../migration/restore/images.ts";
import {
  buildRestorePod,
  JOB_TRACKING_FINALIZER,
  MIGRATION_POD_LABEL,
  migratedContainers,
  ownerKind,
  restorePodName,
  revealRecord,
  revealToOwner,
  toLabelValue,
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
import { formatLabelSelector, matchesLabelSelector } from "../api/labels.ts";
import { migrationFinished } from "../api/status.ts";
import {
  API_VERSION,
  EDGENODE_LABEL,
  type EdgeNode,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationStatus,
  type RegistrySpec,
  RestorePolicy,
  type RevealRecord,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../api/v1alpha1.ts";
import { agentIdentity, agentName, agentPodSelector } from "../edgenode/agent.ts";
import type { EdgeNodeController } from "../edgenode/controller.ts";
import { nodeRuntimeSupport } from "../edgenode/preflight.ts";
import { podSelection } from "../edgenode/selection.ts";
import { getCondition, setCondition } from "../kube/conditions.ts";
import { apiErrorKind, describeError } from "../kube/errors.ts";
import type { EventRecorder } from "../kube/events.ts";
import { type InformerMetrics, SupervisedInformer } from "../kube/informer.ts";
import { setMigrationFinalizers, writeMigrationStatus } from "../kube/migration-status.ts";
import { isConflict, isNotFound, mergePatch } from "../kube/patch.ts";
import { type QueueMetrics, RequeueError, WorkQueue } from "../kube/workqueue.ts";
import { AGENT_GRACE_MS, agentCheckDue, agentUnavailable } from "./agent-availability.ts";

export interface MigrationControllerDeps {
  core: CoreV1Api;
  custom: CustomObjectsApi;
  migrations: SupervisedInformer<Migration>;
  edgeNodes: EdgeNodeController;
  recorder: EventRecorder;
  registry: Registry;
  log: Logger;
  workers: number;
  /** Where the agents' ServiceAccounts live (status.agentIdentity). */
  operatorNamespace: string;
  /** How long a restored pod may take to become Ready. */
  restoreTimeoutMs: number;
  /**
   * How long cutover may wait for the owner to settle (adopt the restored pod,
   * remove the surplus original); then the operator settles it itself.
   */
  cutoverTimeoutMs: number;
  /** How long the agent may take to report the checkpoint and push. */
  checkpointTimeoutMs: number;
  /** The edgeshift image: the image-cleanup pod runs it. */
  cleanupImage: string;
  queueMetrics?: QueueMetrics;
  /**
   * Watches the pods the operator makes (restored and pre-pull pods, by their
   * edgeshift.dev/migration label): their changes wake the Migration's steps.
   * Changes of the original pods come through podChanged().
   */
  kubeConfig?: KubeConfig;
  informerMetrics?: InformerMetrics;
  /**
   * How long a step that waits for a pod sleeps when no event comes: a safety
   * net for a missed event, not the way steps learn of progress.
   */
  resyncMs?: number;
}

/** Ends the migration: the original keeps running, the reason goes to status. */
class Failure extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

const CREATING_RESTORED_POD = "creating the restored pod";

/** An API call of a step that did not go through, with what the step was doing. */
class StepError extends Error {
  readonly doing: string;
  constructor(doing: string, cause: unknown) {
    super(`${doing}: ${describeError(cause)}`, { cause });
    this.doing = doing;
  }
}

const DELETION_COST = "controller.kubernetes.io/pod-deletion-cost";
/** The lowest cost: the ReplicaSet removes this pod first when it has one too many. */
const LOWEST_COST = "-2147483648";
/** The highest: the ReplicaSet removes this pod last (the restored pod, until cutover settles). */
const HIGHEST_COST = "2147483647";
/**
 * Held by the operator on a Migration in flight: deleting it then rolls back
 * what the operator made (restored and pre-pull pods, the original's deletion
 * cost) before the object goes. Removed when the Migration ends, so a finished
 * Migration never waits on the operator.
 */
export const CLEANUP_FINALIZER = "edgeshift.dev/cleanup";
/** After this long past a Migration's end the operator removes images its agent still has not. */
export const IMAGE_CLEANUP_GRACE_MS = 120_000;
const migratedNames = (m: Migration) => (m.status?.containers ?? []).map((c) => c.name);
// Milliseconds kept: steps often take less than a second.
const iso = (d = new Date()) => d.toISOString();
/** The default of MigrationControllerDeps.resyncMs. */
export const MIGRATION_RESYNC_MS = 10_000;

/** A pod whose containers have all ended for good: nothing of it is left to move. */
function podFinished(p: V1Pod): boolean {
  return p.status?.phase === "Succeeded" || p.status?.phase === "Failed";
}

/**
 * Handoff Freeze, rolled back (failed, or deleted before it succeeded) after
 * the agent held the original: until the agent reports it thawed, the
 * operator still has the hold to release (holdReleased).
 */
export function holdToRelease(m: Migration): boolean {
  const s = m.status;
  if (s?.handoff !== "Freeze" || !s.timestamps?.frozen || s.timestamps.thawed) return false;
  return s.phase === "Failed" || (Boolean(m.metadata.deletionTimestamp) && s.phase !== "Succeeded");
}

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

const MIGRATION_RESULTS = ["succeeded", "failed"] as const;
const MIGRATION_STEPS = ["checkpoint", "push", "restore", "cutover", "total"] as const;
type MigrationStep = (typeof MIGRATION_STEPS)[number];

/**
 * The migration controller's metrics, every policy, result and step already
 * exported at 0: an alert on failures and a rate() see a series before the
 * first one (Prometheus' "avoid missing metrics").
 */
export function migrationMetrics(registry: Registry) {
  const total = new Counter({
    name: "edgeshift_migrations_total",
    help: "Migrations that ended, by policy and result",
    labelNames: ["policy", "result"],
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: "edgeshift_migration_step_duration_seconds",
    help: "Duration of each migration step",
    labelNames: ["step"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120],
    registers: [registry],
  });
  const checkpointBytes = new Histogram({
    name: "edgeshift_checkpoint_size_bytes",
    help: "Size of checkpoint archives",
    buckets: [1 << 20, 8 << 20, 32 << 20, 128 << 20, 512 << 20, 2 << 30, 8 << 30],
    registers: [registry],
  });
  for (const policy of Object.values(RestorePolicy)) {
    for (const result of MIGRATION_RESULTS) total.inc({ policy, result }, 0);
  }
  for (const step of MIGRATION_STEPS) stepSeconds.zero({ step });
  return { total, stepSeconds, checkpointBytes };
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
  private readonly pods: SupervisedInformer<V1Pod> | undefined;
  private readonly resyncMs: number;

  constructor(deps: MigrationControllerDeps) {
    this.deps = deps;
    this.log = deps.log.child({ controller: "migration" });
    this.queue = new WorkQueue({ name: "migrations", metrics: deps.queueMetrics, log: this.log });
    const metrics = migrationMetrics(deps.registry);
    this.total = metrics.total;
    this.stepSeconds = metrics.stepSeconds;
    this.checkpointBytes = metrics.checkpointBytes;
    this.resyncMs = deps.resyncMs ?? MIGRATION_RESYNC_MS;
    if (deps.kubeConfig) {
      this.pods = new SupervisedInformer<V1Pod>({
        kubeConfig: deps.kubeConfig,
        resource: "migration-pods",
        path: "/api/v1/pods",
        labelSelector: MIGRATION_POD_LABEL,
        list: () => deps.core.listPodForAllNamespaces({ labelSelector: MIGRATION_POD_LABEL }),
        onChange: (pod) => this.podChanged(pod),
        log: this.log.child({ informer: "migration-pods" }),
        metrics: deps.informerMetrics,
      });
    }
  }

  enqueue(m: Migration): void {
    this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`);
  }

  /**
   * A pod changed: wake the Migrations it matters to. A pod with the
   * edgeshift.dev/migration label is a restored or pre-pull pod of the
   * Migration the label names; any other pod may be a Migration's original.
   */
  podChanged(pod: V1Pod): void {
    const ns = pod.metadata?.namespace ?? "";
    const label = pod.metadata?.labels?.[MIGRATION_POD_LABEL];
    for (const m of this.deps.migrations.list(ns)) {
      if (migrationFinished(m) && !m.metadata.deletionTimestamp && !holdToRelease(m)) continue;
      // A restored pod in the cloud is the original of its return (ToEdge) too.
      const ours =
        (label !== undefined && toLabelValue(m.metadata.name ?? "") === label) ||
        m.spec.podName === pod.metadata?.name;
      if (ours) this.enqueue(m);
    }
  }

  async start(): Promise<void> {
    this.queue.start((key) => this.reconcile(key), this.deps.workers);
    for (const m of this.deps.migrations.list()) this.enqueue(m);
    await this.pods?.start();
  }

  async stop(): Promise<void> {
    await this.pods?.stop();
    await this.queue.shutdown();
  }

  /**
   * A step waits for a pod to change (an event wakes it) or for its deadline
   * (a timer does); the resync only covers a missed event.
   */
  private waitFor(deadline?: number): { requeueAfterMs: number } {
    const left = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - Date.now() + 10;
    return { requeueAfterMs: Math.max(10, Math.min(this.resyncMs, left)) };
  }

  private async reconcile(key: string): Promise<undefined | { requeueAfterMs: number }> {
    const [namespace = "", name = ""] = key.split("/");
    const m = this.deps.migrations.get(name, namespace);
    if (!m) return undefined;
    const log = this.log.child({ key });
    if (m.metadata.deletionTimestamp) {
      if (m.metadata.finalizers?.includes(CLEANUP_FINALIZER)) return await this.finalize(m, log);
      return await this.imagesLeftByAgent(m, log);
    }
    if (migrationFinished(m)) {
      // Failed with the original held, or ended by an earlier pass whose
      // finalizer removal did not go through.
      if (m.metadata.finalizers?.includes(CLEANUP_FINALIZER)) {
        const holding = await this.holdReleased(m, log);
        if (holding) return holding;
        await this.releaseFinalizer(m);
        return undefined;
      }
      return await this.imagesLeftByAgent(m, log);
    }
    try {
      if (!m.metadata.finalizers?.includes(CLEANUP_FINALIZER)) {
        await this.setFinalizers(m, [...(m.metadata.finalizers ?? []), CLEANUP_FINALIZER]);
        return undefined;
      }
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
      const failure = this.unretried(m, err);
      if (failure) {
        await this.fail(m, failure, log);
        return undefined;
      }
      throw err;
    }
  }

  /**
   * What a step's error that is not a Failure ends the Migration with, or
   * undefined to retry it with the queue's backoff. API-server answers that are
   * not decisions (429, 5xx, a webhook that could not be called, a broken
   * connection) and refusals an admin may lift (an admission policy) are retried
   * until the step's deadline, then fail with it (RestoreTimeout even when the
   * restored pod was never created). An error that is no API answer at all is a
   * broken invariant: retrying repeats it, so it fails at once. Cutover is never
   * ended this way: the original may be gone, so it retries until settled.
   */
  private unretried(m: Migration, err: unknown): Failure | undefined {
    if (err instanceof RequeueError) throw err;
    const kind = apiErrorKind(err instanceof StepError ? err.cause : err);
    if (kind === "conflict") throw new RequeueError("conflict");
    const phase = m.status?.phase ?? "Pending";
    if (phase === "CuttingOver") return undefined;
    if (kind === "unexpected")
      return new Failure(
        "InternalError",
        `the operator cannot go on in ${phase}: ${describeError(err)}`.slice(0, 500),
      );
    const deadline = this.stepDeadline(m);
    if (!deadline || !Number.isFinite(deadline.at) || Date.now() <= deadline.at) return undefined;
    const within = formatDuration(deadline.timeoutMs / 1000);
    const what =
      err instanceof StepError && err.doing === CREATING_RESTORED_POD
        ? `the restored pod could not be created within ${within}`
        : `${deadline.step} did not complete within ${within}`;
    const last = describeError(err instanceof StepError ? err.cause : err);
    return new Failure(deadline.reason, `${what}; last error: ${last}`.slice(0, 500));
  }

  /** When the current step must have ended, and the reason it then fails with. */
  private stepDeadline(
    m: Migration,
  ): { at: number; timeoutMs: number; reason: string; step: string } | undefined {
    const t = m.status?.timestamps ?? {};
    const created = Date.parse(t.created ?? m.metadata.creationTimestamp?.toString() ?? "");
    switch (m.status?.phase) {
      case "Checkpointing":
      case "Pushing": {
        const timeoutMs = this.deps.checkpointTimeoutMs;
        return {
          at: created + timeoutMs,
          timeoutMs,
          reason: "CheckpointTimeout",
          step: "the checkpoint",
        };
      }
      case "Restoring": {
        // restoreStarted is the first thing the step writes; if even that failed, since it was entered.
        const since = Date.parse(t.restoreStarted ?? t.imagePushed ?? "") || created;
        const timeoutMs = this.deps.restoreTimeoutMs;
        return { at: since + timeoutMs, timeoutMs, reason: "RestoreTimeout", step: "the restore" };
      }
      default:
        return undefined;
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
    const toEdge = m.spec.direction === "ToEdge";
    const en = toEdge ? this.returnEdgeNode(pod, source) : this.deps.edgeNodes.ownerOf(source);
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
    // A hand-written Migration obeys the same spec.pods and opt-out as the decision engine.
    const selected = podSelection(pod, en.spec.pods, this.deps.operatorNamespace);
    if (!selected.selected) {
      if (selected.reason === "OptedOut")
        throw new Failure("OptedOut", `pod ${m.spec.podName} is not migrated: ${selected.message}`);
      throw new Failure(
        "NotSelected",
        `pod ${m.spec.podName} is not one of EdgeNode ${en.metadata.name}'s pods (spec.pods): ${selected.message}`,
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

    // A return goes to the EdgeNode's own nodes, which must be able to checkpoint it again.
    const candidates = toEdge
      ? this.deps.edgeNodes.edgeNodesOf(en.metadata.name ?? "").nodes
      : [...this.deps.edgeNodes.nodes.list()];
    const choose = (checkpoint: boolean, podsByNode: Map<string, V1Pod[]>) =>
      chooseTarget({
        pod,
        sourceNode,
        candidates,
        podsByNode,
        cloudSelector: toEdge ? en.spec.nodeSelector : en.spec.cloud.nodeSelector,
        ...(toEdge
          ? {
              side: "edge" as const,
              targetMustCheckpoint: (en.spec.restorePolicy ?? "checkpoint") === "checkpoint",
            }
          : {}),
        targetNode: m.spec.targetNode,
        checkpoint,
      });
    const podsByNode = await this.podsByNode(toEdge ? candidates : undefined);
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
      // Admission lets only this identity, on the source node, write the agent's part.
      s.agentIdentity = agentIdentity(this.deps.operatorNamespace, en.metadata.name ?? "");
      s.policy = policy;
      s.handoff =
        policy === "checkpoint" ? (m.spec.handoff ?? en.spec.handoff ?? "Freeze") : undefined;
      s.sourceNode = source;
      s.sourcePodUID = pod.metadata?.uid;
      s.targetNode = target.node;
      // The agent freezes exactly these containers (it takes no path or id from anyone else).
      s.containers = containers.map((name) => {
        const containerID = pod.status?.containerStatuses?.find(
          (c) => c.name === name,
        )?.containerID;
        return containerID ? { name, containerID } : { name };
      });
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

  /**
   * ToEdge: the EdgeNode a pod in the cloud returns to: the one named by its
   * restored pod's label, with returnToEdge, whose cloud nodes include the
   * pod's node. Else a NotReturnable failure.
   */
  private returnEdgeNode(pod: V1Pod, source: string): EdgeNode {
    const name = pod.metadata?.name ?? "";
    const label = pod.metadata?.labels?.[EDGENODE_LABEL];
    if (!label || !pod.metadata?.labels?.[MIGRATION_POD_LABEL])
      throw new Failure(
        "NotReturnable",
        `pod ${name} was not moved to the cloud by edgeshift (it has no ${EDGENODE_LABEL} label)`,
      );
    const en = this.deps.edgeNodes.edgeNodes
      .list()
      .find((e) => toLabelValue(e.metadata.name ?? "") === label && !e.metadata.deletionTimestamp);
    if (!en) throw new Failure("NotReturnable", `the EdgeNode ${label} of pod ${name} is gone`);
    if (!en.spec.returnToEdge)
      throw new Failure(
        "NotReturnable",
        `EdgeNode ${en.metadata.name} sets no returnToEdge: its pods stay in the cloud`,
      );
    const node = this.deps.edgeNodes.nodes.get(source);
    if (
      !node ||
      this.deps.edgeNodes.ownerOf(source) ||
      !matchesLabelSelector(en.spec.cloud.nodeSelector, node.metadata?.labels ?? {})
    )
      throw new Failure(
        "NotReturnable",
        `pod ${name} runs on ${source || "no node"}, not on a cloud node of EdgeNode ${en.metadata.name}`,
      );
    return en;
  }

  /** The EdgeNode a Migration belongs to: its source node's, or (ToEdge) the one it returns to. */
  private edgeNodeOf(m: Migration): EdgeNode | undefined {
    if (m.spec.direction === "ToEdge") {
      const en = this.deps.edgeNodes.edgeNodes.get(m.status?.edgeNode ?? "");
      return en?.spec.returnToEdge ? en : undefined;
    }
    return this.deps.edgeNodes.ownerOf(m.status?.sourceNode ?? "");
  }

  /** The pods bound to each candidate node: the cloud nodes, or `only` these (a return's edge nodes). */
  private async podsByNode(only?: V1Node[]): Promise<Map<string, V1Pod[]>> {
    const out = new Map<string, V1Pod[]>();
    for (const node of only ?? this.deps.edgeNodes.nodes.list()) {
      const name = node.metadata?.name ?? "";
      // Cloud nodes only matter; a field-selected list per candidate keeps this bounded.
      if (!only && this.deps.edgeNodes.ownerOf(name)) continue;
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
      const en = this.edgeNodeOf(m);
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
      const images = this.acceptImages(m);
      const t = m.status?.timestamps ?? {};
      if (t.checkpointStarted && t.checkpointed)
        this.observe("checkpoint", t.checkpointStarted, t.checkpointed);
      if (t.checkpointed && t.imagePushed) this.observe("push", t.checkpointed, t.imagePushed);
      for (const c of m.status?.containers ?? [])
        if (c.archiveSizeBytes) this.checkpointBytes.observe(c.archiveSizeBytes);
      await this.write(m, (s) => {
        s.phase = "Restoring";
        s.containers = (s.containers ?? []).map((c) => ({ ...c, image: images[c.name] }));
      });
      return undefined;
    }
    if (cp?.status === "True" && m.status?.phase === "Checkpointing") {
      // Only the operator moves the phase; the agent reports the condition.
      await this.write(m, (s) => {
        s.phase = "Pushing";
      });
      return { requeueAfterMs: 2000 };
    }
    if (agentCheckDue(m, Date.now())) {
      // Nobody to take the checkpoint: say so now rather than at CheckpointTimeout.
      const why = await this.agentMissing(m.status?.edgeNode ?? "", m.status?.sourceNode ?? "");
      if (why) throw new Failure("AgentUnavailable", why);
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

  /**
   * The checkpoint images a restored pod may run: the Migration's EdgeNode's
   * repository pinned by the digests the agent reported, nothing else (see
   * migration/restore/images.ts). Anything else fails with ImageRejected.
   */
  private acceptImages(m: Migration): Record<string, string> {
    const en = this.edgeNodeOf(m);
    const r = checkpointImages(
      en?.metadata.name === m.status?.edgeNode ? en?.spec.registry?.repository : undefined,
      m.status?.containers ?? [],
    );
    if (!r.ok) throw new Failure("ImageRejected", r.message);
    return r.images;
  }

  private async restore(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    const ns = m.metadata.namespace ?? "";
    const original = this.theOriginal(m, await this.readPod(ns, m.spec.podName));
    if (!original || original.metadata?.deletionTimestamp) {
      throw new Failure(
        "SourcePodGone",
        `the original pod ${m.spec.podName} went away during the migration`,
      );
    }
    const name = restorePodName(m.spec.podName, m.metadata.uid ?? "");
    if (!m.status?.restoredPod) {
      // Recorded before it is created: a restarted operator finds it by this
      // name, and cutover reveals it to the owner from this record even when
      // the original is gone by then.
      const reveal = revealRecord(original);
      await this.write(m, (s) => {
        s.restoredPod = name;
        if (reveal) s.reveal = reveal;
        s.timestamps = { ...s.timestamps, restoreStarted: iso() };
      });
      return { requeueAfterMs: 0 };
    }
    let restored = await this.readPod(ns, name);
    if (!restored) {
      const en = this.edgeNodeOf(m);
      const policy = m.status?.policy ?? "restart";
      if (policy === "checkpoint") {
        const waiting = await this.awaitPrepull(m, original);
        if (waiting) return waiting;
      }
      const images = policy === "checkpoint" ? this.acceptImages(m) : {};
      if (policy === "checkpoint") {
        // What the agent reported must be exactly the containers this migration moves.
        const moved = migratedContainers(original, m).sort();
        const reported = Object.keys(images).sort();
        if (moved.join() !== reported.join())
          throw new Failure(
            "ImageRejected",
            `the checkpoint reports containers [${reported.join(", ")}], the migration moves [${moved.join(", ")}]`,
          );
      }
      const owner = ownerKind(original);
      const body = buildRestorePod({
        pod: original,
        migration: m,
        targetNode: m.status?.targetNode ?? "",
        policy,
        images,
        pullSecret: policy === "checkpoint" ? en?.spec.registry?.secretRef?.name : undefined,
        hideFromOwner: owner.kind === "Job" || owner.kind === "ReplicaSet",
      });
      try {
        restored = await this.deps.core.createNamespacedPod({ namespace: ns, body });
      } catch (err) {
        const kind = apiErrorKind(err);
        if (kind === "conflict") return this.waitFor();
        // Refused (quota, admission, an invalid pod): asking again changes nothing.
        if (kind === "refused")
          throw new Failure(
            "RestoreFailed",
            `cannot create the restored pod: ${describeError(err)}`.slice(0, 500),
          );
        throw new StepError(CREATING_RESTORED_POD, err);
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
      // Its changes (scheduled, pulled, Ready) wake this step.
      return this.waitFor(started + this.deps.restoreTimeoutMs);
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

  /**
   * Hands the workload to the restored pod, reveal first: the owner adopts the
   * restored pod (from the record made when it was created), then the original
   * goes. A ReplicaSet removes the original itself (it costs the least); a Job's
   * or a bare pod's original is deleted by uid once the restored pod is
   * revealed. Whatever happens in between, there is never a moment without a
   * copy the owner counts, so a crash here makes no owner start the work anew.
   * Succeeded only once the owner holds the restored pod and the original is
   * gone; past the cutover deadline the operator settles it (removes the
   * original) or, when the owner never adopts, fails and rolls back.
   */
  private async cutOver(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    const ns = m.metadata.namespace ?? "";
    const restored = await this.readPod(ns, m.status?.restoredPod ?? "");
    if (!restored)
      throw new Failure("CutOverFailed", "the restored pod disappeared before cutover");
    if (restored.metadata?.deletionTimestamp)
      throw new Failure(
        "CutOverFailed",
        "the restored pod was deleted (by its owner or by hand) before cutover completed",
      );
    const original = this.theOriginal(m, await this.readPod(ns, m.spec.podName));
    const live = original && !original.metadata?.deletionTimestamp ? original : undefined;
    const record = m.status?.reveal ?? (original ? revealRecord(original) : undefined);

    if (live && record?.ownerKind === "ReplicaSet") await this.setDeletionCost(live);
    // A Job that sees the original and the revealed pod both active removes one
    // of its own choosing (the newer, the restored pod) at its next sync, about
    // a second after the reveal: so everything the original's removal needs is
    // done before the reveal, and the original is deleted right after it.
    if (live && record?.ownerKind === "Job") await this.releaseFromJob(live);
    const revealed = await this.reveal(ns, restored, record);
    if (revealed.metadata?.deletionTimestamp)
      throw new Failure("CutOverFailed", "the owner removed the restored pod at cutover");
    // The owner's adoption and the original's removal are awaited from the
    // reveal, not from Ready: a reveal held up for longer than the deadline (a
    // slow or refusing API server) must still leave the owner time to adopt.
    let since = Date.parse(m.status?.timestamps?.revealed ?? "");
    if (record && !Number.isFinite(since)) {
      const t = iso();
      m = await this.write(m, (s) => {
        s.timestamps = { ...s.timestamps, revealed: t };
      });
      since = Date.parse(t);
    }
    if (!Number.isFinite(since))
      since = Date.parse(m.status?.timestamps?.restored ?? "") || Date.now();
    const expired = Date.now() - since > this.deps.cutoverTimeoutMs;
    if (live) {
      // A ReplicaSet removes the surplus original itself; past the deadline it
      // has kept both (scaled up meanwhile): the original goes all the same.
      // The original's deletion (an edge pod event) wakes this step.
      if (record?.ownerKind === "ReplicaSet" && !expired)
        return this.waitFor(since + this.deps.cutoverTimeoutMs);
      await this.deleteOriginal(m, live);
      log.info({ pod: m.spec.podName, expired }, "Deleted the original pod");
      if (expired && record?.ownerKind === "ReplicaSet") {
        await this.event(
          m,
          "Warning",
          "CutOverDeadline",
          "CutOver",
          `ReplicaSet ${record.ownerName} kept the original past ${formatDuration(this.deps.cutoverTimeoutMs / 1000)}; removed it`,
        );
      }
    }
    if (record) {
      const ref = revealed.metadata?.ownerReferences?.find((r) => r.controller === true);
      if (ref?.uid !== record.ownerUID) {
        if (expired) {
          throw new Failure(
            "CutOverFailed",
            `${record.ownerKind} ${record.ownerName} did not adopt the restored pod within ${formatDuration(this.deps.cutoverTimeoutMs / 1000)}`,
          );
        }
        // The owner's adoption (a restored pod event) wakes this step.
        return this.waitFor(since + this.deps.cutoverTimeoutMs);
      }
    }
    if (record?.ownerKind === "ReplicaSet") await this.dropKeepCost(revealed);
    const t = iso();
    await this.finish(
      m,
      "Succeeded",
      "CutOver",
      `running on ${restored.spec?.nodeName} as ${restored.metadata?.name}${original ? "" : " (the original had gone before cutover)"}`,
      t,
    );
    if (m.status?.timestamps?.restored) this.observe("cutover", m.status.timestamps.restored, t);
    return undefined;
  }

  /**
   * The pod the Migration validated, or undefined when the name is free. A pod
   * created later under the same name is another workload: the migration
   * fails and leaves it alone.
   */
  private theOriginal(m: Migration, pod: V1Pod | undefined): V1Pod | undefined {
    const uid = m.status?.sourcePodUID;
    if (pod && uid && pod.metadata?.uid !== uid) {
      throw new Failure(
        "SourcePodReplaced",
        `pod ${m.spec.podName} was deleted and created again during the migration (uid ${pod.metadata?.uid}, validated ${uid}); the new pod is left alone`,
      );
    }
    // Ended by itself, not by a deletion (ours or its owner's at cutover).
    if (pod && podFinished(pod) && !pod.metadata?.deletionTimestamp)
      this.finishedDuringMigration(pod);
    return pod;
  }

  private finishedDuringMigration(pod: V1Pod): never {
    throw new Failure(
      "SourcePodFinished",
      `the original pod ${pod.metadata?.name} ended (${pod.status?.phase}) on ${pod.spec?.nodeName} during the migration: nothing is left to move`,
    );
  }

  /** Makes the ReplicaSet remove the original first once it adopts the restored pod. */
  private async setDeletionCost(original: V1Pod): Promise<void> {
    if (original.metadata?.annotations?.[DELETION_COST] === LOWEST_COST) return;
    await this.deps.core.patchNamespacedPod(
      {
        namespace: original.metadata?.namespace ?? "",
        name: original.metadata?.name ?? "",
        body: {
          metadata: {
            uid: original.metadata?.uid,
            annotations: { [DELETION_COST]: LOWEST_COST },
          },
        },
      },
      mergePatch,
    );
  }

  /**
   * Without its tracking finalizer the Job does not count the removed original
   * as a failed pod (which could exhaust backoffLimit and fail the whole Job).
   * The resourceVersion precondition keeps a success the kubelet just reported
   * from being dropped uncounted.
   */
  private async releaseFromJob(original: V1Pod): Promise<void> {
    let pod = original;
    // The pod changes under us (the kubelet's status, a monitor injected): read
    // it again at once rather than through the queue's backoff, since the
    // reveal waits for this.
    for (let attempt = 1; ; attempt++) {
      const finalizers = pod.metadata?.finalizers ?? [];
      if (!finalizers.includes(JOB_TRACKING_FINALIZER)) return;
      try {
        await this.deps.core.patchNamespacedPod(
          {
            namespace: pod.metadata?.namespace ?? "",
            name: pod.metadata?.name ?? "",
            body: {
              metadata: {
                resourceVersion: pod.metadata?.resourceVersion,
                finalizers: finalizers.filter((f) => f !== JOB_TRACKING_FINALIZER),
              },
            },
          },
          mergePatch,
        );
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= 5) throw err;
      }
      const now = await this.readPod(pod.metadata?.namespace ?? "", pod.metadata?.name ?? "");
      if (!now || now.metadata?.uid !== original.metadata?.uid) return;
      if (podFinished(now) && !now.metadata?.deletionTimestamp) this.finishedDuringMigration(now);
      pod = now;
    }
  }

  /** Deletes exactly the pod validated: a pod re-created under its name is not touched. */
  private async deleteOriginal(m: Migration, original: V1Pod): Promise<void> {
    // Frozen, the original cannot act on a SIGTERM: its grace period would only
    // keep it Terminating. The kubelet's SIGKILL comes after a second, and runc
    // thaws a frozen container for it: it dies without running again.
    const frozen = m.status?.handoff === "Freeze" && Boolean(m.status?.timestamps?.frozen);
    await this.deps.core
      .deleteNamespacedPod({
        namespace: original.metadata?.namespace ?? "",
        name: original.metadata?.name ?? "",
        // In the body: with a body, the API server reads no delete option from the query.
        body: {
          preconditions: { uid: original.metadata?.uid },
          ...(frozen ? { gracePeriodSeconds: 1 } : {}),
        },
      })
      .catch((err) => {
        if (!isNotFound(err)) throw err;
      });
  }

  /**
   * Gives the restored pod its owner's labels back, from the record (idempotent:
   * nothing is sent when they are already there). Returns the pod as it is now.
   */
  private async reveal(
    ns: string,
    restored: V1Pod,
    record: RevealRecord | undefined,
  ): Promise<V1Pod> {
    const patch = record
      ? revealToOwner(restored, { metadata: { labels: record.labels ?? {} } })
      : undefined;
    if (!patch) return restored;
    // In the same write: should the ReplicaSet find a pod too many (the
    // original, or a replacement made after the original went by hand), the
    // restored pod, which holds the migrated state, is the one it keeps.
    const body =
      record?.ownerKind === "ReplicaSet"
        ? { metadata: { ...patch.metadata, annotations: { [DELETION_COST]: HIGHEST_COST } } }
        : patch;
    return await this.deps.core.patchNamespacedPod(
      { namespace: ns, name: restored.metadata?.name ?? "", body },
      mergePatch,
    );
  }

  /** Once settled, the restored pod is one of its ReplicaSet's pods like any other. */
  private async dropKeepCost(restored: V1Pod): Promise<void> {
    if (restored.metadata?.annotations?.[DELETION_COST] !== HIGHEST_COST) return;
    await this.deps.core.patchNamespacedPod(
      {
        namespace: restored.metadata?.namespace ?? "",
        name: restored.metadata?.name ?? "",
        body: { metadata: { uid: restored.metadata.uid, annotations: { [DELETION_COST]: null } } },
      },
      mergePatch,
    );
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
      const kind = apiErrorKind(err);
      if (kind === "conflict") return;
      // The restored pod would be refused the same way (quota, admission).
      if (kind === "refused")
        throw new Failure(
          "RestoreFailed",
          `cannot create the pre-pull pod for ${target}: ${describeError(err)}`.slice(0, 500),
        );
      throw new StepError("creating the pre-pull pod", err);
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
      return this.waitFor();
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
    // The pre-pull pod's changes wake this step.
    return this.waitFor(started + this.deps.restoreTimeoutMs);
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

  // --- checkpoint images the agent cannot remove -----------------------------------

  /**
   * The agent that pushed a Migration's images removes them when it ends (they
   * hold memory) and holds IMAGE_FINALIZER until it has. When it cannot (no
   * agent of the EdgeNode on the source node, none Ready for AGENT_GRACE_MS,
   * or the finalizer still there IMAGE_CLEANUP_GRACE_MS after the end: a node
   * cut off from the registry) the operator runs the image-cleanup pod
   * (migration/agent/image-cleanup.ts) with the EdgeNode's registry Secret,
   * then releases the finalizer: deleting a Migration or its namespace never
   * waits for one edge node to be alive.
   */
  private async imagesLeftByAgent(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    if (!m.metadata.finalizers?.includes(IMAGE_FINALIZER)) return undefined;
    const en = this.deps.edgeNodes.edgeNodes.get(m.status?.edgeNode ?? "");
    const why = en
      ? await this.agentCannotClean(m, en.metadata.name ?? "")
      : "its EdgeNode is gone";
    if (!why) return { requeueAfterMs: AGENT_GRACE_MS / 2 };
    const digests = (m.status?.containers ?? []).flatMap((c) => (c.digest ? [c.digest] : []));
    const registry = en?.spec.registry;
    if (digests.length > 0 && registry?.imageRetention !== "Retain") {
      if (!registry) {
        // Without the EdgeNode nothing says which registry account may delete them.
        await this.event(
          m,
          "Warning",
          "CheckpointImagesLeft",
          "Cleanup",
          `${why}: checkpoint images left in the registry for its administrator: ${digests.join(", ")}`,
        );
      } else {
        const done = await this.runImageCleanup(m, registry, digests, why, log);
        if (done) return done;
      }
    }
    log.info({ why }, "Released the edge agent's image finalizer");
    await this.setFinalizers(
      m,
      (m.metadata.finalizers ?? []).filter((f) => f !== IMAGE_FINALIZER),
    ).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
    return undefined;
  }

  /** Why the agent will not remove the images, or undefined while it may. */
  private async agentCannotClean(m: Migration, edgeNode: string): Promise<string | undefined> {
    const source = m.status?.sourceNode ?? "";
    const ended = Date.parse(m.status?.timestamps?.finished ?? "");
    const since = m.metadata.deletionTimestamp
      ? Math.min(
          Date.parse(String(m.metadata.deletionTimestamp)),
          ended || Number.POSITIVE_INFINITY,
        )
      : ended;
    if (Number.isFinite(since) && Date.now() - since > IMAGE_CLEANUP_GRACE_MS) {
      return `the edge agent on ${source} has not removed them ${formatDuration(IMAGE_CLEANUP_GRACE_MS / 1000)} after the migration ended`;
    }
    return this.agentMissing(edgeNode, source);
  }

  /** Why no agent of `edgeNode` serves `node` (see agent-availability.ts), or undefined while one may. */
  private async agentMissing(edgeNode: string, node: string): Promise<string | undefined> {
    const pods = await this.deps.core.listNamespacedPod({
      namespace: this.deps.operatorNamespace,
      labelSelector: formatLabelSelector({ matchLabels: agentPodSelector(edgeNode) }),
      fieldSelector: `spec.nodeName=${node}`,
    });
    return agentUnavailable({
      pods: pods.items,
      node,
      daemonSet: `${this.deps.operatorNamespace}/${agentName(edgeNode)}`,
      now: Date.now(),
    });
  }

  /** Runs the image-cleanup pod to its end; a requeue while it runs, undefined once done. */
  private async runImageCleanup(
    m: Migration,
    registry: RegistrySpec,
    digests: string[],
    why: string,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    const namespace = this.deps.operatorNamespace;
    const name = imageCleanupPodName(m.metadata.uid ?? "");
    const pod = await this.readPod(namespace, name);
    if (!pod) {
      await this.deps.core
        .createNamespacedPod({
          namespace,
          body: imageCleanupPod({
            migration: m,
            registry,
            digests,
            image: this.deps.cleanupImage,
            namespace,
          }),
        })
        .catch((err) => {
          if (!isConflict(err)) throw err;
        });
      log.info({ pod: name, why }, "Removing checkpoint images in the edge agent's place");
      return { requeueAfterMs: 2000 };
    }
    const phase = pod.status?.phase;
    if (phase !== "Succeeded" && phase !== "Failed") return { requeueAfterMs: 2000 };
    await this.deps.core
      .deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 })
      .catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    if (phase === "Failed") {
      await this.event(
        m,
        "Warning",
        "CheckpointImageCleanupFailed",
        "Cleanup",
        `pod ${namespace}/${name} could not remove the checkpoint images (${pod.status?.reason ?? "failed"}); retrying`,
      );
      return { requeueAfterMs: 60_000 };
    }
    await this.event(
      m,
      "Normal",
      "CheckpointImagesDeleted",
      "Cleanup",
      `${why}: removed ${digests.length} checkpoint image(s) in the edge agent's place`,
    );
    return undefined;
  }

  // --- endings ------------------------------------------------------------------

  private async fail(m: Migration, f: Failure, log: Logger): Promise<void> {
    log.warn({ reason: f.reason, message: f.message }, "Migration failed");
    await this.rollBack(m);
    await this.finish(m, "Failed", f.reason, f.message, iso());
  }

  /**
   * Make-before-break undone: the restored and pre-pull pods go, the original
   * (the validated one, not a pod re-created under its name) stays and loses
   * the deletion cost cutover gave it.
   */
  private async rollBack(m: Migration): Promise<void> {
    const ns = m.metadata.namespace ?? "";
    await this.removePrepull(m);
    const restoredName = m.status?.restoredPod;
    if (restoredName) {
      // With the original held, gracefully: the pod leaves the API only once
      // its kubelet has stopped its containers, and only then may the original
      // run again (holdReleased). Otherwise at once: the original runs anyway.
      const held = m.status?.handoff === "Freeze" && Boolean(m.status.timestamps?.frozen);
      await this.deps.core
        .deleteNamespacedPod({
          namespace: ns,
          name: restoredName,
          gracePeriodSeconds: held ? 1 : 0,
        })
        .catch((err) => {
          if (!isNotFound(err)) throw err;
        });
    }
    const original = await this.readPod(ns, m.spec.podName);
    if (
      original?.metadata?.annotations?.[DELETION_COST] === LOWEST_COST &&
      (!m.status?.sourcePodUID || original.metadata.uid === m.status.sourcePodUID)
    ) {
      await this.deps.core
        .patchNamespacedPod(
          {
            namespace: ns,
            name: m.spec.podName,
            body: {
              metadata: { uid: original.metadata.uid, annotations: { [DELETION_COST]: null } },
            },
          },
          mergePatch,
        )
        .catch((err) => {
          if (!isNotFound(err) && !isConflict(err)) throw err;
        });
    }
    // Cutover takes a Job's tracking finalizer off the original just before the
    // reveal: running on, the original needs it back for the Job to count its end.
    const own = original && m.status?.reveal?.ownerKind === "Job" ? original : undefined;
    if (
      own &&
      (!m.status?.sourcePodUID || own.metadata?.uid === m.status.sourcePodUID) &&
      !own.metadata?.deletionTimestamp &&
      !podFinished(own) &&
      !(own.metadata?.finalizers ?? []).includes(JOB_TRACKING_FINALIZER)
    ) {
      await this.deps.core.patchNamespacedPod(
        {
          namespace: ns,
          name: m.spec.podName,
          body: {
            metadata: {
              resourceVersion: own.metadata?.resourceVersion,
              finalizers: [...(own.metadata?.finalizers ?? []), JOB_TRACKING_FINALIZER],
            },
          },
        },
        mergePatch,
      );
    }
  }

  /**
   * A Migration deleted in flight: roll back unless cutover has already removed
   * the original, in which case the restored pod is the workload and is handed
   * to its owner rather than left hidden. Then the finalizer goes.
   */
  private async finalize(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    if (migrationFinished(m)) {
      const holding = await this.holdReleased(m, log);
      if (holding) return holding;
    } else {
      const ns = m.metadata.namespace ?? "";
      const found = await this.readPod(ns, m.spec.podName);
      const uid = m.status?.sourcePodUID;
      const originalLive =
        found && !found.metadata?.deletionTimestamp && (!uid || found.metadata?.uid === uid);
      const restored = m.status?.restoredPod
        ? await this.readPod(ns, m.status.restoredPod)
        : undefined;
      if (!originalLive && restored && m.status?.phase === "CuttingOver") {
        await this.reveal(ns, restored, m.status?.reveal);
        log.info(
          { pod: restored.metadata?.name },
          "Migration deleted after the original went: kept the restored pod",
        );
      } else {
        await this.rollBack(m);
        const holding = await this.holdReleased(m, log);
        if (holding) return holding;
        log.info("Migration deleted in flight: rolled back");
      }
      await this.event(
        m,
        "Warning",
        "MigrationDeleted",
        "Finalize",
        originalLive || !restored || m.status?.phase !== "CuttingOver"
          ? `deleted during ${m.status?.phase ?? "Pending"}: the restored pod was removed, the original runs on`
          : `deleted during cutover after the original had gone: ${restored.metadata?.name} runs on`,
      );
    }
    await this.releaseFinalizer(m);
    return undefined;
  }

  /**
   * The held original of a rolled-back Freeze migration (holdToRelease), or
   * undefined once nothing of it is left to the operator. No restored copy may
   * run while the original runs again: status.timestamps.released, which the
   * agent waits for before it thaws, is written only once the restored pod is
   * gone from the API (deleted gracefully by rollBack, its kubelet removes it
   * when its containers have stopped) or was never created. The Migration and
   * its cleanup finalizer then stay until the agent reports the original
   * thawed, or the original is gone: a Migration that vanished first would
   * leave it frozen for good, since the agent knows its holds by Migration.
   */
  private async holdReleased(
    m: Migration,
    log: Logger,
  ): Promise<{ requeueAfterMs: number } | undefined> {
    if (!holdToRelease(m)) return undefined;
    const ns = m.metadata.namespace ?? "";
    if (!m.status?.timestamps?.released) {
      const name = m.status?.restoredPod;
      const restored = name ? await this.readPod(ns, name) : undefined;
      if (restored) {
        if (!restored.metadata?.deletionTimestamp) await this.rollBack(m);
        // Its removal by the kubelet wakes this.
        return this.waitFor();
      }
      await this.write(m, (s) => {
        s.timestamps = { ...s.timestamps, released: iso() };
      });
      log.info("Rolled back with the original held: no restored copy runs, the agent may thaw it");
      return this.waitFor();
    }
    const original = await this.readPod(ns, m.spec.podName);
    const uid = m.status.sourcePodUID;
    if (!original || (uid && original.metadata?.uid !== uid) || podFinished(original))
      return undefined;
    // The agent's report wakes this.
    return this.waitFor();
  }

  private async releaseFinalizer(m: Migration): Promise<void> {
    const finalizers = m.metadata.finalizers ?? [];
    if (!finalizers.includes(CLEANUP_FINALIZER)) return;
    await this.setFinalizers(
      m,
      finalizers.filter((f) => f !== CLEANUP_FINALIZER),
    ).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }

  /** The whole list with the read's resourceVersion: the agent's finalizer is never lost. */
  private setFinalizers(m: Migration, finalizers: string[]): Promise<Migration> {
    return setMigrationFinalizers(this.deps.custom, m, finalizers);
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
    const ended = await this.write(m, (s) => {
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
      if (phase === "Succeeded") Object.assign(s, handoffFigures(s, at));
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
    // Ended: nothing of the operator's is left to clean up (a conflict is retried
    // by the next pass, which finds the Migration finished), unless the original
    // is held: the next pass releases it first (holdReleased).
    if (!holdToRelease(ended)) await this.releaseFinalizer(ended);
  }

  private observe(step: MigrationStep, from: string, to: string): void {
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

  private async write(m: Migration, mutate: (s: MigrationStatus) => void): Promise<Migration> {
    return await writeMigrationStatus(this.deps.custom, m, (s) => {
      mutate(s);
      s.observedGeneration = m.metadata.generation;
    });
  }
}

/**
 * What the hand-off cost. Freeze: no copy ran from the freeze until the
 * restored pod was Ready and its owner's (so its Services') again. Fork: the
 * original ran on past the checkpointed state from the dump to cutover.
 */
export function handoffFigures(
  s: MigrationStatus,
  cutOver: string,
): Pick<MigrationStatus, "downtimeSeconds" | "divergenceSeconds"> {
  const t = s.timestamps ?? {};
  const secs = (from?: string, to?: string) => {
    const d = (Date.parse(to ?? "") - Date.parse(from ?? "")) / 1000;
    return Number.isFinite(d) ? Math.max(0, Math.round(d * 1000) / 1000) : undefined;
  };
  if (s.policy !== "checkpoint") return {};
  if (s.handoff === "Freeze") {
    const downtimeSeconds = secs(t.frozen, t.revealed ?? t.restored);
    return downtimeSeconds === undefined ? {} : { downtimeSeconds };
  }
  const divergenceSeconds = secs(t.checkpointed, cutOver);
  return divergenceSeconds === undefined ? {} : { divergenceSeconds };
}
