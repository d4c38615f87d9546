import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  decodeAndVerify,
  encodeSample,
  type ReplayState,
  signSample,
  subjectFor,
} from "../../sidecar/protocol.ts";
import { MonitorKeys, monitorKey } from "./keys.ts";

const id = (pod: string, podUid: string, container = "app") => ({
  node: "edge-1",
  namespace: "ns",
  pod,
  podUid,
  container,
});

describe("MonitorKeys", () => {
  it("holds the same key the monitor's Secret gets, derived once per monitor", () => {
    const master = randomBytes(32);
    const keys = new MonitorKeys(master);
    const a = id("a", "uid-a");
    const k = keys.get(a);
    expect(k.export()).toEqual(monitorKey(master, "uid-a", "app"));
    expect(keys.get({ ...a })).toBe(k);
    expect(keys.get(id("a", "uid-a", "side")).export()).toEqual(
      monitorKey(master, "uid-a", "side"),
    );
    expect(keys.get(id("a", "uid-a2")).export()).not.toEqual(k.export());
    expect(keys.size).toBe(3);
  });

  it("verifies what a monitor signed with its raw key, and refuses another pod's signature", () => {
    const master = randomBytes(32);
    const keys = new MonitorKeys(master);
    const a = id("a", "uid-a");
    const sample = {
      v: 1 as const,
      ...a,
      boot: 1,
      seq: 1,
      ts: Date.now(),
      intervalMs: 1000,
      cpuCores: 0.1,
      cpuLimitCores: 1,
      cpuPercent: 10,
      memoryBytes: 1e6,
      memoryLimitBytes: 1e7,
      memoryPercent: 10,
    };
    const subject = subjectFor(a.node, a.namespace, a.pod, a.container);
    const signed = encodeSample(signSample(sample, monitorKey(master, "uid-a", "app")));
    const state: ReplayState = new Map();
    expect(decodeAndVerify(signed, subject, (m) => keys.get(m), state, Date.now()).ok).toBe(true);
    const forged = encodeSample(
      signSample({ ...sample, seq: 2 }, monitorKey(master, "uid-b", "app")),
    );
    expect(decodeAndVerify(forged, subject, (m) => keys.get(m), state, Date.now())).toEqual({
      ok: false,
      reason: "bad_signature",
    });
  });

  it("prunes the monitors of pods that went", () => {
    const keys = new MonitorKeys(randomBytes(32));
    keys.get(id("a", "uid-a"));
    keys.get(id("b", "uid-b"));
    keys.get(id("b", "uid-b", "side"));
    expect(keys.prune((m) => m.pod === "a")).toBe(2);
    expect(keys.size).toBe(1);
    expect(keys.prune(() => true)).toBe(0);
  });
});
