import {
  ApiException,
  type CoordinationV1Api,
  type V1Lease,
  V1MicroTime,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { withSignal } from "./request.ts";

export interface LeaderElectionOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called once when a held lease was not renewed within renewDeadline (not on release). */
  onStoppedLeading: () => void;
}

/**
 * Lease-based leader election with client-go's rules: a lease held by someone
 * else is taken only after it went unrenewed for leaseDuration as observed on
 * our own clock (no trust in other clocks); the leader renews every retryPeriod
 * and gives up leadership as soon as it has not renewed for renewDeadline.
 *
 * The renew deadline holds even when the API server never answers: every
 * request is aborted when the deadline passes, and a watchdog timer, armed at
 * each successful renew and independent of any request, stops leading at the
 * deadline whatever a request is doing. Because the deadline is counted from
 * before the request that renewed (the lease's renewTime, from which a standby
 * counts leaseDuration, is no earlier), the old leader has stopped
 * leaseDuration - renewDeadline before a standby can take over.
 */
export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private inFlight: AbortController | undefined;
  private observed: { holder: string; renewTime: string; at: number } | undefined;
  private lastRenew = 0;

  constructor(opts: LeaderElectionOptions) {
    this.o = opts;
  }

  /** True only while the last renew is younger than the renew deadline, even if a timer is late. */
  get isLeader(): boolean {
    return this.leading && Date.now() < this.lastRenew + this.o.renewDeadlineMs;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.o.retryPeriodMs);
  }

  private async tick(): Promise<void> {
    const started = Date.now();
    // A leader's attempt may last until its renew deadline, a candidate's one renew deadline.
    const deadline = (this.leading ? this.lastRenew : started) + this.o.renewDeadlineMs;
    const attempt = new AbortController();
    this.inFlight = attempt;
    const timeout = setTimeout(
      () =>
        attempt.abort(
          new Error(`Lease request outlived the renew deadline (${this.o.renewDeadlineMs} ms)`),
        ),
      Math.max(0, deadline - started),
    );
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew(attempt.signal);
    } catch (err) {
      if (!this.stopped) this.o.log.warn({ err }, "Failed to acquire or renew the lease");
    } finally {
      clearTimeout(timeout);
      if (this.inFlight === attempt) this.inFlight = undefined;
    }
    if (this.stopped) return;
    if (ok) {
      this.lastRenew = started;
      this.armWatchdog();
      if (!this.leading) {
        this.leading = true;
        this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}` }, "Became leader");
        this.o.onStartedLeading();
      }
    } else if (this.leading && Date.now() >= this.lastRenew + this.o.renewDeadlineMs) {
      this.stopLeading();
      return;
    }
    this.schedule();
  }

  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () => this.stopLeading(),
      Math.max(0, this.lastRenew + this.o.renewDeadlineMs - Date.now()),
    );
  }

  /** The renew deadline passed without a renew: stop everything and say so, once. */
  private stopLeading(): void {
    if (this.stopped || !this.leading) return;
    this.stopped = true;
    this.leading = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    this.inFlight?.abort(new Error("Stopped leading"));
    this.o.log.error(
      {
        lease: `${this.o.namespace}/${this.o.name}`,
        renewDeadlineMs: this.o.renewDeadlineMs,
        sinceRenewMs: Date.now() - this.lastRenew,
      },
      "Lost the lease: not renewed within the renew deadline",
    );
    this.o.onStoppedLeading();
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const options = withSignal(signal);
    const { api, namespace, name, identity } = this.o;
    const now = new V1MicroTime();
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace }, options);
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) {
        await api.createNamespacedLease(
          {
            namespace,
            body: {
              metadata: { name, namespace },
              spec: {
                holderIdentity: identity,
                leaseDurationSeconds: durationSeconds,
                acquireTime: now,
                renewTime: now,
                leaseTransitions: 0,
              },
            },
          },
          options,
        );
        return true;
      }
      throw err;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const renewTime = spec.renewTime ? new Date(spec.renewTime).toISOString() : "";
    if (
      !this.observed ||
      this.observed.holder !== holder ||
      this.observed.renewTime !== renewTime
    ) {
      this.observed = { holder, renewTime, at: Date.now() };
    }
    const heldByOther = holder !== "" && holder !== identity;
    const leaseMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && this.observed.at + leaseMs > Date.now()) return false;
    const transitions = (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    try {
      await api.replaceNamespacedLease(
        {
          name,
          namespace,
          body: {
            metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime:
                holder === identity && spec.acquireTime ? new V1MicroTime(spec.acquireTime) : now,
              renewTime: now,
              leaseTransitions: transitions,
            },
          },
        },
        options,
      );
    } catch (err) {
      // Someone else wrote the lease first: not ours this round.
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
    return true;
  }

  /** Stops; a leader hands the lease back so a standby takes over without waiting. */
  async release(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    this.inFlight?.abort(new Error("Released the lease"));
    if (!this.leading) return;
    this.leading = false;
    const { api, namespace, name, identity } = this.o;
    // Bounded like a renew: shutdown must not hang on a silent API server.
    const options = withSignal(AbortSignal.timeout(this.o.renewDeadlineMs));
    try {
      const lease = await api.readNamespacedLease({ name, namespace }, options);
      if (lease.spec?.holderIdentity === identity) {
        await api.replaceNamespacedLease(
          {
            name,
            namespace,
            body: {
              metadata: { name, namespace, resourceVersion: lease.metadata?.resourceVersion },
              spec: {
                ...lease.spec,
                holderIdentity: "",
                leaseDurationSeconds: 1,
                renewTime: new V1MicroTime(),
              },
            },
          },
          options,
        );
        this.o.log.info("Released the lease");
      }
    } catch (err) {
      this.o.log.warn({ err }, "Failed to release the lease");
    }
  }
}
