import { createHash } from "node:crypto";
import type {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
  V1Node,
  V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { HIDDEN_VALUE, toLabelValue } from "../../migration/restore/pod.ts";
import { matchesLabelSelector } from "../api/labels.ts";
import {
  API_VERSION,
  EDGENODE_KIND,
  EDGENODE_LABEL,
  EDGENODE_PLURAL,
  EDGENODE_SPEC_DEFAULTS,
  type EdgeNode,
  type EdgeNodeList,
  type EdgeNodeStatus,
  GROUP,
  VERSION,
} from "../api/v1alpha1.ts";
import { getCondition, setCondition, statusChanged } from "../kube/conditions.ts";
import type { EventRecorder } from "../kube/events.ts";
import { type InformerMetrics, SupervisedInformer } from "../kube/informer.ts";
import {
  FIELD_MANAGER,
  isConflict,
  isNotFound,
  mergePatch,
  serverSideApply,
} from "../kube/patch.ts";
import { type QueueMetrics, RequeueError, WorkQueue } from "../kube/workqueue.ts";
import {
  agentClusterRoleBinding,
  agentDaemonSet,
  agentServiceAccount,
  cloudAgentName,
} from "./agent.ts";
import { type InjectionMetrics, PodWatcher } from "./podwatcher.ts";
import {
  checkpointCondition,
  type NodeSupport,
  nodeRuntimeSupport,
  restoreTargets,
} from "./preflight.ts";

/** Status fields that exist only while their spec field does. */
const CLEARABLE = ["applicationMetric", "cloudMonitoredPods"] as const;

/** status.cloudNodes lists at most this many (the condition counts them all). */
const MAX_CLOUD_NODES = 100;

export interface EdgeNodeControllerDeps {
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  apps: AppsV1Api;
  /** Each EdgeNode's agent identity: its ClusterRoleBinding. */
  rbac: RbacAuthorizationV1Api;
  /** The edgeshift image, for the agent DaemonSets. */
  agentImage: string;
  recorder: EventRecorder;
  log: Logger;
  registry: Registry;
  signingKey: Buffer;
  operatorNamespace: string;
  monitorImage: string;
  monitorNatsUrl: string;
  workers: number;
  informerMetrics?: InformerMetrics;
  queueMetrics?: QueueMetrics;
  injectionMetrics?: InjectionMetrics;
}

/** How the rest of the operator plugs into EdgeNode reconciles. */
export interface EdgeNodeHooks {
  /** Figures other parts of the operator own (stale monitors, active migrations). */
  extraStatus?: (
    edgeNode: string,
  ) => Pick<EdgeNodeStatus, "staleMonitors" | "activeMigrations" | "applicationMetric">;
  /** After each reconcile of a live EdgeNode, with the nodes it owns. */
  onEdgeNode?: (en: EdgeNode, nodes: V1Node[]) => void;
  onEdgeNodeGone?: (name: string) => void;
}

const byAge = (a: EdgeNode, b: EdgeNode) => {
  const ta = a.metadata.creationTimestamp ? new Date(a.metadata.creationTimestamp).getTime() : 0;
  const tb = b.metadata.creationTimestamp ? new Date(b.metadata.creationTimestamp).getTime() : 0;
  return ta - tb || (a.metadata.name ?? "").localeCompare(b.metadata.name ?? "");
};

/**
 * Resolves each EdgeNode's nodeSelector to edge Nodes, runs one PodWatcher per
 * matched node, checks each node's runtime for checkpoint support and reports
 * all of it in the EdgeNode's status. A node matched by several EdgeNodes
 * belongs to the oldest of them.
 */
export class EdgeNodeController {
  private readonly deps: EdgeNodeControllerDeps;
  private readonly log: Logger;
  readonly edgeNodes: SupervisedInformer<EdgeNode>;
  readonly nodes: SupervisedInformer<V1Node>;
  private readonly queue: WorkQueue;
  private readonly watchers = new Map<string, PodWatcher>();
  /** Per EdgeNode with returnToEdge: the pods it moved to the cloud, which may return. */
  private readonly cloudWatchers = new Map<string, PodWatcher>();
  private readonly watcherGauge: Gauge;
  private running = false;
  private hooks: EdgeNodeHooks = {};
  private readonly podListeners: ((pod: V1Pod) => void)[] = [];
  /** Hash of the agent DaemonSet last applied per EdgeNode: apply only on change (and once after start). */
  private readonly appliedAgents = new Map<string, string>();

  constructor(deps: EdgeNodeControllerDeps) {
    this.deps = deps;
    this.log = deps.log.child({ controller: "edgenode" });
    this.queue = new WorkQueue({ name: "edgenodes", metrics: deps.queueMetrics, log: this.log });
    this.watcherGauge = new Gauge({
      name: "edgeshift_pod_watchers",
      help: "Per-node pod watchers running",
      registers: [deps.registry],
    });
    this.edgeNodes = new SupervisedInformer<EdgeNode>({
      kubeConfig: deps.kubeConfig,
      resource: "edgenodes",
      path: `/apis/${GROUP}/${VERSION}/${EDGENODE_PLURAL}`,
      list: async () =>
        (await deps.custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: EDGENODE_PLURAL,
        })) as EdgeNodeList,
      onChange: (en) => this.enqueueAll(en.metadata.name),
      log: this.log.child({ informer: "edgenodes" }),
      metrics: deps.informerMetrics,
    });
    this.nodes = new SupervisedInformer<V1Node>({
      kubeConfig: deps.kubeConfig,
      resource: "nodes",
      path: "/api/v1/nodes",
      list: () => deps.core.listNode(),
      onChange: () => this.enqueueAll(),
      log: this.log.child({ informer: "nodes" }),
      metrics: deps.informerMetrics,
    });
  }

  /** Every EdgeNode, since a node or an EdgeNode change may move node ownership. */
  private enqueueAll(extra?: string): void {
    if (extra) this.queue.add(extra);
    for (const en of this.edgeNodes.list()) if (en.metadata.name) this.queue.add(en.metadata.name);
  }

  setHooks(hooks: EdgeNodeHooks): void {
    this.hooks = hooks;
  }

  /** `fn` sees every change of a pod on an edge node (the pod watchers' events); it must only enqueue. */
  onEdgePod(fn: (pod: V1Pod) => void): void {
    this.podListeners.push(fn);
  }

  requeue(name: string): void {
    this.queue.add(name);
  }

  /** The EdgeNode that owns an edge node (the one running its pod watcher). */
  ownerOf(node: string): EdgeNode | undefined {
    for (const w of this.watchers.values()) {
      if (w.node === node) return this.edgeNodes.get(w.edgeNode);
    }
    return undefined;
  }

  /**
   * A monitored pod on an edge node, with the EdgeNode that owns the node; or
   * (returning) a monitored pod in the cloud, with the EdgeNode it may return to.
   */
  monitoredPod(
    node: string,
    namespace: string,
    name: string,
  ): { pod: V1Pod; edgeNode: string; returning?: true } | undefined {
    for (const w of this.watchers.values()) {
      if (w.node !== node) continue;
      const pod = w.pod(namespace, name);
      if (pod) return { pod, edgeNode: w.edgeNode };
    }
    for (const w of this.cloudWatchers.values()) {
      const pod = w.pod(namespace, name);
      if (pod && pod.spec?.nodeName === node) return { pod, edgeNode: w.edgeNode, returning: true };
    }
    return undefined;
  }

  /** The nodes of an EdgeNode (those it owns) and the pods bound to each, from the pod watchers. */
  edgeNodesOf(edgeNode: string): { nodes: V1Node[]; podsByNode: Map<string, V1Pod[]> } {
    const nodes: V1Node[] = [];
    const podsByNode = new Map<string, V1Pod[]>();
    for (const w of this.watchersFor(edgeNode)) {
      const n = this.nodes.get(w.node);
      if (!n) continue;
      nodes.push(n);
      podsByNode.set(w.node, [...w.allPods()]);
    }
    return { nodes, podsByNode };
  }

  /** A pod of the cloud watcher of `edgeNode` may return: on one of its cloud nodes, and not mid-migration. */
  private mayReturn(edgeNode: string, pod: V1Pod): boolean {
    const node = pod.spec?.nodeName;
    const en = this.edgeNodes.get(edgeNode);
    if (!node || !en?.spec.returnToEdge || this.ownerOf(node)) return false;
    const n = this.nodes.get(node);
    if (!n || !matchesLabelSelector(en.spec.cloud.nodeSelector, n.metadata?.labels ?? {}))
      return false;
    // A restored pod still hidden from its owner is mid-migration.
    return !Object.values(pod.metadata?.labels ?? {}).includes(HIDDEN_VALUE);
  }

  /** Caches are warmed by every replica, so a new leader starts at once. */
  async startInformers(): Promise<void> {
    await Promise.all([this.edgeNodes.start(), this.nodes.start()]);
  }

  get synced(): boolean {
    return this.edgeNodes.hasSynced && this.nodes.hasSynced;
  }

  get healthy(): boolean {
    return (
      this.edgeNodes.healthy &&
      this.nodes.healthy &&
      [...this.watchers.values(), ...this.cloudWatchers.values()].every((w) => w.healthy)
    );
  }

  /** Starts the workers (leader only). */
  startWorkers(): void {
    this.running = true;
    this.queue.start((key) => this.reconcile(key), this.deps.workers);
    this.enqueueAll();
  }

  watchersFor(edgeNode: string): PodWatcher[] {
    return [...this.watchers.values()].filter((w) => w.edgeNode === edgeNode);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.queue.shutdown();
    await Promise.all(
      [...this.watchers.values(), ...this.cloudWatchers.values()].map((w) => w.stop()),
    );
    this.watchers.clear();
    this.cloudWatchers.clear();
    this.watcherGauge.set(0);
    await Promise.all([this.edgeNodes.stop(), this.nodes.stop()]);
  }

  private async stopWatcher(key: string): Promise<void> {
    const w = this.watchers.get(key);
    if (!w) return;
    this.watchers.delete(key);
    this.watcherGauge.set(this.watchers.size);
    await w.stop();
    this.log.info({ edgeNode: w.edgeNode, node: w.node }, "Stopped pod watcher");
  }

  private async stopCloudWatcher(name: string): Promise<void> {
    const w = this.cloudWatchers.get(name);
    if (!w) return;
    this.cloudWatchers.delete(name);
    await w.stop();
    this.log.info({ edgeNode: name }, "Stopped cloud pod watcher");
  }

  private ensureWatcher(en: EdgeNode, node: string): PodWatcher {
    const name = en.metadata.name ?? "";
    const key = `${name}/${node}`;
    const existing = this.watchers.get(key);
    if (existing) return existing;
    const w = this.newWatcher(name, { node });
    this.watchers.set(key, w);
    this.watcherGauge.set(this.watchers.size);
    w.start()
      .then(() => this.queue.add(name))
      .catch((err) => this.log.error({ err, node }, "Pod watcher failed to start"));
    this.log.info({ edgeNode: name, node }, "Started pod watcher");
    return w;
  }

  /** returnToEdge: monitors for the pods this EdgeNode moved to the cloud (they carry its label). */
  private ensureCloudWatcher(name: string): PodWatcher {
    const existing = this.cloudWatchers.get(name);
    if (existing) return existing;
    const w = this.newWatcher(name, {
      node: "",
      labelSelector: `${EDGENODE_LABEL}=${toLabelValue(name)}`,
      admit: (pod) => this.mayReturn(name, pod),
    });
    this.cloudWatchers.set(name, w);
    w.start()
      .then(() => this.queue.add(name))
      .catch((err) => this.log.error({ err, edgeNode: name }, "Cloud pod watcher failed to start"));
    this.log.info({ edgeNode: name }, "Started cloud pod watcher");
    return w;
  }

  private newWatcher(
    name: string,
    scope: { node: string; labelSelector?: string; admit?: (pod: V1Pod) => boolean },
  ): PodWatcher {
    return new PodWatcher(
      {
        kubeConfig: this.deps.kubeConfig,
        core: this.deps.core,
        recorder: this.deps.recorder,
        log: this.deps.log.child({ controller: "podwatcher" }),
        signingKey: this.deps.signingKey,
        operatorNamespace: this.deps.operatorNamespace,
        informerMetrics: this.deps.informerMetrics,
        queueMetrics: this.deps.queueMetrics,
        injectionMetrics: this.deps.injectionMetrics,
      },
      {
        edgeNode: name,
        ...scope,
        selection: () => this.edgeNodes.get(name)?.spec.pods,
        onPod: (pod) => {
          for (const fn of this.podListeners) fn(pod);
        },
        monitor: () => ({
          image: this.deps.monitorImage,
          natsUrl: this.deps.monitorNatsUrl,
          intervalSeconds:
            this.edgeNodes.get(name)?.spec.samplingIntervalSeconds ??
            EDGENODE_SPEC_DEFAULTS.samplingIntervalSeconds,
          application: this.edgeNodes.get(name)?.spec.thresholds.application,
        }),
        nodeObject: (pod) => this.nodes.get(pod.spec?.nodeName ?? ""),
        onChange: () => this.queue.add(name),
      },
    );
  }

  /** Checkpoints need the node-local agent; EdgeNodes without a registry cannot push one, so get none. */
  private async ensureAgent(en: EdgeNode): Promise<void> {
    const name = en.metadata.name ?? "";
    if (!en.spec.registry) return;
    const ds = agentDaemonSet(en, {
      namespace: this.deps.operatorNamespace,
      image: this.deps.agentImage,
    });
    const settings = { namespace: this.deps.operatorNamespace };
    const sa = agentServiceAccount(en, settings);
    const crb = agentClusterRoleBinding(en, settings);
    // returnToEdge: the same agent on the cloud nodes, where returning pods are checkpointed.
    const cloud = en.spec.returnToEdge
      ? agentDaemonSet(
          en,
          { namespace: this.deps.operatorNamespace, image: this.deps.agentImage },
          "cloud",
        )
      : undefined;
    const hash = createHash("sha256")
      .update(JSON.stringify([sa, crb, ds, cloud ?? null]))
      .digest("hex");
    if (this.appliedAgents.get(name) === hash) return;
    // Its own identity first, so its pods never start as another EdgeNode's agent.
    await this.deps.core.patchNamespacedServiceAccount(
      {
        name: sa.metadata?.name ?? "",
        namespace: this.deps.operatorNamespace,
        body: sa,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      serverSideApply,
    );
    await this.deps.rbac.patchClusterRoleBinding(
      { name: crb.metadata?.name ?? "", body: crb, fieldManager: FIELD_MANAGER, force: true },
      serverSideApply,
    );
    for (const d of cloud ? [ds, cloud] : [ds]) {
      await this.deps.apps.patchNamespacedDaemonSet(
        {
          name: d.metadata?.name ?? "",
          namespace: this.deps.operatorNamespace,
          body: d,
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        serverSideApply,
      );
    }
    if (!cloud) {
      // returnToEdge off (or never on): no agent on the cloud nodes.
      await this.deps.apps
        .deleteNamespacedDaemonSet({
          name: cloudAgentName(name),
          namespace: this.deps.operatorNamespace,
        })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
    this.appliedAgents.set(name, hash);
    this.log.info({ edgeNode: name, daemonSet: ds.metadata?.name }, "Applied agent DaemonSet");
  }

  private async reconcile(name: string): Promise<undefined | { requeueAfterMs: number }> {
    if (!this.running) return undefined;
    const log = this.log.child({ key: name });
    const en = this.edgeNodes.get(name);
    if (!en || en.metadata.deletionTimestamp) {
      for (const w of this.watchersFor(name)) await this.stopWatcher(`${name}/${w.node}`);
      await this.stopCloudWatcher(name);
      this.hooks.onEdgeNodeGone?.(name);
      // The agent DaemonSet, ServiceAccount and ClusterRoleBinding are owned by
      // the EdgeNode: the garbage collector removes them.
      this.appliedAgents.delete(name);
      return undefined;
    }

    // Nodes claimed by an older EdgeNode are not ours.
    const older = this.edgeNodes
      .list()
      .filter((o) => o.metadata.name !== name && byAge(o, en) < 0 && !o.metadata.deletionTimestamp);
    const claimedByOther = new Map<string, string>();
    const matched: V1Node[] = [];
    for (const node of this.nodes.list()) {
      const labels = node.metadata?.labels ?? {};
      if (!matchesLabelSelector(en.spec.nodeSelector, labels)) continue;
      const owner = older.find((o) => matchesLabelSelector(o.spec.nodeSelector, labels));
      if (owner) claimedByOther.set(node.metadata?.name ?? "", owner.metadata.name ?? "");
      else matched.push(node);
    }
    matched.sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
    const desired = new Set(matched.map((n) => n.metadata?.name ?? ""));
    for (const w of this.watchersFor(name))
      if (!desired.has(w.node)) await this.stopWatcher(`${name}/${w.node}`);
    const watchers = matched.map((n) => this.ensureWatcher(en, n.metadata?.name ?? ""));
    const cloudWatcher = en.spec.returnToEdge ? this.ensureCloudWatcher(name) : undefined;
    if (!cloudWatcher) await this.stopCloudWatcher(name);

    const support: NodeSupport[] = matched.map((n) => ({
      name: n.metadata?.name ?? "",
      ...nodeRuntimeSupport(n),
    }));
    // The cloud nodes a migration may restore on, as target choice sees them.
    const cloud: NodeSupport[] = this.nodes
      .list()
      .filter(
        (n) =>
          !desired.has(n.metadata?.name ?? "") &&
          !n.metadata?.deletionTimestamp &&
          matchesLabelSelector(en.spec.cloud.nodeSelector, n.metadata?.labels ?? {}),
      )
      .map((n) => ({ name: n.metadata?.name ?? "", ...nodeRuntimeSupport(n) }))
      .sort((a, b) => a.name.localeCompare(b.name));
    const allSynced = watchers.every((w) => w.hasSynced);
    const now = new Date();
    const gen = en.metadata.generation;
    const capable = support.filter((s) => s.checkpoint).length;

    let conditions = en.status?.conditions ?? [];
    const ready =
      matched.length === 0
        ? {
            status: "False" as const,
            reason: "NoMatchingNodes",
            message: claimedByOther.size
              ? `every matching node belongs to an older EdgeNode: ${[...claimedByOther].map(([n, o]) => `${n} (${o})`).join(", ")}`
              : "spec.nodeSelector matches no node",
          }
        : allSynced
          ? {
              status: "True" as const,
              reason: "Reconciled",
              message: `watching pods on ${matched.length} node(s)${claimedByOther.size ? `; ${claimedByOther.size} matching node(s) belong to an older EdgeNode` : ""}`,
            }
          : {
              status: "False" as const,
              reason: "WatchersStarting",
              message: "pod watchers are starting",
            };
    conditions = setCondition(
      conditions,
      { type: "Ready", observedGeneration: gen, ...ready },
      now,
    );
    const cp = checkpointCondition(support, cloud);
    const restartOnly = (en.spec.restorePolicy ?? "checkpoint") === "restart";
    const cpCond =
      restartOnly && cp.status !== "Unknown"
        ? {
            status: "True" as const,
            reason: "NotRequired",
            message: `restorePolicy is restart; ${cp.message}`,
          }
        : cp;
    const prevCp = getCondition(conditions, "CheckpointSupported");
    conditions = setCondition(
      conditions,
      { type: "CheckpointSupported", observedGeneration: gen, ...cpCond },
      now,
    );

    this.hooks.onEdgeNode?.(en, matched);
    await this.ensureAgent(en);
    const extra = this.hooks.extraStatus?.(name) ?? {};
    const status: EdgeNodeStatus = {
      ...en.status,
      ...extra,
      observedGeneration: gen,
      conditions,
      matchedNodes: matched.length,
      monitoredPods: watchers.reduce((sum, w) => sum + (w.hasSynced ? w.monitoredPods() : 0), 0),
      cloudMonitoredPods: cloudWatcher
        ? cloudWatcher.hasSynced
          ? cloudWatcher.monitoredPods()
          : en.status?.cloudMonitoredPods
        : undefined,
      checkpointCapableNodes: capable,
      runtimeSupport: `${capable}/${matched.length} nodes`,
      nodes: support.map((s) => ({
        name: s.name,
        containerRuntime: s.containerRuntime,
        checkpoint: s.checkpoint,
        restore: s.restore,
        restoreTargets: s.checkpoint ? restoreTargets(s, cloud).length : 0,
        message: s.message,
      })),
      cloudNodes: cloud.slice(0, MAX_CLOUD_NODES).map((s) => ({
        name: s.name,
        containerRuntime: s.containerRuntime,
        checkpoint: s.checkpoint,
        restore: s.restore,
        message: s.message,
      })),
    };
    if (statusChanged(status, en.status ?? {})) {
      // A merge patch removes a field only by null: the figures of a threshold or
      // a returnToEdge that went away.
      const body = {
        status: {
          ...status,
          ...Object.fromEntries(
            CLEARABLE.filter((k) => status[k] === undefined && en.status?.[k] !== undefined).map(
              (k) => [k, null],
            ),
          ),
        },
      };
      try {
        await this.deps.custom.patchClusterCustomObjectStatus(
          { group: GROUP, version: VERSION, plural: EDGENODE_PLURAL, name, body },
          mergePatch,
        );
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (isConflict(err)) throw new RequeueError("conflict");
        throw err;
      }
      log.debug(
        { matched: status.matchedNodes, monitored: status.monitoredPods },
        "Updated EdgeNode status",
      );
      if (prevCp?.status !== cpCond.status && cpCond.status === "False") {
        await this.deps.recorder.record(
          { apiVersion: API_VERSION, kind: EDGENODE_KIND, metadata: en.metadata },
          "Warning",
          cpCond.reason,
          "Preflight",
          cpCond.message,
        );
      }
    }
    return allSynced ? undefined : { requeueAfterMs: 500 };
  }
}
