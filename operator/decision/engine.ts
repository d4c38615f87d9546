// When to migrate. Pure and clock-injected: the caller passes `now` (ms since the epoch)
// to every call, so tests drive time and the same inputs always give the same decisions.
import { createHash } from "node:crypto";
import { seriesText } from "../../sidecar/app-metric.ts";
import type { Sample } from "../../sidecar/protocol.ts";
import type {
  ApplicationThreshold,
  Direction,
  Metric,
  ResourceThreshold,
  Thresholds,
} from "../api/v1alpha1.ts";
import { appMetricSpec } from "../monitor/inject.ts";

/** A monitor silent for more than this many intervals has no say. */
export const STALE_AFTER_INTERVALS = 3;
/** A window counts as full with up to this share of its samples missing (lost on the wire). */
export const MISSING_SAMPLES_TOLERATED = 0.1;
/** Rearm level when a threshold does not set one: this many points below the trigger. */
export const DEFAULT_REARM_GAP = 10;
/** The application metric's rearm level when it sets none: this share of the trigger. */
export const DEFAULT_APP_REARM_RATIO = 0.9;

export interface NodeAllocatable {
  cpuCores: number;
  memoryBytes: number;
}

export interface EdgeNodePolicy {
  samplingIntervalSeconds: number;
  sustainedWindowSeconds: number;
  /** 1-100: share of the window's samples that must be above the trigger (k of n). */
  breachPercent: number;
  cooldownSeconds: number;
  maxConcurrentMigrations: number;
  thresholds: Thresholds;
  /** The way back (EdgeNode spec.returnToEdge, defaults applied); absent: pods stay in the cloud. */
  returnToEdge?: ReturnPolicy;
  /** The nodes this EdgeNode matches; allocatable is needed only for node-level thresholds. */
  nodes: Record<string, NodeAllocatable | undefined>;
}

export interface ReturnPolicy {
  cpuPercent?: number;
  memoryPercent?: number;
  applicationValue?: number;
  windowSeconds: number;
  cooldownSeconds: number;
}

/** What the engine needs of a sample. */
export type Observation = Pick<
  Sample,
  | "node"
  | "namespace"
  | "pod"
  | "podUid"
  | "container"
  | "ts"
  | "cpuCores"
  | "cpuPercent"
  | "memoryBytes"
  | "memoryPercent"
> &
  Partial<Pick<Sample, "appStatus" | "appValue">>;

export interface Decision {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  edgeNode: string;
  node: string;
  metric: Metric;
  /** Observed usage in percent: of the container limit, or of node allocatable for node metrics. */
  value: number;
  /** The trigger percentage it exceeded (application: the triggerValue). */
  threshold: number;
  /** Metric application: the series and how it was read. */
  series?: string;
  /** ToEdge: a return (the reason is BelowReturnLevel, threshold the return level); absent: ToCloud. */
  direction?: Direction;
  windowSeconds: number;
  /** RFC 3339 time of the sample that decided it. */
  sampledAt: string;
}

/**
 * A Migration name per pod instance and attempt, a valid DNS subdomain: the first
 * attempt is `<pod>-<hash of the uid>`, later ones add `-<attempt>`, so a pod can be
 * moved again after a migration that failed, and a retried create of the same
 * attempt collides instead of making a second Migration.
 */
export function migrationName(pod: string, podUid: string, attempt = 1): string {
  const hash = createHash("sha256").update(podUid).digest("hex").slice(0, 8);
  const suffix = attempt > 1 ? `-${hash}-${attempt}` : `-${hash}`;
  const prefix = pod
    .toLowerCase()
    .slice(0, 253 - suffix.length)
    .replace(/[^a-z0-9]+$/, "");
  return `${prefix || "pod"}${suffix}`;
}

/** The next attempt's name: one past the highest attempt among the names that exist. */
export function nextMigrationName(pod: string, podUid: string, existing: Iterable<string>): string {
  const first = migrationName(pod, podUid);
  let last = 0;
  for (const name of existing) {
    if (name === first) last = Math.max(last, 1);
    else if (name.startsWith(`${first}-`)) {
      const n = Number(name.slice(first.length + 1));
      if (Number.isInteger(n) && n > 1) last = Math.max(last, n);
    }
  }
  return migrationName(pod, podUid, last + 1);
}

export interface DecisionEngineOptions {
  /**
   * Whether a pod on a node could be migrated at all (its owner kind is one that moves):
   * a pod that cannot is never decided on, neither for its own load nor as the victim
   * of its node's. Default: every pod.
   */
  movable?: (namespace: string, pod: string, node: string) => boolean;
  /**
   * When the pod arrived where it runs by a migration (its restored pod was
   * created), in ms since the epoch; undefined for a pod that never moved.
   * With returnToEdge, a moved pod moves again (either way) only its
   * cooldownSeconds after that.
   */
  arrivedAt?: (namespace: string, pod: string, node: string) => number | undefined;
}

interface Point {
  ts: number;
  cpuPercent: number;
  memoryPercent: number;
  cpuCores: number;
  memoryBytes: number;
  /** The application's metric, when this sample read a value (status ok). */
  app?: number;
}

type ContainerMetric = "cpu" | "memory" | "application";

interface ContainerState {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  node: string;
  points: Point[];
  /** When its latest sample arrived, on the operator's clock (samples carry the monitor's). */
  lastArrival: number;
  /** Disarmed after a trigger until usage falls below the rearm level. */
  armed: Record<ContainerMetric, boolean>;
  /** Only samples from here on count as evidence (set on rearm). */
  since: Record<ContainerMetric, number>;
  /** A pod in the cloud that may return: the EdgeNode it returns to. */
  returnTo?: string;
}

interface NodePoint {
  slot: number;
  ts: number;
  cpuPercent: number;
  memoryPercent: number;
}

interface NodeState {
  containers: Set<string>;
  points: NodePoint[];
  since: number;
}

interface PodUse {
  namespace: string;
  pod: string;
  podUid: string;
  /** Summed over the pod's containers. */
  total: number;
  /** The container using the most, and how much. */
  container: string;
  top: number;
  /** Newest sample among its containers. */
  ts: number;
}

interface Policy extends EdgeNodePolicy {
  intervalMs: number;
  windowMs: number;
  cooldownMs: number;
  /** returnToEdge's window and cooldown. */
  returnWindowMs: number;
  returnCooldownMs: number;
}

/** What a window is judged by: its length, the sampling interval and the share that must count. */
interface WindowRule {
  intervalMs: number;
  windowMs: number;
  breachPercent: number;
}

const podKey = (namespace: string, pod: string) => `${namespace}/${pod}`;
const containerKey = (namespace: string, pod: string, container: string) =>
  `${namespace}/${pod}/${container}`;
const round2 = (n: number) => Math.round(n * 100) / 100;

function rearmLevel(t: ResourceThreshold): number {
  return Math.min(
    t.triggerPercent,
    t.rearmPercent ?? Math.max(0, t.triggerPercent - DEFAULT_REARM_GAP),
  );
}

function appRearmLevel(t: ApplicationThreshold): number {
  return Math.min(t.triggerValue, t.rearmValue ?? t.triggerValue * DEFAULT_APP_REARM_RATIO);
}

/** How a Migration's reason names the application's series: `name{...} rate per minute`. */
export function appSeries(t: ApplicationThreshold): string {
  const spec = appMetricSpec(t);
  return spec.type === "Counter"
    ? `${seriesText(spec)} rate per ${spec.per.toLowerCase()}`
    : `${seriesText(spec)} value`;
}

function normalize(p: EdgeNodePolicy): Policy {
  const problems: string[] = [];
  if (!(p.samplingIntervalSeconds > 0)) problems.push("samplingIntervalSeconds must be > 0");
  if (!(p.sustainedWindowSeconds >= p.samplingIntervalSeconds)) {
    problems.push("sustainedWindowSeconds must be >= samplingIntervalSeconds");
  }
  if (!(p.breachPercent > 0 && p.breachPercent <= 100))
    problems.push("breachPercent must be 1-100");
  if (!(p.cooldownSeconds >= 0)) problems.push("cooldownSeconds must be >= 0");
  if (!(p.maxConcurrentMigrations >= 1)) problems.push("maxConcurrentMigrations must be >= 1");
  const r = p.returnToEdge;
  if (r) {
    if (!(r.windowSeconds >= p.samplingIntervalSeconds))
      problems.push("returnToEdge.windowSeconds must be >= samplingIntervalSeconds");
    if (!(r.cooldownSeconds >= 0)) problems.push("returnToEdge.cooldownSeconds must be >= 0");
    if (
      r.cpuPercent === undefined &&
      r.memoryPercent === undefined &&
      r.applicationValue === undefined
    )
      problems.push("returnToEdge needs at least one level");
  }
  if (problems.length) throw new RangeError(`Invalid EdgeNode policy: ${problems.join("; ")}`);
  return {
    ...p,
    intervalMs: p.samplingIntervalSeconds * 1000,
    windowMs: p.sustainedWindowSeconds * 1000,
    cooldownMs: p.cooldownSeconds * 1000,
    returnWindowMs: (r?.windowSeconds ?? 0) * 1000,
    returnCooldownMs: (r?.cooldownSeconds ?? 0) * 1000,
  };
}

/**
 * True when the points cover the whole window ending at `end` (the first interval may be
 * half missing, 10% of the samples may be lost) and at least breachPercent% of them
 * count. `end` is on the points' own clock: a monitor's clock for its samples.
 */
function sustained<P extends { ts: number }>(
  points: readonly P[],
  counts: (p: P) => boolean,
  since: number,
  rule: WindowRule,
  end: number,
): boolean {
  const { intervalMs: interval, windowMs: window } = rule;
  const start = end - window;
  let count = 0;
  let hits = 0;
  let oldest = Number.POSITIVE_INFINITY;
  for (const p of points) {
    if (p.ts <= start || p.ts < since || p.ts > end) continue;
    count++;
    if (counts(p)) hits++;
    if (p.ts < oldest) oldest = p.ts;
  }
  const expected = Math.max(1, Math.round(window / interval));
  if (count < Math.ceil(expected * (1 - MISSING_SAMPLES_TOLERATED))) return false;
  if (oldest > start + 1.5 * interval) return false;
  return hits * 100 >= rule.breachPercent * count;
}

/** A sustained breach: breachPercent% of the window's samples above `trigger`. */
function sustainedBreach<P extends { ts: number }>(
  points: readonly P[],
  value: (p: P) => number | undefined,
  trigger: number,
  since: number,
  policy: Policy,
  end: number,
): boolean {
  // No value (a failed scrape, an absent series) is a sample that does not breach.
  return sustained(
    points,
    (p) => (value(p) ?? Number.NEGATIVE_INFINITY) > trigger,
    since,
    policy,
    end,
  );
}

export class DecisionEngine {
  readonly #edgeNodes = new Map<string, Policy>();
  readonly #edgeOfNode = new Map<string, string>();
  readonly #containers = new Map<string, ContainerState>();
  readonly #nodes = new Map<string, NodeState>();
  /** Pod key -> source node of its migration in flight. */
  readonly #inFlight = new Map<string, string>();
  /** Pod key -> EdgeNode, for migrations in flight from a node no EdgeNode owns (returns). */
  readonly #inFlightEdgeNode = new Map<string, string>();
  /** When the engine itself decided a pod in flight, until a Migration for it is seen. */
  readonly #decidedAt = new Map<string, number>();
  readonly #podCooldownUntil = new Map<string, number>();
  readonly #nodeCooldownUntil = new Map<string, number>();
  readonly #movable: NonNullable<DecisionEngineOptions["movable"]>;
  readonly #arrivedAt: NonNullable<DecisionEngineOptions["arrivedAt"]>;

  constructor(opts: DecisionEngineOptions = {}) {
    this.#movable = opts.movable ?? (() => true);
    this.#arrivedAt = opts.arrivedAt ?? (() => undefined);
  }

  /** Adds or replaces an EdgeNode's policy and node list. A node belongs to one EdgeNode: the last to claim it. */
  configure(edgeNode: string, policy: EdgeNodePolicy): void {
    const normalized = normalize(policy);
    for (const [node, owner] of this.#edgeOfNode) {
      if (owner === edgeNode && !(node in policy.nodes)) this.#dropNode(node);
    }
    this.#edgeNodes.set(edgeNode, normalized);
    for (const node of Object.keys(policy.nodes)) this.#edgeOfNode.set(node, edgeNode);
    if (!policy.returnToEdge) this.#dropReturning(edgeNode);
  }

  removeEdgeNode(edgeNode: string): void {
    for (const [node, owner] of this.#edgeOfNode) if (owner === edgeNode) this.#dropNode(node);
    this.#dropReturning(edgeNode);
    this.#edgeNodes.delete(edgeNode);
  }

  /** Forgets the samples of the cloud pods that may return to `edgeNode`. */
  #dropReturning(edgeNode: string): void {
    for (const [key, c] of this.#containers) {
      if (c.returnTo !== edgeNode) continue;
      this.#containers.delete(key);
      this.#nodes.get(c.node)?.containers.delete(key);
    }
  }

  #dropNode(node: string): void {
    this.#edgeOfNode.delete(node);
    for (const key of this.#nodes.get(node)?.containers ?? []) this.#containers.delete(key);
    this.#nodes.delete(node);
  }

  /**
   * Records one verified sample; returns the migrations to start now (each
   * already counted in flight). `returnTo`: the sample is of a pod in the cloud
   * that may return to that EdgeNode (see #observeReturning).
   */
  observe(sample: Observation, now: number, returnTo?: string): Decision[] {
    if (returnTo !== undefined) return this.#observeReturning(sample, now, returnTo);
    const edgeNode = this.#edgeOfNode.get(sample.node);
    const policy = edgeNode ? this.#edgeNodes.get(edgeNode) : undefined;
    if (!edgeNode || !policy) return [];

    const c = this.#container(sample);
    const last = c.points.at(-1);
    if (last && sample.ts <= last.ts) return [];
    c.lastArrival = now;
    c.points.push(this.#point(sample));
    const keepFrom = sample.ts - policy.windowMs;
    const firstKept = c.points.findIndex((p) => p.ts > keepFrom);
    if (firstKept > 0) c.points.splice(0, firstKept);

    const decisions: Decision[] = [];
    const own = this.#evaluateContainer(c, edgeNode, policy, sample, now);
    if (own) decisions.push(own);
    this.#recordNode(sample.node, policy, now);
    const pressure = this.#evaluateNode(sample.node, edgeNode, policy, now);
    if (pressure) decisions.push(pressure);
    return decisions;
  }

  #point(sample: Observation): Point {
    return {
      ts: sample.ts,
      cpuPercent: sample.cpuPercent,
      memoryPercent: sample.memoryPercent,
      cpuCores: sample.cpuCores,
      memoryBytes: sample.memoryBytes,
      ...(sample.appStatus === "ok" && sample.appValue !== undefined
        ? { app: sample.appValue }
        : {}),
    };
  }

  /**
   * A sample of a pod edgeshift moved to the cloud: the pod returns once every
   * container of it with fresh samples has stayed below every returnToEdge
   * level for the return window (breachPercent of its samples), subject to the
   * same in-flight cap, opt-out and cooldowns as a move out. Whether an edge
   * node can take it is the caller's to check.
   */
  #observeReturning(sample: Observation, now: number, edgeNode: string): Decision[] {
    const policy = this.#edgeNodes.get(edgeNode);
    const r = policy?.returnToEdge;
    if (!policy || !r || this.#edgeOfNode.has(sample.node)) return [];
    const c = this.#container(sample);
    c.returnTo = edgeNode;
    const last = c.points.at(-1);
    if (last && sample.ts <= last.ts) return [];
    c.lastArrival = now;
    c.points.push(this.#point(sample));
    const keepFrom = sample.ts - Math.max(policy.returnWindowMs, policy.windowMs);
    const firstKept = c.points.findIndex((p) => p.ts > keepFrom);
    if (firstKept > 0) c.points.splice(0, firstKept);

    if (!this.#eligible(c.namespace, c.pod, c.node, edgeNode, policy, now)) return [];
    const levels: [ContainerMetric, number | undefined, (p: Point) => number | undefined][] = [
      ["cpu", r.cpuPercent, (p) => p.cpuPercent],
      ["memory", r.memoryPercent, (p) => p.memoryPercent],
      ["application", r.applicationValue, (p) => p.app],
    ];
    const set = levels.filter(([, level]) => level !== undefined) as [
      ContainerMetric,
      number,
      (p: Point) => number | undefined,
    ][];
    const rule = {
      intervalMs: policy.intervalMs,
      windowMs: policy.returnWindowMs,
      breachPercent: policy.breachPercent,
    };
    const siblings = [...this.#containers.values()].filter(
      (o) => o.namespace === c.namespace && o.pod === c.pod && o.podUid === c.podUid,
    );
    for (const o of siblings) {
      if (o !== c && !this.#fresh(o, policy, now)) continue;
      const end = o.points.at(-1)?.ts ?? 0;
      for (const [, level, value] of set) {
        // No value (a failed scrape, an absent series) is no evidence of idleness.
        const below = (p: Point) => {
          const v = value(p);
          return v !== undefined && v < level;
        };
        if (!sustained(o.points, below, 0, rule, end)) return [];
      }
    }
    const [metric, level, value] = set[0] as (typeof set)[number];
    this.#inFlightEdgeNode.set(podKey(c.namespace, c.pod), edgeNode);
    const latest = c.points.findLast((p) => value(p) !== undefined);
    return [
      this.#decide(c, edgeNode, policy, sample, now, {
        metric,
        value: round2((latest && value(latest)) ?? 0),
        threshold: level,
        direction: "ToEdge",
        windowSeconds: r.windowSeconds,
      }),
    ];
  }

  /** The decision on container `c`'s pod, counted in flight from now. */
  #decide(
    c: ContainerState,
    edgeNode: string,
    policy: Policy,
    sample: Observation,
    now: number,
    what: Pick<Decision, "metric" | "value" | "threshold" | "windowSeconds" | "direction">,
  ): Decision {
    this.#inFlight.set(podKey(c.namespace, c.pod), c.node);
    this.#decidedAt.set(podKey(c.namespace, c.pod), now);
    const app = policy.thresholds.application;
    return {
      namespace: c.namespace,
      pod: c.pod,
      podUid: c.podUid,
      container: c.container,
      edgeNode,
      node: c.node,
      ...what,
      ...(what.metric === "application" && app ? { series: appSeries(app) } : {}),
      sampledAt: new Date(sample.ts).toISOString(),
    };
  }

  /**
   * No edge node can take a pod the engine decided to return: it is not in
   * flight, and stays where it is for `forMs` before it is judged again.
   */
  deferReturn(namespace: string, pod: string, now: number, forMs: number): void {
    this.release(namespace, pod);
    this.#podCooldownUntil.set(
      podKey(namespace, pod),
      Math.max(now + forMs, this.#podCooldownUntil.get(podKey(namespace, pod)) ?? 0),
    );
  }

  #container(s: Observation): ContainerState {
    const key = containerKey(s.namespace, s.pod, s.container);
    const existing = this.#containers.get(key);
    // Same name, new uid or node: a new pod, with nothing to inherit.
    if (existing && existing.podUid === s.podUid && existing.node === s.node) return existing;
    if (existing) this.#nodes.get(existing.node)?.containers.delete(key);
    const c: ContainerState = {
      namespace: s.namespace,
      pod: s.pod,
      podUid: s.podUid,
      container: s.container,
      node: s.node,
      points: [],
      lastArrival: 0,
      armed: { cpu: true, memory: true, application: true },
      since: { cpu: 0, memory: 0, application: 0 },
    };
    this.#containers.set(key, c);
    this.#nodeState(s.node).containers.add(key);
    return c;
  }

  #nodeState(node: string): NodeState {
    let n = this.#nodes.get(node);
    if (!n) {
      n = { containers: new Set(), points: [], since: 0 };
      this.#nodes.set(node, n);
    }
    return n;
  }

  #evaluateContainer(
    c: ContainerState,
    edgeNode: string,
    policy: Policy,
    sample: Observation,
    now: number,
  ): Decision | undefined {
    const level = (t: ResourceThreshold | undefined) =>
      t && { trigger: t.triggerPercent, rearm: rearmLevel(t) };
    const app = policy.thresholds.application;
    const metrics: [
      ContainerMetric,
      { trigger: number; rearm: number } | undefined,
      (p: Point) => number | undefined,
    ][] = [
      ["cpu", level(policy.thresholds.cpu), (p) => p.cpuPercent],
      ["memory", level(policy.thresholds.memory), (p) => p.memoryPercent],
      [
        "application",
        app && { trigger: app.triggerValue, rearm: appRearmLevel(app) },
        (p) => p.app,
      ],
    ];
    const latest = c.points.at(-1) as Point;
    for (const [metric, t, value] of metrics) {
      // Only a reading re-arms: a failed scrape says nothing about the load.
      const v = value(latest);
      if (t && !c.armed[metric] && v !== undefined && v < t.rearm) {
        c.armed[metric] = true;
        c.since[metric] = sample.ts;
      }
    }
    for (const [metric, t, value] of metrics) {
      if (!t || !c.armed[metric]) continue;
      if (!sustainedBreach(c.points, value, t.trigger, c.since[metric], policy, sample.ts))
        continue;
      if (!this.#eligible(c.namespace, c.pod, c.node, edgeNode, policy, now)) return undefined;
      c.armed[metric] = false;
      return this.#decide(c, edgeNode, policy, sample, now, {
        metric,
        // The newest reading in the window (the deciding sample may have none: k of n).
        value: value(c.points.findLast((p) => value(p) !== undefined) ?? latest) ?? 0,
        threshold: t.trigger,
        windowSeconds: policy.sustainedWindowSeconds,
      });
    }
    return undefined;
  }

  /** The container's latest sample, unless its monitor has been silent too long. */
  #fresh(c: ContainerState, policy: Policy, now: number): Point | undefined {
    const silent = now - c.lastArrival > STALE_AFTER_INTERVALS * policy.intervalMs;
    return silent ? undefined : c.points.at(-1);
  }

  /** One node point per sampling interval: the sum of the latest fresh sample of each container. */
  #recordNode(node: string, policy: Policy, now: number): void {
    const alloc = policy.nodes[node];
    const t = policy.thresholds.node;
    if (!alloc || !t || (t.cpuPercent === undefined && t.memoryPercent === undefined)) return;
    const n = this.#nodeState(node);
    let cpu = 0;
    let memory = 0;
    for (const key of n.containers) {
      const c = this.#containers.get(key);
      const last = c && this.#fresh(c, policy, now);
      if (!last) continue;
      cpu += last.cpuCores;
      memory += last.memoryBytes;
    }
    const point = {
      slot: Math.floor(now / policy.intervalMs),
      ts: now,
      cpuPercent: alloc.cpuCores > 0 ? (cpu / alloc.cpuCores) * 100 : 0,
      memoryPercent: alloc.memoryBytes > 0 ? (memory / alloc.memoryBytes) * 100 : 0,
    };
    const last = n.points.at(-1);
    if (last && last.slot === point.slot) {
      last.cpuPercent = point.cpuPercent;
      last.memoryPercent = point.memoryPercent;
    } else {
      n.points.push(point);
    }
    const keepFrom = now - policy.windowMs;
    const firstKept = n.points.findIndex((p) => p.ts > keepFrom);
    if (firstKept > 0) n.points.splice(0, firstKept);
  }

  #evaluateNode(node: string, edgeNode: string, policy: Policy, now: number): Decision | undefined {
    const t = policy.thresholds.node;
    const n = this.#nodes.get(node);
    if (!t || !n || n.points.length === 0) return undefined;
    // A migration off this node is already relieving it.
    for (const source of this.#inFlight.values()) if (source === node) return undefined;

    const metrics: ["nodeCpu" | "nodeMemory", number | undefined, (p: NodePoint) => number][] = [
      ["nodeCpu", t.cpuPercent, (p) => p.cpuPercent],
      ["nodeMemory", t.memoryPercent, (p) => p.memoryPercent],
    ];
    for (const [metric, threshold, value] of metrics) {
      if (threshold === undefined) continue;
      if (!sustainedBreach(n.points, value, threshold, n.since, policy, now)) continue;
      const victim = this.#busiest(node, metric, edgeNode, policy, now);
      if (!victim) return undefined;
      this.#inFlight.set(podKey(victim.namespace, victim.pod), node);
      this.#decidedAt.set(podKey(victim.namespace, victim.pod), now);
      const latest = n.points.at(-1) as NodePoint;
      return {
        namespace: victim.namespace,
        pod: victim.pod,
        podUid: victim.podUid,
        container: victim.container,
        edgeNode,
        node,
        metric,
        value: round2(value(latest)),
        threshold,
        windowSeconds: policy.sustainedWindowSeconds,
        sampledAt: new Date(victim.ts).toISOString(),
      };
    }
    return undefined;
  }

  /** The eligible pod with fresh data using the most of the resource, and its busiest container. */
  #busiest(
    node: string,
    metric: "nodeCpu" | "nodeMemory",
    edgeNode: string,
    policy: Policy,
    now: number,
  ): PodUse | undefined {
    const n = this.#nodes.get(node);
    const use = (p: Point) => (metric === "nodeCpu" ? p.cpuCores : p.memoryBytes);
    const pods = new Map<string, PodUse>();
    for (const key of n?.containers ?? []) {
      const c = this.#containers.get(key);
      const last = c && this.#fresh(c, policy, now);
      if (!c || !last) continue;
      const k = podKey(c.namespace, c.pod);
      let p = pods.get(k);
      if (!p) {
        p = {
          namespace: c.namespace,
          pod: c.pod,
          podUid: c.podUid,
          total: 0,
          container: "",
          top: -1,
          ts: 0,
        };
        pods.set(k, p);
      }
      p.total += use(last);
      p.ts = Math.max(p.ts, last.ts);
      if (use(last) > p.top || (use(last) === p.top && c.container < p.container)) {
        p.top = use(last);
        p.container = c.container;
      }
    }
    let best: PodUse | undefined;
    // Sorted, so equal usage always picks the same pod.
    for (const [, p] of [...pods].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (!this.#eligible(p.namespace, p.pod, node, edgeNode, policy, now)) continue;
      if (!best || p.total > best.total) best = p;
    }
    return best;
  }

  #eligible(
    namespace: string,
    pod: string,
    node: string,
    edgeNode: string,
    policy: Policy,
    now: number,
  ): boolean {
    const key = podKey(namespace, pod);
    if (this.#inFlight.has(key)) return false;
    if (!this.#movable(namespace, pod, node)) return false;
    if ((this.#podCooldownUntil.get(key) ?? 0) > now) return false;
    if ((this.#nodeCooldownUntil.get(node) ?? 0) > now) return false;
    if (policy.returnToEdge) {
      // A moved pod stays where it arrived for the return cooldown, either way.
      const arrived = this.#arrivedAt(namespace, pod, node);
      if (arrived !== undefined && now < arrived + policy.returnCooldownMs) return false;
    }
    return this.inFlightCount(edgeNode) < policy.maxConcurrentMigrations;
  }

  /** Migrations in flight of one EdgeNode's pods: from its nodes, and returns to them. */
  inFlightCount(edgeNode: string): number {
    let n = 0;
    for (const [key, node] of this.#inFlight) {
      if ((this.#edgeOfNode.get(node) ?? this.#inFlightEdgeNode.get(key)) === edgeNode) n++;
    }
    return n;
  }

  /**
   * A migration the engine did not decide (created by hand, or found at start-up) is in
   * flight: it blocks the pod and counts against the EdgeNode's cap. Idempotent.
   */
  migrationStarted(namespace: string, pod: string, node: string, edgeNode?: string): void {
    this.#inFlight.set(podKey(namespace, pod), node);
    if (edgeNode !== undefined && !this.#edgeOfNode.has(node))
      this.#inFlightEdgeNode.set(podKey(namespace, pod), edgeNode);
  }

  /** A migration ended (either way): the pod and its source node cool down from `now`. */
  migrationFinished(namespace: string, pod: string, now: number): void {
    const key = podKey(namespace, pod);
    const node = this.#inFlight.get(key);
    const returning = this.#inFlightEdgeNode.get(key);
    this.#inFlight.delete(key);
    this.#inFlightEdgeNode.delete(key);
    this.#decidedAt.delete(key);
    if (node === undefined) return;
    const edgeNode = this.#edgeOfNode.get(node) ?? returning;
    const policy = edgeNode ? this.#edgeNodes.get(edgeNode) : undefined;
    const until = now + (policy?.cooldownMs ?? 0);
    for (const [k, t] of this.#podCooldownUntil) if (t <= now) this.#podCooldownUntil.delete(k);
    this.#podCooldownUntil.set(key, until);
    // The node cooldown relieves an edge node; a cloud node's returns are not held back by it.
    if (this.#edgeOfNode.has(node))
      this.#nodeCooldownUntil.set(node, Math.max(until, this.#nodeCooldownUntil.get(node) ?? 0));
    // The node's load changed when the pod left (or did not): judge it on new samples only.
    const n = this.#nodes.get(node);
    if (n) n.since = now + 1;
  }

  /**
   * The engine's decision came to nothing (the Migration could not be created, or the
   * one it collided with has ended): the pod is no longer in flight and no cooldown
   * starts. Returns whether it was in flight.
   */
  release(namespace: string, pod: string): boolean {
    this.#decidedAt.delete(podKey(namespace, pod));
    this.#inFlightEdgeNode.delete(podKey(namespace, pod));
    return this.#inFlight.delete(podKey(namespace, pod));
  }

  /**
   * Makes the in-flight set agree with the Migrations that exist: `open` holds the
   * `namespace/pod` of every unfinished Migration. A pod in flight without one is
   * released, except a decision younger than `graceMs` whose Migration may not have
   * been created or seen yet. Returns the pods released.
   */
  reconcileInFlight(open: ReadonlySet<string>, now: number, graceMs: number): string[] {
    const released: string[] = [];
    for (const key of [...this.#inFlight.keys()]) {
      if (open.has(key)) {
        this.#decidedAt.delete(key);
        continue;
      }
      const decided = this.#decidedAt.get(key);
      if (decided !== undefined && now - decided < graceMs) continue;
      this.#inFlight.delete(key);
      this.#inFlightEdgeNode.delete(key);
      this.#decidedAt.delete(key);
      released.push(key);
    }
    return released;
  }

  /**
   * Forgets every pod `live` does not know any more (deleted, moved, or replaced by a
   * new pod under its name) and cooldowns that are over. Pods in flight stay in flight:
   * their Migration ends them. Returns the pods forgotten.
   */
  prune(
    live: (namespace: string, pod: string, podUid: string, node: string) => boolean,
    now: number,
  ): string[] {
    const gone = new Set<string>();
    for (const c of this.#containers.values()) {
      if (!live(c.namespace, c.pod, c.podUid, c.node)) gone.add(podKey(c.namespace, c.pod));
    }
    for (const key of gone) {
      const [namespace = "", pod = ""] = key.split("/");
      this.forget(namespace, pod);
    }
    for (const [k, t] of this.#podCooldownUntil) if (t <= now) this.#podCooldownUntil.delete(k);
    for (const [k, t] of this.#nodeCooldownUntil) if (t <= now) this.#nodeCooldownUntil.delete(k);
    return [...gone];
  }

  /** Drops a pod's samples (deleted or moved). Migrations in flight and cooldowns stay. */
  forget(namespace: string, pod: string): void {
    for (const [key, c] of this.#containers) {
      if (c.namespace !== namespace || c.pod !== pod) continue;
      this.#containers.delete(key);
      this.#nodes.get(c.node)?.containers.delete(key);
    }
  }
}
