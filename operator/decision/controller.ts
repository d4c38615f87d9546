import type { CustomObjectsApi, KubeConfig, V1Node } from "@kubernetes/client-node";
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { MonitorIdentity, SignedSample } from "../../sidecar/protocol.ts";
import { migrationFinished } from "../api/status.ts";
import {
  API_VERSION,
  EDGENODE_LABEL,
  EDGENODE_SPEC_DEFAULTS,
  type EdgeNode,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationList,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../api/v1alpha1.ts";
import type { EdgeNodeController } from "../edgenode/controller.ts";
import type { EventRecorder } from "../kube/events.ts";
import { type InformerMetrics, SupervisedInformer } from "../kube/informer.ts";
import { isConflict } from "../kube/patch.ts";
import { parseQuantity } from "../kube/quantity.ts";
import { MetricsSubscriber } from "../metrics/subscriber.ts";
import { monitorKey } from "../monitor/keys.ts";
import { type Decision, DecisionEngine, migrationName } from "./engine.ts";

export interface DecisionControllerDeps {
  kubeConfig: KubeConfig;
  custom: CustomObjectsApi;
  nc: NatsConnection;
  edgeNodes: EdgeNodeController;
  recorder: EventRecorder;
  registry: Registry;
  signingKey: Buffer;
  log: Logger;
  informerMetrics?: InformerMetrics;
  now?: () => number;
}

/**
 * The metrics path: verified monitor samples from NATS feed the decision engine,
 * whose decisions become Migrations (deterministic name, so never two for one
 * pod). Migrations that end start the pod's and node's cooldown. Runs on the
 * leader only.
 */
export class DecisionController {
  private readonly deps: DecisionControllerDeps;
  private readonly log: Logger;
  private readonly engine = new DecisionEngine();
  private readonly subscriber: MetricsSubscriber;
  readonly migrations: SupervisedInformer<Migration>;
  private readonly finished = new Set<string>();
  private readonly decisions: Counter<"metric" | "result">;
  private readonly decisionLatency: Histogram;
  private staleTimer: NodeJS.Timeout | undefined;
  private lastStale = new Map<string, number>();
  private readonly now: () => number;
  private readonly listeners: ((m: Migration) => void)[] = [];

  constructor(deps: DecisionControllerDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.log = deps.log.child({ controller: "decision" });
    this.decisions = new Counter({
      name: "edgeshift_decisions_total",
      help: "Migrations the decision engine asked for, by metric and result of creating them",
      labelNames: ["metric", "result"],
      registers: [deps.registry],
    });
    this.decisionLatency = new Histogram({
      name: "edgeshift_decision_latency_seconds",
      help: "Time from the deciding sample's timestamp to the Migration being created",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [deps.registry],
    });
    this.subscriber = new MetricsSubscriber({
      nc: deps.nc,
      registry: deps.registry,
      keyLookup: (id) => this.keyFor(id),
      onSample: (s, at) => this.onSample(s, at),
      log: this.log,
      now: this.now,
    });
    const path = `/apis/${GROUP}/${VERSION}/${MIGRATION_PLURAL}`;
    this.migrations = new SupervisedInformer<Migration>({
      kubeConfig: deps.kubeConfig,
      resource: "migrations",
      path,
      list: async () =>
        (await deps.custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
        })) as MigrationList,
      onChange: (m) => this.onMigration(m),
      log: this.log.child({ informer: "migrations" }),
      metrics: deps.informerMetrics,
    });
  }

  /** Other controllers hear of every Migration change through the one shared informer. */
  onMigrationChange(fn: (m: Migration) => void): void {
    this.listeners.push(fn);
  }

  async start(): Promise<void> {
    this.deps.edgeNodes.setHooks({
      onEdgeNode: (en, nodes) => this.configure(en, nodes),
      onEdgeNodeGone: (name) => this.engine.removeEdgeNode(name),
      extraStatus: (name) => ({
        staleMonitors: this.lastStale.get(name) ?? 0,
        activeMigrations: this.activeMigrations(name),
      }),
    });
    await this.migrations.start();
    this.subscriber.watchAll();
    // Stale monitors show in EdgeNode status: recount every second, requeue on change.
    this.staleTimer = setInterval(() => this.refreshStale(), 1000);
    this.staleTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.staleTimer) clearInterval(this.staleTimer);
    this.subscriber.close();
    await this.migrations.stop();
  }

  private configure(en: EdgeNode, nodes: V1Node[]): void {
    const s = en.spec;
    const d = EDGENODE_SPEC_DEFAULTS;
    this.engine.configure(en.metadata.name ?? "", {
      samplingIntervalSeconds: s.samplingIntervalSeconds ?? d.samplingIntervalSeconds,
      sustainedWindowSeconds: s.sustainedWindowSeconds ?? d.sustainedWindowSeconds,
      breachPercent: s.breachPercent ?? d.breachPercent,
      cooldownSeconds: s.cooldownSeconds ?? d.cooldownSeconds,
      maxConcurrentMigrations: s.maxConcurrentMigrations ?? d.maxConcurrentMigrations,
      thresholds: s.thresholds,
      nodes: Object.fromEntries(
        nodes.map((n) => [
          n.metadata?.name ?? "",
          {
            cpuCores: parseQuantity(n.status?.allocatable?.cpu) ?? 0,
            memoryBytes: parseQuantity(n.status?.allocatable?.memory) ?? 0,
          },
        ]),
      ),
    });
  }

  /** Only a monitored pod on a watched edge node, with the same UID, has a key. */
  private keyFor(id: MonitorIdentity): Uint8Array | undefined {
    const found = this.deps.edgeNodes.monitoredPod(id.node, id.namespace, id.pod);
    if (!found || found.pod.metadata?.uid !== id.podUid) return undefined;
    if (!found.pod.spec?.containers?.some((c) => c.name === id.container)) return undefined;
    return monitorKey(this.deps.signingKey, id.podUid, id.container);
  }

  private onSample(s: SignedSample, at: number): void {
    const decisions = this.engine.observe(s, at);
    for (const d of decisions) void this.createMigration(d, at);
  }

  private async createMigration(d: Decision, decidedAt: number): Promise<void> {
    const name = migrationName(d.pod, d.podUid);
    const log = this.log.child({ key: `${d.namespace}/${name}` });
    this.engine.migrationStarted(d.namespace, d.pod, d.node);
    const body: Migration = {
      apiVersion: API_VERSION,
      kind: MIGRATION_KIND,
      metadata: {
        name,
        namespace: d.namespace,
        labels: { [SOURCE_NODE_LABEL]: d.node, [EDGENODE_LABEL]: d.edgeNode },
      },
      spec: {
        podName: d.pod,
        containers: [d.container],
        reason: {
          type: "ThresholdExceeded",
          metric: d.metric,
          value: Math.round(d.value * 100) / 100,
          threshold: d.threshold,
          windowSeconds: d.windowSeconds,
          sampledAt: d.sampledAt,
        },
      },
    };
    try {
      await this.deps.custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace: d.namespace,
        body,
      });
    } catch (err) {
      if (isConflict(err)) {
        // One migration at a time per pod: the existing one stands.
        this.decisions.inc({ metric: d.metric, result: "exists" });
        return;
      }
      // Nothing was created: let the engine decide again on later samples.
      this.engine.forget(d.namespace, d.pod);
      this.decisions.inc({ metric: d.metric, result: "error" });
      log.error({ err }, "Failed to create Migration");
      return;
    }
    this.decisions.inc({ metric: d.metric, result: "created" });
    this.decisionLatency.observe(Math.max(0, (this.now() - Date.parse(d.sampledAt)) / 1000));
    log.info(
      {
        pod: d.pod,
        metric: d.metric,
        value: d.value,
        threshold: d.threshold,
        decidedInMs: this.now() - decidedAt,
      },
      "Created Migration",
    );
    const found = this.deps.edgeNodes.monitoredPod(d.node, d.namespace, d.pod);
    if (found) {
      await this.deps.recorder.record(
        { apiVersion: "v1", kind: "Pod", metadata: found.pod.metadata },
        "Normal",
        "MigrationTriggered",
        "Decide",
        `${d.metric} at ${d.value.toFixed(1)}% stayed above ${d.threshold}% for ${d.windowSeconds}s; created Migration ${name}`,
      );
    }
    this.deps.edgeNodes.requeue(d.edgeNode);
  }

  private onMigration(m: Migration): void {
    for (const fn of this.listeners) fn(m);
    const ns = m.metadata.namespace ?? "";
    const uid = m.metadata.uid ?? "";
    const node = m.metadata.labels?.[SOURCE_NODE_LABEL] ?? m.status?.sourceNode ?? "";
    const gone = !this.migrations.get(m.metadata.name ?? "", ns);
    if (gone || migrationFinished(m)) {
      if (!this.finished.has(uid)) {
        this.finished.add(uid);
        this.engine.migrationFinished(ns, m.spec.podName, this.now());
        this.subscriber.forgetPod(ns, m.spec.podName);
      }
    } else if (node) {
      this.engine.migrationStarted(ns, m.spec.podName, node);
    }
    const en = m.metadata.labels?.[EDGENODE_LABEL] ?? m.status?.edgeNode;
    if (en) this.deps.edgeNodes.requeue(en);
  }

  private activeMigrations(edgeNode: string): number {
    return this.migrations
      .list()
      .filter(
        (m) =>
          (m.metadata.labels?.[EDGENODE_LABEL] ?? m.status?.edgeNode) === edgeNode &&
          !migrationFinished(m),
      ).length;
  }

  private refreshStale(): void {
    const counts = new Map<string, number>();
    for (const m of this.subscriber.staleMonitors(this.now())) {
      const owner = this.deps.edgeNodes.monitoredPod(m.node, m.namespace, m.pod)?.edgeNode;
      if (owner) counts.set(owner, (counts.get(owner) ?? 0) + 1);
    }
    for (const name of new Set([...counts.keys(), ...this.lastStale.keys()])) {
      if ((counts.get(name) ?? 0) !== (this.lastStale.get(name) ?? 0))
        this.deps.edgeNodes.requeue(name);
    }
    this.lastStale = counts;
  }
}
