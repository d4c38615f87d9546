import type { KeyObject } from "node:crypto";
import type { CustomObjectsApi, KubeConfig, V1Node } from "@kubernetes/client-node";
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { MIGRATION_POD_LABEL, ownerKind } from "../../migration/restore/pod.ts";
import { chooseTarget } from "../../migration/target/choose.ts";
import {
  APP_STATUSES,
  type AppStatus,
  type MonitorIdentity,
  monitorId,
  type SignedSample,
} from "../../sidecar/protocol.ts";
import { migrationFinished } from "../api/status.ts";
import {
  API_VERSION,
  type ApplicationMetricStatus,
  EDGENODE_LABEL,
  EDGENODE_SPEC_DEFAULTS,
  type EdgeNode,
  GROUP,
  Metric,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationList,
  RETURN_DEFAULTS,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../api/v1alpha1.ts";
import type { EdgeNodeController } from "../edgenode/controller.ts";
import type { EventRecorder } from "../kube/events.ts";
import { type InformerMetrics, SupervisedInformer } from "../kube/informer.ts";
import { isConflict, isNotFound } from "../kube/patch.ts";
import { parseQuantity } from "../kube/quantity.ts";
import { MetricsSubscriber } from "../metrics/subscriber.ts";
import { expiredMigrations, type HistoryPolicy } from "../migration/history.ts";
import { MonitorKeys } from "../monitor/keys.ts";
import { type Decision, DecisionEngine, nextMigrationName } from "./engine.ts";

/** How long a fresh decision may take to show up as a Migration in the informer. */
const DECISION_GRACE_MS = 30_000;
/** How often pods that are gone are forgotten. */
const PRUNE_EVERY_MS = 10_000;
/** How often finished Migrations past their retention are collected. */
const COLLECT_EVERY_MS = 60_000;

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
  /** Finished Migrations kept and for how long (default: 10 per namespace, 24 h beyond them). */
  history?: HistoryPolicy;
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
  private readonly engine = new DecisionEngine({
    // StatefulSet and DaemonSet pods (refused by the Migration controller) are never chosen.
    movable: (namespace, pod, node) => {
      const found = this.deps.edgeNodes.monitoredPod(node, namespace, pod);
      if (found === undefined || ownerKind(found.pod).kind === "Unsupported") return false;
      // A restored pod whose own migration is still cutting over is not where it will stay yet.
      return !(
        found.returning &&
        this.migrations
          .list(namespace)
          .some((m) => m.status?.restoredPod === pod && !migrationFinished(m))
      );
    },
    // A pod a migration made (its restored pod) arrived when it was created.
    arrivedAt: (namespace, pod, node) => {
      const p = this.deps.edgeNodes.monitoredPod(node, namespace, pod)?.pod;
      if (!p?.metadata?.labels?.[MIGRATION_POD_LABEL] || !p.metadata.creationTimestamp)
        return undefined;
      return new Date(p.metadata.creationTimestamp).getTime();
    },
  });
  /** Per pod uid: why it could not return, last said (an Event only when it changes). */
  private readonly deferred = new Map<string, string>();
  private readonly subscriber: MetricsSubscriber;
  /** Verification keys, derived once per monitor; pruned with the pods that went. */
  private readonly keys: MonitorKeys;
  readonly migrations: SupervisedInformer<Migration>;
  private readonly finished = new Set<string>();
  private readonly decisions: Counter<"metric" | "result">;
  private readonly decisionLatency: Histogram;
  private staleTimer: NodeJS.Timeout | undefined;
  private lastStale = new Map<string, number>();
  /** Each monitor's latest reading of its EdgeNode's application metric. */
  private readonly appReadings = new Map<
    string,
    { edgeNode: string; status: AppStatus; at: number; intervalMs: number }
  >();
  private lastApp = new Map<string, string>();
  private readonly appSamples: Counter<"edgenode" | "status">;
  private lastPrune = 0;
  private lastCollect = 0;
  private collecting = false;
  private readonly collected: Counter;
  private readonly now: () => number;
  private readonly listeners: ((m: Migration) => void)[] = [];

  constructor(deps: DecisionControllerDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
    this.log = deps.log.child({ controller: "decision" });
    this.keys = new MonitorKeys(deps.signingKey);
    this.decisions = new Counter({
      name: "edgeshift_decisions_total",
      help: "Migrations the decision engine asked for, by metric and result of creating them",
      labelNames: ["metric", "result"],
      registers: [deps.registry],
    });
    // Every metric and result at 0 from the start ("avoid missing metrics"): the
    // dashboard's decisions panel has series before the first decision.
    for (const metric of Object.values(Metric)) {
      for (const result of ["created", "exists", "deferred", "error"]) {
        this.decisions.inc({ metric, result }, 0);
      }
    }
    this.collected = new Counter({
      name: "edgeshift_migrations_collected_total",
      help: "Finished Migrations deleted once past their retention",
      registers: [deps.registry],
    });
    this.appSamples = new Counter({
      name: "edgeshift_application_metric_samples_total",
      help: "Samples carrying the application's own metric (thresholds.application), by EdgeNode and what the monitor's scrape found",
      labelNames: ["edgenode", "status"],
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
      onEdgeNodeGone: (name) => {
        this.engine.removeEdgeNode(name);
        for (const status of APP_STATUSES) this.appSamples.remove({ edgenode: name, status });
      },
      extraStatus: (name) => ({
        staleMonitors: this.lastStale.get(name) ?? 0,
        activeMigrations: this.activeMigrations(name),
        applicationMetric: this.deps.edgeNodes.edgeNodes.get(name)?.spec.thresholds.application
          ? this.appCounts(name)
          : undefined,
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
    // Every status at 0 from the start, as for decisions: the dashboard's
    // panel has series before the first sample (and for an EdgeNode without
    // an application threshold, zeros).
    for (const status of APP_STATUSES)
      this.appSamples.inc({ edgenode: en.metadata.name ?? "", status }, 0);
    const d = EDGENODE_SPEC_DEFAULTS;
    this.engine.configure(en.metadata.name ?? "", {
      samplingIntervalSeconds: s.samplingIntervalSeconds ?? d.samplingIntervalSeconds,
      sustainedWindowSeconds: s.sustainedWindowSeconds ?? d.sustainedWindowSeconds,
      breachPercent: s.breachPercent ?? d.breachPercent,
      cooldownSeconds: s.cooldownSeconds ?? d.cooldownSeconds,
      maxConcurrentMigrations: s.maxConcurrentMigrations ?? d.maxConcurrentMigrations,
      thresholds: s.thresholds,
      ...(s.returnToEdge
        ? {
            returnToEdge: {
              cpuPercent: s.returnToEdge.cpuPercent,
              memoryPercent: s.returnToEdge.memoryPercent,
              applicationValue: s.returnToEdge.applicationValue,
              windowSeconds: s.returnToEdge.windowSeconds ?? RETURN_DEFAULTS.windowSeconds,
              cooldownSeconds: s.returnToEdge.cooldownSeconds ?? RETURN_DEFAULTS.cooldownSeconds,
            },
          }
        : {}),
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
  private keyFor(id: MonitorIdentity): KeyObject | undefined {
    if (!this.monitors(id)) return undefined;
    return this.keys.get(id);
  }

  /** Whether `id` is a monitor of a pod the EdgeNodes watch now, container and all. */
  private monitors(id: MonitorIdentity): boolean {
    const found = this.deps.edgeNodes.monitoredPod(id.node, id.namespace, id.pod);
    if (!found || found.pod.metadata?.uid !== id.podUid) return false;
    return found.pod.spec?.containers?.some((c) => c.name === id.container) ?? false;
  }

  private onSample(s: SignedSample, at: number): void {
    const found = this.deps.edgeNodes.monitoredPod(s.node, s.namespace, s.pod);
    if (s.appStatus !== undefined) {
      const edgeNode = found?.edgeNode;
      if (edgeNode) {
        this.appSamples.inc({ edgenode: edgeNode, status: s.appStatus });
        // Counted into the EdgeNode's status by the once-a-second refresh, off the sample path.
        this.appReadings.set(monitorId(s), {
          edgeNode,
          status: s.appStatus,
          at,
          intervalMs: s.intervalMs,
        });
      }
    }
    const decisions = this.engine.observe(s, at, found?.returning ? found.edgeNode : undefined);
    for (const d of decisions) void this.createMigration(d, at);
  }

  /**
   * Whether an edge node of the pod's EdgeNode can take it back, by the same
   * rules the Migration controller applies (checked again there); if not, the
   * pod stays in the cloud, judged again after a window, and an Event says why.
   */
  private async returnTarget(d: Decision): Promise<boolean> {
    const found = this.deps.edgeNodes.monitoredPod(d.node, d.namespace, d.pod);
    const en = this.deps.edgeNodes.edgeNodes.get(d.edgeNode);
    if (!found || !en) return false;
    const { nodes, podsByNode } = this.deps.edgeNodes.edgeNodesOf(d.edgeNode);
    const checkpoint = (en.spec.restorePolicy ?? "checkpoint") === "checkpoint";
    const choice = chooseTarget({
      pod: found.pod,
      sourceNode: this.deps.edgeNodes.nodes.get(d.node) ?? { metadata: { name: d.node } },
      candidates: nodes,
      podsByNode,
      cloudSelector: en.spec.nodeSelector,
      side: "edge",
      targetMustCheckpoint: checkpoint,
      checkpoint,
    });
    const uid = found.pod.metadata?.uid ?? "";
    if (choice.ok) {
      this.deferred.delete(uid);
      return true;
    }
    const windowMs = (d.windowSeconds || 1) * 1000;
    this.engine.deferReturn(d.namespace, d.pod, this.now(), windowMs);
    this.decisions.inc({ metric: d.metric, result: "deferred" });
    if (this.deferred.size > 10_000) this.deferred.clear();
    if (this.deferred.get(uid) !== choice.message) {
      this.deferred.set(uid, choice.message);
      this.log.info(
        { key: `${d.namespace}/${d.pod}`, why: choice.message },
        "Pod stays in the cloud: no edge node can take it back",
      );
      await this.deps.recorder.record(
        { apiVersion: "v1", kind: "Pod", metadata: found.pod.metadata },
        "Normal",
        "ReturnDeferred",
        "Decide",
        `Below its return level, but stays on ${d.node}: ${choice.message}`.slice(0, 1024),
      );
    }
    return false;
  }

  private async createMigration(d: Decision, decidedAt: number): Promise<void> {
    if (d.direction === "ToEdge" && !(await this.returnTarget(d))) return;
    // Each attempt its own name: a pod whose earlier Migration ended can move again.
    const existing = this.migrations
      .list()
      .filter((m) => m.metadata.namespace === d.namespace)
      .map((m) => m.metadata.name ?? "");
    const name = nextMigrationName(d.pod, d.podUid, existing);
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
        ...(d.direction === "ToEdge" ? { direction: "ToEdge" } : { containers: [d.container] }),
        reason: {
          type: d.direction === "ToEdge" ? "BelowReturnLevel" : "ThresholdExceeded",
          metric: d.metric,
          value: Math.round(d.value * 100) / 100,
          threshold: d.threshold,
          ...(d.series ? { series: d.series } : {}),
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
        // This attempt exists already (the informer had not shown it yet). If it has
        // ended, the decision came to nothing; if not, it stands, and the informer's
        // event (or reconcileInFlight) keeps the in-flight set true.
        this.decisions.inc({ metric: d.metric, result: "exists" });
        const found = this.migrations.get(name, d.namespace);
        if (found && migrationFinished(found)) {
          this.engine.release(d.namespace, d.pod);
          this.engine.forget(d.namespace, d.pod);
        }
        return;
      }
      // Nothing was created: the pod is not in flight (the EdgeNode's cap is free
      // again) and the engine decides again on a new window of samples.
      this.engine.release(d.namespace, d.pod);
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
        d.direction === "ToEdge"
          ? `${d.metric === "application" ? d.series : d.metric} at ${d.value.toFixed(1)}${d.metric === "application" ? "" : "%"} stayed below its return level ${d.threshold}${d.metric === "application" ? "" : "%"} for ${d.windowSeconds}s; created Migration ${name} back to the edge`
          : d.metric === "application"
            ? `${d.series} at ${d.value.toFixed(1)} stayed above ${d.threshold} for ${d.windowSeconds}s; created Migration ${name}`
            : `${d.metric} at ${d.value.toFixed(1)}% stayed above ${d.threshold}% for ${d.windowSeconds}s; created Migration ${name}`,
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
        this.engine.migrationFinished(ns, m.spec.podName, this.now());
        this.subscriber.forgetPod(ns, m.spec.podName);
      }
      // Remembered while the Migration exists, so its later updates start no new cooldown.
      if (gone) this.finished.delete(uid);
      else this.finished.add(uid);
    } else if (node) {
      this.engine.migrationStarted(
        ns,
        m.spec.podName,
        node,
        m.metadata.labels?.[EDGENODE_LABEL] ?? m.status?.edgeNode,
      );
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

  /** The in-flight set agrees with the Migration informer; pods that are gone are forgotten. */
  private reconcile(): void {
    if (!this.migrations.hasSynced) return;
    const now = this.now();
    const open = new Set(
      this.migrations
        .list()
        .filter((m) => !migrationFinished(m))
        .map((m) => `${m.metadata.namespace ?? ""}/${m.spec.podName}`),
    );
    for (const key of this.engine.reconcileInFlight(open, now, DECISION_GRACE_MS)) {
      this.log.warn({ pod: key }, "Released a pod in flight without a Migration");
    }
    const ttl = this.deps.history?.ttlMs ?? COLLECT_EVERY_MS;
    const collectEvery = Math.min(COLLECT_EVERY_MS, Math.max(1000, ttl / 2));
    if (now - this.lastCollect >= collectEvery && !this.collecting) {
      this.lastCollect = now;
      this.collecting = true;
      void this.collect(now).finally(() => {
        this.collecting = false;
      });
    }
    if (now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    const gone = this.engine.prune((namespace, pod, podUid, node) => {
      const found = this.deps.edgeNodes.monitoredPod(node, namespace, pod);
      return found?.pod.metadata?.uid === podUid;
    }, now);
    for (const key of gone) {
      const [namespace = "", pod = ""] = key.split("/");
      this.subscriber.forgetPod(namespace, pod);
    }
    this.keys.prune((id) => this.monitors(id));
  }

  /** Deletes finished Migrations past their retention (see operator/migration/history.ts). */
  private async collect(now: number): Promise<void> {
    const policy = this.deps.history ?? { keep: 10, ttlMs: 24 * 3_600_000 };
    for (const m of expiredMigrations(this.migrations.list(), policy, now)) {
      const namespace = m.metadata.namespace ?? "";
      const name = m.metadata.name ?? "";
      try {
        await this.deps.custom.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace,
          name,
          // This Migration, not a new one created under its name since.
          body: { preconditions: { uid: m.metadata.uid } },
        });
        this.collected.inc();
        this.log.info(
          { key: `${namespace}/${name}` },
          "Deleted finished Migration past its retention",
        );
      } catch (err) {
        if (isNotFound(err) || isConflict(err)) continue;
        this.log.warn({ err, key: `${namespace}/${name}` }, "Could not delete finished Migration");
      }
    }
  }

  /** The monitors publishing now, by their latest reading (stale ones are in staleMonitors). */
  private appCounts(edgeNode: string): ApplicationMetricStatus {
    const counts: ApplicationMetricStatus = { reading: 0, scrapeFailed: 0, absent: 0, pending: 0 };
    const now = this.now();
    for (const r of this.appReadings.values()) {
      if (r.edgeNode !== edgeNode || now - r.at > 3 * r.intervalMs) continue;
      if (r.status === "ok") counts.reading++;
      else if (r.status === "scrape_failed") counts.scrapeFailed++;
      else if (r.status === "absent") counts.absent++;
      else counts.pending++;
    }
    return counts;
  }

  /** Requeues the EdgeNodes whose counts changed; forgets monitors long silent. */
  private refreshApp(): void {
    const now = this.now();
    const names = new Set<string>();
    for (const [id, r] of this.appReadings) {
      if (now - r.at > 60 * r.intervalMs) this.appReadings.delete(id);
      names.add(r.edgeNode);
    }
    for (const name of new Set([...names, ...this.lastApp.keys()])) {
      const c = JSON.stringify(this.appCounts(name));
      if (this.lastApp.get(name) !== c) {
        this.lastApp.set(name, c);
        this.deps.edgeNodes.requeue(name);
      }
    }
  }

  private refreshStale(): void {
    this.refreshApp();
    this.reconcile();
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
