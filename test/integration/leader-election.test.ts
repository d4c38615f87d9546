// Leader election against the real API server when the leader's connection
// goes silent: a black-holed route (no reset, no error, no answer) must not
// keep the old leader working while a standby takes the lease.
import { CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterAll, describe, expect, inject, it } from "vitest";
import { LeaderElector } from "../../operator/kube/leader.ts";
import { withSignal } from "../../operator/kube/request.ts";
import { BlackHoleRelay } from "../support/black-hole-relay.ts";
import { ignoreNotFound, loadKubeConfig, uniqueName, waitFor } from "../support/kube.ts";

const kubeconfig = inject("kubeconfig");
const server = new URL(inject("kubeServer"));
const NAMESPACE = "default";
const LEASE_DURATION_MS = 6_000;
const RENEW_DEADLINE_MS = 3_000;
const RETRY_PERIOD_MS = 500;
// What the renew deadline may be exceeded by on a shared machine (timers, GC).
const MARGIN_MS = 2_000;

const direct = loadKubeConfig(kubeconfig);
const coordination = direct.makeApiClient(CoordinationV1Api);
const relays: BlackHoleRelay[] = [];
const electors: LeaderElector[] = [];
const leases: string[] = [];

/** The admin kubeconfig with its server replaced by `url`. */
function kubeConfigVia(url: string): KubeConfig {
  const kc = new KubeConfig();
  const cluster = direct.getCurrentCluster();
  if (!cluster) throw new Error("kubeconfig has no current cluster");
  kc.loadFromOptions({
    clusters: direct.clusters.map((c) => (c.name === cluster.name ? { ...c, server: url } : c)),
    users: direct.users,
    contexts: direct.contexts,
    currentContext: direct.currentContext,
  });
  return kc;
}

function elector(kc: KubeConfig, lease: string, identity: string, events: string[]): LeaderElector {
  const e = new LeaderElector({
    api: kc.makeApiClient(CoordinationV1Api),
    namespace: NAMESPACE,
    name: lease,
    identity,
    leaseDurationMs: LEASE_DURATION_MS,
    renewDeadlineMs: RENEW_DEADLINE_MS,
    retryPeriodMs: RETRY_PERIOD_MS,
    log: pino({ level: "silent" }),
    onStartedLeading: () => events.push(`${identity} started`),
    onStoppedLeading: () => events.push(`${identity} stopped`),
  });
  electors.push(e);
  return e;
}

/** A relay of this test's own in front of the API server. */
async function newRelay(): Promise<BlackHoleRelay> {
  const relay = new BlackHoleRelay({ host: server.hostname, port: Number(server.port) });
  relays.push(relay);
  await relay.start();
  return relay;
}

afterAll(async () => {
  // The relays first: an elector stuck on a black-holed request would hang release().
  for (const r of relays) await r.stop();
  for (const e of electors) await e.release();
  for (const name of leases) {
    await ignoreNotFound(coordination.deleteNamespacedLease({ name, namespace: NAMESPACE }));
  }
});

describe("leader election on a black-holed API connection", () => {
  it("stops leading within the renew deadline, before a standby takes the lease, and stops asking", async () => {
    const lease = uniqueName("le-blackhole");
    leases.push(lease);
    const events: string[] = [];
    const relay = await newRelay();
    const leader = elector(
      kubeConfigVia(`https://127.0.0.1:${relay.port}`),
      lease,
      "leader",
      events,
    );
    const standby = elector(direct, lease, "standby", events);

    leader.start();
    await waitFor(() => leader.isLeader, { timeoutMs: 10_000, description: "the leader to lead" });
    standby.start();
    await waitFor(
      async () =>
        (await coordination.readNamespacedLease({ name: lease, namespace: NAMESPACE })).spec
          ?.holderIdentity === "leader",
      { description: "the lease to name the leader" },
    );

    relay.blackHole();
    await waitFor(() => events.includes("leader stopped"), {
      timeoutMs: RENEW_DEADLINE_MS + MARGIN_MS,
      description: "the black-holed leader to report that it stopped leading",
    });
    expect(leader.isLeader).toBe(false);

    await waitFor(() => standby.isLeader, {
      timeoutMs: LEASE_DURATION_MS + 10_000,
      description: "the standby to take the lease",
    });
    // Never two leaders: the old one had stopped before the standby started.
    expect(events).toEqual(["leader started", "leader stopped", "standby started"]);
    expect(
      (await coordination.readNamespacedLease({ name: lease, namespace: NAMESPACE })).spec
        ?.holderIdentity,
    ).toBe("standby");

    // Stopped for good: no more requests after it gave up.
    const dialled = relay.accepted;
    await new Promise((r) => setTimeout(r, 4 * RETRY_PERIOD_MS));
    expect(relay.accepted).toBe(dialled);
  });

  it("ends a request on the black-holed connection with the caller's abort reason", async () => {
    // What bounds each lease request: without it the request would end only
    // when undici gives up dialling (10 s) or waiting for headers (300 s),
    // and with undici's error, not ours.
    const relay = await newRelay();
    relay.blackHole();
    const api = kubeConfigVia(`https://127.0.0.1:${relay.port}`).makeApiClient(CoordinationV1Api);
    const deadline = new AbortController();
    const reason = new Error("renew deadline passed");
    const request = api.readNamespacedLease(
      { name: "any", namespace: NAMESPACE },
      withSignal(deadline.signal),
    );
    const settled = request.then(
      () => "answered",
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 500));
    deadline.abort(reason);
    expect(await settled).toBe(reason);
  });
});
