import type { CoreV1Api, KubeConfig, V1Node, V1Pod } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { PodSelection } from "../api/v1alpha1.ts";
import type { EventRecorder } from "../kube/events.ts";
import { type InformerMetrics, SupervisedInformer } from "../kube/informer.ts";
import { isConflict, isNotFound, isStatus, strategicMergePatch } from "../kube/patch.ts";
import { type QueueMetrics, RequeueError, WorkQueue } from "../kube/workqueue.ts";
import {
  eligibility,
  type MonitorSettings,
  missingMonitors,
  monitoredContainers,
} from "../monitor/inject.ts";
import { monitorKey, monitorSecretName } from "../monitor/keys.ts";

export interface InjectionMetrics {
  injected: Counter<"result">;
  latency: Histogram;
}

/** Both results exported at 0 from the start, so rate() has a series before the first error. */
export function injectionMetrics(registry: Registry): InjectionMetrics {
  const injected = new Counter({
    name: "edgeshift_monitor_injections_total",
    help: "Monitor ephemeral containers added to pods, by result",
    labelNames: ["result"],
    registers: [registry],
  });
  for (const result of ["success", "error"]) injected.inc({ result }, 0);
  return {
    injected,
    latency: new Histogram({
      name: "edgeshift_monitor_injection_seconds",
      help: "Time from a pod's start to its monitors being added",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}

export interface PodWatcherDeps {
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  recorder: EventRecorder;
  log: Logger;
  signingKey: Buffer;
  operatorNamespace: string;
  informerMetrics?: InformerMetrics;
  queueMetrics?: QueueMetrics;
  injectionMetrics?: InjectionMetrics;
}

export interface PodWatcherSpec {
  edgeNode: string;
  /** The edge node whose pods it watches; "" for a cloud watcher (labelSelector). */
  node: string;
  /**
   * A cloud watcher (returnToEdge): the pods this label selector matches, on
   * whichever node, of which `admit` keeps those that may return.
   */
  labelSelector?: string;
  admit?: (pod: V1Pod) => boolean;
  /** Read on every reconcile so EdgeNode spec changes apply to new injections. */
  selection: () => PodSelection | undefined;
  monitor: () => MonitorSettings;
  /** The node the pod runs on (its allocatable stands in for a missing limit). */
  nodeObject: (pod: V1Pod) => V1Node | undefined;
  /** Called when the number of monitored pods on this node changes. */
  onChange: () => void;
  /** Called with every pod of the node that is added, changed or deleted; it must only enqueue. */
  onPod?: (pod: V1Pod) => void;
}

/**
 * Watches the pods of one edge node (or, a cloud watcher, the pods in the cloud
 * that may return to the edge) and gives every eligible workload container a
 * monitor as an ephemeral container: no restart, the pod keeps its UID.
 */
export class PodWatcher {
  readonly edgeNode: string;
  readonly node: string;
  private readonly informer: SupervisedInformer<V1Pod>;
  private readonly queue: WorkQueue;
  private readonly deps: PodWatcherDeps;
  private readonly spec: PodWatcherSpec;
  private readonly log: Logger;
  private lastCount = -1;

  constructor(deps: PodWatcherDeps, spec: PodWatcherSpec) {
    this.deps = deps;
    this.spec = spec;
    this.edgeNode = spec.edgeNode;
    this.node = spec.node;
    this.log = deps.log.child({ watcher: `${spec.edgeNode}/${spec.node || "cloud"}` });
    const labelSelector = spec.labelSelector;
    const fieldSelector = labelSelector === undefined ? `spec.nodeName=${spec.node}` : undefined;
    this.queue = new WorkQueue({ name: "pods", metrics: deps.queueMetrics, log: this.log });
    this.informer = new SupervisedInformer<V1Pod>({
      kubeConfig: deps.kubeConfig,
      resource: "pods",
      path: "/api/v1/pods",
      ...(fieldSelector ? { fieldSelector } : { labelSelector }),
      list: () => deps.core.listPodForAllNamespaces({ fieldSelector, labelSelector }),
      onChange: (pod) => {
        this.queue.add(`${pod.metadata?.namespace}/${pod.metadata?.name}`);
        this.countChanged();
        spec.onPod?.(pod);
      },
      log: this.log,
      metrics: deps.informerMetrics,
    });
  }

  get hasSynced(): boolean {
    return this.informer.hasSynced;
  }

  get healthy(): boolean {
    return this.informer.healthy;
  }

  async start(): Promise<void> {
    this.queue.start((key) => this.reconcile(key), 2);
    await this.informer.start();
    this.countChanged();
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    await this.queue.shutdown();
  }

  /** Eligible pods on this node whose every app container has its monitor. */
  monitoredPods(): number {
    let n = 0;
    for (const pod of this.informer.list()) {
      if (!this.isEligible(pod)) continue;
      const total = pod.spec?.containers?.length ?? 0;
      if (total > 0 && monitoredContainers(pod) === total) n++;
    }
    return n;
  }

  /** The monitored pods themselves, for the metrics path. */
  pods(): V1Pod[] {
    return this.informer.list().filter((p) => this.isEligible(p) && monitoredContainers(p) > 0);
  }

  /** Every pod the informer holds (for an edge watcher, every pod bound to its node). */
  allPods(): readonly V1Pod[] {
    return this.informer.list();
  }

  /** The pod if it is eligible and has at least one monitor. */
  pod(namespace: string, name: string): V1Pod | undefined {
    const p = this.informer.get(name, namespace);
    return p && this.isEligible(p) && monitoredContainers(p) > 0 ? p : undefined;
  }

  private isEligible(pod: V1Pod): boolean {
    if (this.spec.admit && !this.spec.admit(pod)) return false;
    return eligibility(pod, this.spec.selection(), this.deps.operatorNamespace).eligible;
  }

  private countChanged(): void {
    const n = this.monitoredPods();
    if (n !== this.lastCount) {
      this.lastCount = n;
      this.spec.onChange();
    }
  }

  private async reconcile(key: string): Promise<undefined> {
    const [namespace = "", name = ""] = key.split("/");
    const pod = this.informer.get(name, namespace);
    if (!pod || !this.isEligible(pod)) return undefined;
    const missing = missingMonitors(pod, this.spec.nodeObject(pod), this.spec.monitor());
    if (missing.length === 0) return undefined;
    const uid = pod.metadata?.uid ?? "";
    const log = this.log.child({ pod: key });
    await this.ensureKeySecret(pod, uid);
    try {
      await this.deps.core.patchNamespacedPodEphemeralcontainers(
        { name, namespace, body: { spec: { ephemeralContainers: missing } } },
        strategicMergePatch,
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (isConflict(err)) throw new RequeueError("conflict");
      // 422: the pod changed under us (e.g. it was replaced); the next event retries.
      this.deps.injectionMetrics?.injected.inc({ result: "error" }, missing.length);
      throw err;
    }
    this.deps.injectionMetrics?.injected.inc({ result: "success" }, missing.length);
    const started = pod.status?.startTime ? new Date(pod.status.startTime).getTime() : undefined;
    if (started)
      this.deps.injectionMetrics?.latency.observe(Math.max(0, (Date.now() - started) / 1000));
    log.info({ monitors: missing.map((m) => m.name) }, "Injected monitors");
    await this.deps.recorder.record(
      { apiVersion: "v1", kind: "Pod", metadata: pod.metadata },
      "Normal",
      "MonitorInjected",
      "InjectMonitor",
      `Added monitor for ${missing.map((m) => m.targetContainerName).join(", ")} (EdgeNode ${this.edgeNode})`,
    );
    return undefined;
  }

  /** The per-pod Secret the monitors read their signing keys from; owned by the pod. */
  private async ensureKeySecret(pod: V1Pod, uid: string): Promise<void> {
    const namespace = pod.metadata?.namespace ?? "";
    const data: Record<string, string> = {};
    for (const c of pod.spec?.containers ?? []) {
      data[c.name] = monitorKey(this.deps.signingKey, uid, c.name).toString("hex");
    }
    try {
      await this.deps.core.createNamespacedSecret({
        namespace,
        body: {
          metadata: {
            name: monitorSecretName(uid),
            namespace,
            labels: {
              "app.kubernetes.io/part-of": "edgeshift",
              "app.kubernetes.io/component": "monitor-key",
            },
            ownerReferences: [
              {
                apiVersion: "v1",
                kind: "Pod",
                name: pod.metadata?.name ?? "",
                uid,
                blockOwnerDeletion: false,
              },
            ],
          },
          type: "Opaque",
          // Keys are derived deterministically, so an existing Secret already holds the same values.
          stringData: data,
        },
      });
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
    }
  }
}
