import { describe, expect, it } from "vitest";
import {
  canonicalSample,
  DROP_REASONS,
  decodeAndVerify,
  encodeSample,
  type KeyLookup,
  MAX_MESSAGE_BYTES,
  nodeSubject,
  parseSubject,
  type ReplayState,
  type Sample,
  signSample,
  subjectFor,
} from "./protocol.ts";

const key = Buffer.from("0123456789abcdef0123456789abcdef");
const otherKey = Buffer.from("fedcba9876543210fedcba9876543210");
const NOW = 1_800_000_000_000;

function sample(over: Partial<Sample> = {}): Sample {
  return {
    v: 1,
    node: "edge-1.example.com",
    namespace: "shop",
    pod: "web-7d4f.v2",
    podUid: "3f1c2a9e-1111-4222-8333-944445555666",
    container: "app",
    boot: 0xdeadbeef,
    seq: 1,
    ts: NOW,
    intervalMs: 1000,
    cpuCores: 0.5,
    cpuLimitCores: 2,
    cpuPercent: 25,
    memoryBytes: 100 * 2 ** 20,
    memoryLimitBytes: 400 * 2 ** 20,
    memoryPercent: 25,
    ...over,
  };
}

const lookup: KeyLookup = (id) => (id.podUid === sample().podUid ? key : undefined);

function subjectOf(s: Sample): string {
  return subjectFor(s.node, s.namespace, s.pod, s.container);
}

function verify(
  bytes: Uint8Array,
  subject: string,
  state: ReplayState = new Map(),
  now = NOW,
  keys: KeyLookup = lookup,
) {
  return decodeAndVerify(bytes, subject, keys, state, now);
}

function wire(s: Sample, k: Uint8Array = key): Uint8Array {
  return encodeSample(signSample(s, k));
}

describe("subjects", () => {
  it("replaces dots in names so every name is exactly one token", () => {
    expect(subjectFor("edge-1.example.com", "shop", "web.v2", "app")).toBe(
      "edgeshift.metrics.edge-1~example~com.shop.web~v2.app",
    );
    expect(nodeSubject("edge-1.example.com")).toBe("edgeshift.metrics.edge-1~example~com.>");
  });

  it("round-trips through parseSubject", () => {
    const s = subjectFor("edge-1.example.com", "kube.system", "web.v2", "app");
    expect(parseSubject(s)).toEqual({
      node: "edge-1.example.com",
      namespace: "kube.system",
      pod: "web.v2",
      container: "app",
    });
  });

  it.each([
    ["edgeshift.metrics.n.ns.pod"],
    ["edgeshift.metrics.n.ns.pod.c.extra"],
    ["other.metrics.n.ns.pod.c"],
    ["edgeshift.metrics.n..pod.c"],
    ["edgeshift.metrics.n.*.pod.c"],
    ["edgeshift.metrics.n.ns.>.c"],
    [""],
  ])("rejects %j", (subject) => {
    expect(parseSubject(subject)).toBeUndefined();
  });

  it.each([[""], ["a b"], ["a*"], ["a>"], ["a~b"]])(
    "refuses to build a subject from %j",
    (name) => {
      expect(() => subjectFor(name, "ns", "pod", "c")).toThrow();
    },
  );
});

describe("signing", () => {
  it("covers every field but the signature", () => {
    const signed = signSample(sample(), key);
    for (const field of Object.keys(sample()) as (keyof Sample)[]) {
      const tampered = { ...signed, [field]: field === "v" ? 2 : `${signed[field]}x` };
      expect(Buffer.from(canonicalSample(tampered as Sample))).not.toEqual(
        Buffer.from(canonicalSample(signed)),
      );
    }
  });

  it("does not depend on property order", () => {
    const s = sample();
    const reversed = Object.fromEntries(Object.entries(s).reverse()) as unknown as Sample;
    expect(signSample(reversed, key).sig).toBe(signSample(s, key).sig);
  });
});

describe("decodeAndVerify", () => {
  it("accepts a signed, fresh, new sample", () => {
    const s = sample();
    const r = verify(wire(s), subjectOf(s));
    expect(r).toEqual({ ok: true, sample: signSample(s, key) });
  });

  it.each<[string, () => [Uint8Array, string], string]>([
    ["garbage bytes", () => [new Uint8Array([0xff, 0x00, 0x7b]), subjectOf(sample())], "malformed"],
    ["JSON that is not a sample", () => [Buffer.from('{"v":1}'), subjectOf(sample())], "malformed"],
    ["a JSON array", () => [Buffer.from("[1,2]"), subjectOf(sample())], "malformed"],
    [
      "an oversized message",
      () => [new Uint8Array(MAX_MESSAGE_BYTES + 1).fill(32), subjectOf(sample())],
      "malformed",
    ],
    ["an unparseable subject", () => [wire(sample()), "edgeshift.metrics.x"], "malformed"],
    [
      "a subject naming another pod",
      () => [wire(sample()), subjectFor("edge-1.example.com", "shop", "other", "app")],
      "malformed",
    ],
    [
      "a subject naming another node",
      () => [wire(sample()), subjectFor("edge-2", "shop", "web-7d4f.v2", "app")],
      "malformed",
    ],
    [
      "an unknown field",
      () => {
        const s = { ...signSample(sample(), key), extra: 1 };
        return [Buffer.from(JSON.stringify(s)), subjectOf(s)];
      },
      "malformed",
    ],
    [
      "another protocol version",
      () => [wire({ ...sample(), v: 2 as 1 }), subjectOf(sample())],
      "malformed",
    ],
    ["seq 0", () => [wire(sample({ seq: 0 })), subjectOf(sample())], "malformed"],
    ["a fractional seq", () => [wire(sample({ seq: 1.5 })), subjectOf(sample())], "malformed"],
    ["a negative value", () => [wire(sample({ cpuCores: -1 })), subjectOf(sample())], "malformed"],
    ["a zero interval", () => [wire(sample({ intervalMs: 0 })), subjectOf(sample())], "malformed"],
    [
      "a pod we do not monitor",
      () => [wire(sample({ podUid: "nope" })), subjectOf(sample())],
      "unknown_pod",
    ],
    [
      "a signature by another key",
      () => [wire(sample(), otherKey), subjectOf(sample())],
      "bad_signature",
    ],
    [
      "a field changed after signing",
      () => {
        const s = { ...signSample(sample(), key), cpuPercent: 99 };
        return [encodeSample(s), subjectOf(s)];
      },
      "bad_signature",
    ],
    [
      "a truncated signature",
      () => {
        const s = signSample(sample(), key);
        return [encodeSample({ ...s, sig: `${s.sig.slice(0, 40)}AAAA` }), subjectOf(s)];
      },
      "bad_signature",
    ],
    [
      "a sample from the past",
      () => [wire(sample({ ts: NOW - 5001 })), subjectOf(sample())],
      "stale",
    ],
    [
      "a sample from the future",
      () => [wire(sample({ ts: NOW + 5001 })), subjectOf(sample())],
      "stale",
    ],
    [
      "a slow monitor's sample older than 3 intervals",
      () => [wire(sample({ intervalMs: 10_000, ts: NOW - 30_001 })), subjectOf(sample())],
      "stale",
    ],
  ])("drops %s", (_what, make, reason) => {
    const [bytes, subject] = make();
    const state: ReplayState = new Map();
    expect(verify(bytes, subject, state)).toEqual({ ok: false, reason });
    expect(state.size).toBe(0);
  });

  it("keeps a slow monitor's sample within 3 intervals", () => {
    const s = sample({ intervalMs: 10_000, ts: NOW - 29_000 });
    expect(verify(wire(s), subjectOf(s)).ok).toBe(true);
  });

  it("treats a throwing key lookup as an unknown pod", () => {
    const r = verify(wire(sample()), subjectOf(sample()), new Map(), NOW, () => {
      throw new Error("boom");
    });
    expect(r).toEqual({ ok: false, reason: "unknown_pod" });
  });

  it("drops a repeated or older sequence number of the same run", () => {
    const state: ReplayState = new Map();
    const subject = subjectOf(sample());
    expect(verify(wire(sample({ seq: 5 })), subject, state).ok).toBe(true);
    expect(verify(wire(sample({ seq: 5 })), subject, state)).toEqual({
      ok: false,
      reason: "replayed",
    });
    expect(verify(wire(sample({ seq: 4 })), subject, state)).toEqual({
      ok: false,
      reason: "replayed",
    });
    expect(verify(wire(sample({ seq: 7 })), subject, state).ok).toBe(true);
  });

  it("accepts a restarted monitor starting again at seq 1", () => {
    const state: ReplayState = new Map();
    const subject = subjectOf(sample());
    expect(verify(wire(sample({ seq: 900, ts: NOW - 1000 })), subject, state).ok).toBe(true);
    expect(verify(wire(sample({ boot: 42, seq: 1 })), subject, state).ok).toBe(true);
    expect(verify(wire(sample({ boot: 42, seq: 2, ts: NOW + 1 })), subject, state).ok).toBe(true);
  });

  it("drops an older run's sample replayed after a restart", () => {
    const state: ReplayState = new Map();
    const subject = subjectOf(sample());
    const old = wire(sample({ seq: 900, ts: NOW - 1000 }));
    expect(verify(old, subject, state).ok).toBe(true);
    expect(verify(wire(sample({ boot: 42, seq: 1 })), subject, state).ok).toBe(true);
    expect(verify(old, subject, state)).toEqual({ ok: false, reason: "replayed" });
  });

  it("keeps sequences of different monitors apart", () => {
    const state: ReplayState = new Map();
    const a = sample({ seq: 10 });
    const b = sample({ container: "sidecar", seq: 3 });
    expect(verify(wire(a), subjectOf(a), state).ok).toBe(true);
    expect(verify(wire(b), subjectOf(b), state).ok).toBe(true);
    expect(state.size).toBe(2);
  });

  it("does not advance the sequence on a rejected message", () => {
    const state: ReplayState = new Map();
    const subject = subjectOf(sample());
    expect(verify(wire(sample({ seq: 9 }), otherKey), subject, state).ok).toBe(false);
    expect(verify(wire(sample({ seq: 2 })), subject, state).ok).toBe(true);
  });

  it("names only known reasons", () => {
    expect([...DROP_REASONS].sort()).toEqual(
      ["bad_signature", "malformed", "replayed", "stale", "unknown_pod"].sort(),
    );
  });
});

describe("the application metric in a sample", () => {
  it("is signed with the rest when present, and a sample without it signs as before", () => {
    const plain = sample();
    const withApp = sample({ appStatus: "ok", appValue: 12.5 });
    expect(new TextDecoder().decode(canonicalSample(plain))).not.toContain("ok");
    expect(new TextDecoder().decode(canonicalSample(withApp))).toMatch(/,"ok",12\.5\]$/);
    for (const s of [plain, withApp, sample({ appStatus: "scrape_failed" })]) {
      const r = verify(wire(s), subjectOf(s));
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.sample.appValue).toBe(s.appValue);
    }
  });

  it("a value changed in transit fails the signature", () => {
    const signed = signSample(sample({ appStatus: "ok", appValue: 12.5 }), key);
    const forged = encodeSample({ ...signed, appValue: 1000 });
    expect(verify(forged, subjectOf(sample()))).toEqual({ ok: false, reason: "bad_signature" });
    const dropped = encodeSample({ ...signed, appStatus: undefined, appValue: undefined });
    expect(verify(dropped, subjectOf(sample()))).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("is malformed with an unknown status, a value without ok, or ok without a finite value", () => {
    const bad: Partial<Sample>[] = [
      { appStatus: "great" as never, appValue: 1 },
      { appStatus: "absent", appValue: 1 },
      { appStatus: "ok" },
      { appValue: 3 },
    ];
    for (const over of bad) {
      const signed = signSample(sample(), key);
      const bytes = new TextEncoder().encode(JSON.stringify({ ...signed, ...over }));
      expect(verify(bytes, subjectOf(sample())), JSON.stringify(over)).toEqual({
        ok: false,
        reason: "malformed",
      });
    }
  });
});
