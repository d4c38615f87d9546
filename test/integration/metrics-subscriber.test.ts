// The operator's metrics subscriber against a real nats-server and hostile publishers.
import { connect, type NatsConnection } from "nats";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MetricsSubscriber } from "../../operator/metrics/subscriber.ts";
import {
  encodeSample,
  type Sample,
  type SignedSample,
  signSample,
  subjectFor,
} from "../../sidecar/protocol.ts";
import { waitUntil } from "../cluster/process.ts";
import { startNats, type TestNats } from "../support/nats-server.ts";

const key = Buffer.alloc(32, 0x11);
const wrongKey = Buffer.alloc(32, 0x22);
const UID = "c0ffee00-0000-4000-8000-000000000001";

function sample(over: Partial<Sample> = {}): Sample {
  return {
    v: 1,
    node: "edge-1",
    namespace: "shop",
    pod: "web-0",
    podUid: UID,
    container: "app",
    boot: 7,
    seq: 1,
    ts: Date.now(),
    intervalMs: 1000,
    cpuCores: 0.2,
    cpuLimitCores: 1,
    cpuPercent: 20,
    memoryBytes: 1e8,
    memoryLimitBytes: 1e9,
    memoryPercent: 10,
    ...over,
  };
}

const subjectOf = (s: Pick<Sample, "node" | "namespace" | "pod" | "container">) =>
  subjectFor(s.node, s.namespace, s.pod, s.container);

let nats: TestNats;
let subNc: NatsConnection;
let pubNc: NatsConnection;
let registry: Registry;
let delivered: SignedSample[];
let subscriber: MetricsSubscriber;

beforeAll(async () => {
  nats = await startNats("subscriber-nats");
  subNc = await connect({ servers: nats.url });
  pubNc = await connect({ servers: nats.url });
});

afterAll(async () => {
  subscriber?.close();
  await subNc?.close();
  await pubNc?.close();
  await nats?.dispose();
});

let clock: number | undefined;
beforeEach(async () => {
  subscriber?.close();
  registry = new Registry();
  delivered = [];
  clock = undefined;
  subscriber = new MetricsSubscriber({
    nc: subNc,
    registry,
    keyLookup: (id) => (id.podUid === UID ? key : undefined),
    onSample: (s) => {
      delivered.push(s);
    },
    log: pino({ level: "silent" }),
    now: () => clock ?? Date.now(),
  });
  subscriber.watchNode("edge-1");
  // The subscription is live once the server has processed it.
  await subNc.flush();
});

async function counts() {
  const metrics = await registry.getMetricsAsJSON();
  const received = metrics.find((m) => m.name === "edgeshift_samples_received_total");
  const dropped = metrics.find((m) => m.name === "edgeshift_samples_dropped_total");
  const byReason: Record<string, number> = {};
  for (const v of dropped?.values ?? []) byReason[String(v.labels.reason)] = v.value;
  return { received: received?.values[0]?.value ?? 0, dropped: byReason };
}

async function publish(subject: string, data: Uint8Array) {
  pubNc.publish(subject, data);
  await pubNc.flush();
}

describe("MetricsSubscriber", () => {
  it("drops each kind of bad message with its reason and still delivers a valid one after", async () => {
    const good = signSample(sample({ seq: 10 }), key);
    await publish(subjectOf(good), encodeSample(good));
    await waitUntil("first sample", async () => (delivered.length === 1 ? true : undefined), {
      timeoutMs: 5000,
      intervalMs: 20,
    });

    // Forged: signed with a key that is not this pod's.
    await publish(subjectOf(good), encodeSample(signSample(sample({ seq: 11 }), wrongKey)));
    // Wrong subject: a valid sample for web-0 sent on web-1's subject.
    const elsewhere = signSample(sample({ seq: 12 }), key);
    await publish(subjectOf({ ...elsewhere, pod: "web-1" }), encodeSample(elsewhere));
    // Replayed: the exact bytes of the sample already accepted.
    await publish(subjectOf(good), encodeSample(good));
    // Garbage.
    await publish(subjectOf(good), new Uint8Array([0x00, 0xff, 0x13, 0x37]));
    // 1 MB.
    await publish(subjectOf(good), new Uint8Array(1_000_000).fill(0x7b));
    // Signed by the right key, but for a pod we do not know.
    await publish(
      subjectOf(good),
      encodeSample(signSample(sample({ seq: 13, podUid: "someone-else" }), key)),
    );
    // Signed, but a minute old.
    await publish(
      subjectOf(good),
      encodeSample(signSample(sample({ seq: 14, ts: Date.now() - 60_000 }), key)),
    );
    // On another node's subject: not subscribed, never received.
    const other = signSample(sample({ node: "edge-2", seq: 15 }), key);
    await publish(subjectOf(other), encodeSample(other));

    const next = signSample(sample({ seq: 16 }), key);
    await publish(subjectOf(next), encodeSample(next));
    await waitUntil(
      "valid sample after the bad ones",
      async () => (delivered.length === 2 ? true : undefined),
      { timeoutMs: 5000, intervalMs: 20 },
    );

    expect(delivered.map((s) => s.seq)).toEqual([10, 16]);
    expect(delivered[1]).toEqual(next);
    expect(await counts()).toEqual({
      received: 9,
      dropped: { malformed: 3, bad_signature: 1, replayed: 1, stale: 1, unknown_pod: 1 },
    });
  });

  it("keeps going when the callback throws", async () => {
    const throwing = new MetricsSubscriber({
      nc: subNc,
      registry: new Registry(),
      keyLookup: () => key,
      onSample: () => {
        throw new Error("downstream broke");
      },
      log: pino({ level: "silent" }),
    });
    const s1 = signSample(sample({ seq: 1 }), key);
    expect(throwing.handle(subjectOf(s1), encodeSample(s1)).ok).toBe(true);
    const s2 = signSample(sample({ seq: 2 }), key);
    expect(throwing.handle(subjectOf(s2), encodeSample(s2)).ok).toBe(true);
  });

  it("shares counters when two subscribers use one registry", () => {
    expect(
      () =>
        new MetricsSubscriber({
          nc: subNc,
          registry,
          keyLookup: () => key,
          onSample: () => {},
          log: pino({ level: "silent" }),
        }),
    ).not.toThrow();
  });

  it("lists monitors silent for more than three intervals and forgets a pod", async () => {
    const t0 = Date.now();
    clock = t0;
    const a = signSample(sample({ ts: t0, seq: 1 }), key);
    const b = signSample(sample({ ts: t0, seq: 1, container: "sidecar", intervalMs: 5000 }), key);
    await publish(subjectOf(a), encodeSample(a));
    await publish(subjectOf(b), encodeSample(b));
    await waitUntil("two samples", async () => (delivered.length === 2 ? true : undefined), {
      timeoutMs: 5000,
      intervalMs: 20,
    });

    expect(subscriber.staleMonitors(t0 + 3000)).toEqual([]);
    const stale = subscriber.staleMonitors(t0 + 3001);
    expect(stale.map((m) => m.container)).toEqual(["app"]);
    expect(stale[0]).toMatchObject({
      node: "edge-1",
      namespace: "shop",
      pod: "web-0",
      podUid: UID,
      lastSeen: t0,
    });
    expect(
      subscriber
        .staleMonitors(t0 + 15_001)
        .map((m) => m.container)
        .sort(),
    ).toEqual(["app", "sidecar"]);

    subscriber.forgetPod("shop", "web-0");
    expect(subscriber.staleMonitors(t0 + 60_000)).toEqual([]);
    // Forgetting also resets replay tracking: a re-created monitor may start over.
    expect(subscriber.handle(subjectOf(a), encodeSample(a)).ok).toBe(true);
  });

  it("stops receiving a node once unwatched", async () => {
    subscriber.unwatchNode("edge-1");
    await subNc.flush();
    const s = signSample(sample({ seq: 1 }), key);
    await publish(subjectOf(s), encodeSample(s));
    await new Promise((r) => setTimeout(r, 200));
    expect((await counts()).received).toBe(0);
  });
});
