import {
  ApiException,
  type CoordinationV1Api,
  type V1Lease,
  V1MicroTime,
} from "@kubernetes/client-node";
import type { Logger } from "pino";

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
  /** Called once when a held lease could not be renewed in time, or on release. */
  onStoppedLeading: () => void;
}

/**
 * Lease-based leader election with client-go's rules: a lease held by someone
 * else is taken only after it went unrenewed for leaseDuration as observed on
 * our own clock (no trust in other clocks); the leader renews every retryPeriod
 * and gives up leadership as soon as it has not renewed for renewDeadline.
 */
export class LeaderElector {
  private readonly o: LeaderElectionOptions;
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observed: { holder: string; renewTime: string; at: number } | undefined;
  private lastRenew = 0;

  constructor(opts: LeaderElectionOptions) {
    this.o = opts;
  }

  get isLeader(): boolean {
    return this.leading;
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
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      this.o.log.warn({ err }, "Failed to acquire or renew the lease");
    }
    if (this.stopped) return;
    const now = Date.now();
    if (ok) {
      this.lastRenew = now;
      if (!this.leading) {
        this.leading = true;
        this.o.log.info({ lease: `${this.o.namespace}/${this.o.name}` }, "Became leader");
        this.o.onStartedLeading();
      }
    } else if (this.leading && now - this.lastRenew > this.o.renewDeadlineMs) {
      this.leading = false;
      this.o.log.error("Lost the lease");
      this.stopped = true;
      this.o.onStoppedLeading();
      return;
    }
    this.schedule();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.o;
    const now = new V1MicroTime();
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) {
        await api.createNamespacedLease({
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
        });
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
      await api.replaceNamespacedLease({
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
      });
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
    if (!this.leading) return;
    this.leading = false;
    const { api, namespace, name, identity } = this.o;
    try {
      const lease = await api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity === identity) {
        await api.replaceNamespacedLease({
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
        });
        this.o.log.info("Released the lease");
      }
    } catch (err) {
      this.o.log.warn({ err }, "Failed to release the lease");
    }
  }
}
