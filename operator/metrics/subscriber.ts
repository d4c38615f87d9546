// Receives monitor samples from NATS, keeps only authentic, fresh, new ones, and hands
// them on. The hot path of the operator: 10k messages/s on one core, never throws.
import type { Msg, NatsConnection, NatsError, Subscription } from "nats";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import {
  ALL_MONITORS_SUBJECT,
  DROP_REASONS,
  type DropReason,
  decodeAndVerify,
  type KeyLookup,
  type MonitorIdentity,
  monitorId,
  nodeSubject,
  type ReplayState,
  type SignedSample,
  type VerifyResult,
} from "../../sidecar/protocol.ts";

/** A monitor is stale once it has been silent for this many of its own intervals. */
export const STALE_AFTER_INTERVALS = 3;

export interface SubscriberOptions {
  nc: NatsConnection;
  registry: Registry;
  keyLookup: KeyLookup;
  /** Called for every verified sample; an exception is logged, never propagated. */
  onSample: (sample: SignedSample, receivedAt: number) => void;
  log: Logger;
  /** ms since the epoch; injectable for tests. */
  now?: () => number;
}

export interface MonitorSeen extends MonitorIdentity {
  /** When its last verified sample arrived, ms since the epoch. */
  lastSeen: number;
  intervalMs: number;
}

function counters(registry: Registry) {
  const existing = (name: string) => registry.getSingleMetric(name) as Counter<string> | undefined;
  const received =
    existing("edgeshift_samples_received_total") ??
    new Counter({
      name: "edgeshift_samples_received_total",
      help: "Monitor samples received from NATS, before verification",
      registers: [registry],
    });
  const dropped =
    existing("edgeshift_samples_dropped_total") ??
    new Counter({
      name: "edgeshift_samples_dropped_total",
      help: "Monitor samples dropped, by reason",
      labelNames: ["reason"],
      registers: [registry],
    });
  // Every reason shows up from the start, so rate() works before the first drop.
  for (const reason of DROP_REASONS) dropped.inc({ reason }, 0);
  return { received, dropped };
}

export class MetricsSubscriber {
  readonly #opts: SubscriberOptions;
  readonly #now: () => number;
  readonly #received: Counter<string>;
  readonly #dropped: Counter<string>;
  readonly #replay: ReplayState = new Map();
  readonly #seen = new Map<string, MonitorSeen>();
  readonly #subs = new Map<string, Subscription>();

  constructor(opts: SubscriberOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    const c = counters(opts.registry);
    this.#received = c.received;
    this.#dropped = c.dropped;
  }

  /** Subscribes to every monitor on one node; idempotent. */
  watchNode(node: string): void {
    this.#subscribe(nodeSubject(node));
  }

  /** Unsubscribes from one node and forgets its monitors. */
  unwatchNode(node: string): void {
    const subject = nodeSubject(node);
    this.#subs.get(subject)?.unsubscribe();
    this.#subs.delete(subject);
    this.#forgetWhere((m) => m.node === node);
  }

  /** Subscribes to every monitor everywhere; for small clusters and tests. */
  watchAll(): void {
    this.#subscribe(ALL_MONITORS_SUBJECT);
  }

  #subscribe(subject: string): void {
    if (this.#subs.has(subject)) return;
    const sub = this.#opts.nc.subscribe(subject, {
      // A callback, not an async iterator: no per-message promise on the hot path.
      callback: (err: NatsError | null, msg: Msg) => {
        if (err) {
          this.#opts.log.warn({ err, subject }, "Failed to receive monitor samples");
          return;
        }
        this.handle(msg.subject, msg.data);
      },
    });
    this.#subs.set(subject, sub);
    this.#opts.log.info({ subject }, "Subscribed to monitor samples");
  }

  /** Verifies, counts and delivers one message. Public so benchmarks can drive it without NATS. */
  handle(subject: string, data: Uint8Array): VerifyResult {
    const now = this.#now();
    this.#received.inc();
    let result: VerifyResult;
    try {
      result = decodeAndVerify(data, subject, this.#opts.keyLookup, this.#replay, now);
    } catch {
      result = { ok: false, reason: "malformed" };
    }
    if (!result.ok) {
      this.#drop(result.reason, subject);
      return result;
    }
    const s = result.sample;
    const id = monitorId(s);
    const seen = this.#seen.get(id);
    if (seen) {
      seen.lastSeen = now;
      seen.intervalMs = s.intervalMs;
    } else {
      this.#seen.set(id, {
        node: s.node,
        namespace: s.namespace,
        pod: s.pod,
        podUid: s.podUid,
        container: s.container,
        lastSeen: now,
        intervalMs: s.intervalMs,
      });
    }
    try {
      this.#opts.onSample(s, now);
    } catch (err) {
      this.#opts.log.error({ err, subject }, "Failed to handle a monitor sample");
    }
    return result;
  }

  #drop(reason: DropReason, subject: string): void {
    this.#dropped.inc({ reason });
    // Debug only: a misbehaving pod must not be able to flood the operator's log.
    this.#opts.log.debug({ reason, subject: subject.slice(0, 300) }, "Dropped a monitor sample");
  }

  /** Monitors that have sent before but have been silent for more than three of their intervals. */
  staleMonitors(now: number): MonitorSeen[] {
    const out: MonitorSeen[] = [];
    for (const m of this.#seen.values()) {
      if (now - m.lastSeen > STALE_AFTER_INTERVALS * m.intervalMs) out.push({ ...m });
    }
    return out;
  }

  /** Drops what we know of a pod (it was deleted or migrated). */
  forgetPod(namespace: string, pod: string): void {
    this.#forgetWhere((m) => m.namespace === namespace && m.pod === pod);
  }

  #forgetWhere(match: (m: MonitorSeen) => boolean): void {
    for (const [id, m] of this.#seen) {
      if (!match(m)) continue;
      this.#seen.delete(id);
      this.#replay.delete(id);
    }
  }

  /** Unsubscribes from everything; the connection stays the caller's to drain or close. */
  close(): void {
    for (const sub of this.#subs.values()) sub.unsubscribe();
    this.#subs.clear();
  }
}
