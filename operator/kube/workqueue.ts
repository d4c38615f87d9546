import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface QueueMetrics {
  depth: Gauge<"queue">;
  adds: Counter<"queue">;
  retries: Counter<"queue">;
  reconcileSeconds: Histogram<"queue" | "result">;
}

export function queueMetrics(registry: Registry): QueueMetrics {
  return {
    depth: new Gauge({
      name: "edgeshift_workqueue_depth",
      help: "Keys waiting in a work queue",
      labelNames: ["queue"],
      registers: [registry],
    }),
    adds: new Counter({
      name: "edgeshift_workqueue_adds_total",
      help: "Keys added to a work queue",
      labelNames: ["queue"],
      registers: [registry],
    }),
    retries: new Counter({
      name: "edgeshift_workqueue_retries_total",
      help: "Keys re-queued with backoff after a failed reconcile",
      labelNames: ["queue"],
      registers: [registry],
    }),
    reconcileSeconds: new Histogram({
      name: "edgeshift_reconcile_duration_seconds",
      help: "Time spent in one reconcile, by result",
      labelNames: ["queue", "result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}

/** How a reconcile ended, the `result` label of edgeshift_reconcile_duration_seconds. */
const RECONCILE_RESULTS = ["success", "error", "requeue"] as const;

/** What a reconcile may ask for besides success: run again after a delay. */
export type ReconcileResult = undefined | { requeueAfterMs: number };
export type Reconciler = (key: string) => Promise<ReconcileResult>;

/** Errors a reconciler throws to requeue quietly (409 conflicts, caches not warm yet). */
export class RequeueError extends Error {}

export interface WorkQueueOptions {
  name: string;
  baseDelayMs?: number;
  maxDelayMs?: number;
  metrics?: QueueMetrics;
  log?: Logger;
}

/**
 * A work queue with client-go semantics: a pending key is held once, a key is
 * never processed by two workers at once (a re-add while it runs makes it run
 * again afterwards), failures back off exponentially per key up to a cap, and
 * success forgets the key's failures.
 */
export class WorkQueue {
  readonly name: string;
  private readonly queue: string[] = [];
  private readonly pending = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private readonly waiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly metrics: QueueMetrics | undefined;
  private readonly log: Logger | undefined;
  private workers: Promise<void>[] = [];

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.baseDelayMs = opts.baseDelayMs ?? 100;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.metrics = opts.metrics;
    this.log = opts.log;
    // Every series of this queue exists from the start, at 0: alerts on errors and
    // rate() see one before the first failure (Prometheus' "avoid missing metrics").
    const queue = this.name;
    this.metrics?.depth.set({ queue }, 0);
    this.metrics?.adds.inc({ queue }, 0);
    this.metrics?.retries.inc({ queue }, 0);
    for (const result of RECONCILE_RESULTS) this.metrics?.reconcileSeconds.zero({ queue, result });
  }

  get length(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.adds.inc({ queue: this.name });
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.pending.has(key)) return;
    this.pending.add(key);
    this.queue.push(key);
    this.metrics?.depth.set({ queue: this.name }, this.queue.length);
    this.waiters.shift()?.();
  }

  /** Adds the key after `ms`; when the key already waits, the earlier time wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const due = Date.now() + ms;
    const existing = this.timers.get(key);
    if (existing) {
      if (existing.due <= due) return;
      clearTimeout(existing.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { timer, due });
  }

  /** Exponential backoff per key: base * 2^failures, capped. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** n);
    this.metrics?.retries.inc({ queue: this.name });
    this.addAfter(key, delay);
    return delay;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  private async next(): Promise<string | undefined> {
    for (;;) {
      const key = this.queue.shift();
      if (key !== undefined) {
        this.pending.delete(key);
        this.processing.add(key);
        this.metrics?.depth.set({ queue: this.name }, this.queue.length);
        return key;
      }
      if (this.shuttingDown) return undefined;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  private done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  /** Starts `workers` loops that feed keys to `reconcile`. */
  start(reconcile: Reconciler, workers = 1): void {
    for (let i = 0; i < workers; i++) this.workers.push(this.worker(reconcile));
  }

  private async worker(reconcile: Reconciler): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      const started = process.hrtime.bigint();
      let result: (typeof RECONCILE_RESULTS)[number] = "success";
      try {
        const r = await reconcile(key);
        this.forget(key);
        if (r?.requeueAfterMs !== undefined) this.addAfter(key, r.requeueAfterMs);
      } catch (err) {
        if (err instanceof RequeueError) {
          result = "requeue";
          this.addAfter(key, this.baseDelayMs);
        } else {
          result = "error";
          const delay = this.addRateLimited(key);
          this.log?.warn({ err, key, retryInMs: delay }, "Reconcile failed");
        }
      } finally {
        const secs = Number(process.hrtime.bigint() - started) / 1e9;
        this.metrics?.reconcileSeconds.observe({ queue: this.name, result }, secs);
        this.done(key);
      }
    }
  }

  /** Stops taking new keys, lets workers finish what they hold, drops timers. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.queue.length = 0;
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
    await Promise.all(this.workers);
    this.workers = [];
  }
}
