// The sampling loop: measure, sign, publish, once per interval. No NATS or process
// handling here; `main.ts` passes a `publish` that reports whether the sample left.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { AppReading } from "./app-metric.ts";
import type { MonitorConfig } from "./config.ts";
import type { Measurement } from "./measure.ts";
import { encodeSample, type Sample, signSample, subjectFor } from "./protocol.ts";

/** The monitor exits once no target process has been seen for this many intervals. */
export const GONE_AFTER_INTERVALS = 3;

export type MonitorConfigView = Pick<
  MonitorConfig,
  | "node"
  | "namespace"
  | "pod"
  | "podUid"
  | "container"
  | "intervalMs"
  | "cpuLimitCores"
  | "memoryLimitBytes"
  | "signingKey"
>;

export interface MonitorDeps {
  config: MonitorConfigView;
  measure: () => Measurement;
  /** Sends now or returns false; must never queue (a late sample is worse than none). */
  publish: (subject: string, data: Uint8Array) => boolean;
  log: Logger;
  /** Wall clock for sample timestamps, ms since the epoch. */
  now?: () => number;
  /**
   * The application's own metric, when the EdgeNode names one: the latest
   * reading (signed into each sample), and the next scrape started each tick.
   */
  app?: {
    take: (now: number, intervalMs: number) => AppReading | undefined;
    scrape: () => Promise<void>;
  };
}

const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

export function buildSample(
  config: MonitorConfigView,
  run: { boot: number; seq: number; ts: number },
  m: { cpuCores: number; memoryBytes: number },
  app?: AppReading,
): Sample {
  const appFields: Pick<Sample, "appStatus" | "appValue"> = app
    ? {
        appStatus: app.status,
        ...(app.status === "ok" ? { appValue: round(app.value ?? 0, 4) } : {}),
      }
    : {};
  return {
    v: 1,
    node: config.node,
    namespace: config.namespace,
    pod: config.pod,
    podUid: config.podUid,
    container: config.container,
    boot: run.boot,
    seq: run.seq,
    ts: run.ts,
    intervalMs: config.intervalMs,
    cpuCores: round(m.cpuCores, 4),
    cpuLimitCores: config.cpuLimitCores,
    cpuPercent: round((m.cpuCores / config.cpuLimitCores) * 100, 2),
    memoryBytes: Math.round(m.memoryBytes),
    memoryLimitBytes: config.memoryLimitBytes,
    memoryPercent: round((m.memoryBytes / config.memoryLimitBytes) * 100, 2),
    ...appFields,
  };
}

export type StopReason = "stopped" | "targets_gone";

export class Monitor {
  readonly #deps: MonitorDeps;
  readonly #subject: string;
  readonly #boot = randomBytes(4).readUInt32BE(0);
  #seq = 0;
  #missing = 0;
  #dropped = 0;
  #published = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #finish: (r: StopReason) => void = () => {};
  /** Resolves when the loop has ended, with why. */
  readonly done: Promise<StopReason>;

  constructor(deps: MonitorDeps) {
    this.#deps = deps;
    const c = deps.config;
    this.#subject = subjectFor(c.node, c.namespace, c.pod, c.container);
    this.done = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  get subject(): string {
    return this.#subject;
  }

  /** Takes the CPU baseline now, so the first sample goes out one interval later. */
  start(): void {
    this.#runTick();
  }

  /** Ends the loop; ticks run synchronously, so none is half done. */
  stop(): void {
    this.#end("stopped");
  }

  #end(reason: StopReason): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#finish(reason);
  }

  #schedule(startedAt: number): void {
    if (this.#stopped) return;
    // Keep to the interval grid rather than drifting by each tick's own duration.
    const interval = this.#deps.config.intervalMs;
    const delay = Math.max(0, interval - (performance.now() - startedAt));
    this.#timer = setTimeout(() => this.#runTick(), delay);
  }

  #runTick(): void {
    const startedAt = performance.now();
    try {
      this.#sampleOnce();
    } catch (err) {
      this.#deps.log.warn({ err }, "Failed to take a sample");
    }
    this.#schedule(startedAt);
  }

  #sampleOnce(): void {
    const m = this.#deps.measure();
    if (m.targets === 0) {
      this.#missing++;
      if (this.#missing >= GONE_AFTER_INTERVALS) {
        this.#deps.log.info({ intervals: this.#missing }, "Target processes exited");
        this.#end("targets_gone");
      }
      return;
    }
    this.#missing = 0;
    if (m.cpuCores === undefined) return;

    const now = this.#deps.now ?? Date.now;
    const ts = now();
    const app = this.#deps.app;
    // No reading yet (the first scrape has not ended): say so, never a value.
    const reading = app
      ? (app.take(ts, this.#deps.config.intervalMs) ?? { status: "first" })
      : undefined;
    if (app) void app.scrape().catch((err) => this.#deps.log.warn({ err }, "Scrape failed"));
    const sample = buildSample(
      this.#deps.config,
      { boot: this.#boot, seq: ++this.#seq, ts },
      { cpuCores: m.cpuCores, memoryBytes: m.memoryBytes },
      reading,
    );
    const sent = this.#deps.publish(
      this.#subject,
      encodeSample(signSample(sample, this.#deps.config.signingKey)),
    );
    if (!sent) {
      this.#dropped++;
      return;
    }
    if (this.#published === 0) {
      this.#deps.log.info(
        { subject: this.#subject, source: m.source, targets: m.targets },
        "Published first sample",
      );
    }
    if (this.#dropped > 0) {
      this.#deps.log.info({ dropped: this.#dropped }, "Resumed publishing after dropping samples");
      this.#dropped = 0;
    }
    this.#published++;
  }
}
