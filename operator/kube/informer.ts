import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

export interface InformerMetrics {
  restarts: Counter<"resource">;
}

export function informerMetrics(registry: Registry): InformerMetrics {
  return {
    restarts: new Counter({
      name: "edgeshift_informer_restarts_total",
      help: "Informers restarted after their list or watch failed",
      labelNames: ["resource"],
      registers: [registry],
    }),
  };
}

export interface SupervisedInformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Label for logs and metrics, bounded (e.g. "pods", "edgenodes"). */
  resource: string;
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  fieldSelector?: string;
  labelSelector?: string;
  /** Called for add, update and delete alike; it must only enqueue. */
  onChange: (obj: T) => void;
  log: Logger;
  metrics?: InformerMetrics;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Consecutive failures after which `healthy` turns false. */
  unhealthyAfter?: number;
}

/**
 * client-node's ListWatch stops for good on any error but 410 and timeouts, and
 * `stop()`/`start()` emit AbortError. This wrapper restarts it with capped
 * exponential backoff on every error except a deliberate stop, counts restarts,
 * and reports unhealthy after repeated failures.
 */
export class SupervisedInformer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private stopped = true;
  private synced = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly opts: SupervisedInformerOptions<T>;

  constructor(opts: SupervisedInformerOptions<T>) {
    this.opts = opts;
    // At 0 from the start, so an alert on restarts has a series before the first one.
    opts.metrics?.restarts.inc({ resource: opts.resource }, 0);
    this.lw = new ListWatch<T>(
      opts.path,
      new Watch(opts.kubeConfig),
      opts.list,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    const safe = (obj: T) => {
      try {
        opts.onChange(obj);
      } catch (err) {
        opts.log.error({ err }, "Informer handler threw");
      }
    };
    this.lw.on("add", safe);
    this.lw.on("update", safe);
    this.lw.on("delete", safe);
    this.lw.on("error", (err) => this.onError(err));
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get healthy(): boolean {
    return this.failures < (this.opts.unhealthyAfter ?? 5);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace);
  }

  /** Starts and resolves once the first list has filled the cache (retrying as needed). */
  async start(): Promise<void> {
    this.stopped = false;
    const synced = new Promise<void>((resolve) => {
      this.onSynced = resolve;
    });
    this.kick();
    await synced;
  }

  private onSynced: (() => void) | undefined;

  // ListWatch.start() does not reject when its list fails: it emits "error" and
  // returns with no resource version. A resource version means list and watch
  // are established.
  private kick(): void {
    if (this.stopped) return;
    this.lw
      .start()
      .then(() => {
        if (this.stopped || this.lw.latestResourceVersion() === "") return;
        this.failures = 0;
        this.synced = true;
        this.onSynced?.();
        this.onSynced = undefined;
      })
      .catch((err) => this.onError(err));
  }

  private delay(): number {
    const base = this.opts.baseDelayMs ?? 500;
    return Math.min(this.opts.maxDelayMs ?? 30_000, base * 2 ** Math.max(0, this.failures - 1));
  }

  private onError(err: unknown): void {
    if (this.stopped) return;
    if ((err as { name?: string } | undefined)?.name === "AbortError") return;
    this.failures++;
    this.opts.metrics?.restarts.inc({ resource: this.opts.resource });
    const delay = this.delay();
    this.opts.log.warn({ err, retryInMs: delay }, "Informer list or watch failed; restarting");
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.kick();
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.onSynced?.();
    this.onSynced = undefined;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.lw.stop().catch(() => {});
  }
}
