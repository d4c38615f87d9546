// What the ingest benchmarks share: the simulated monitors' identities and
// samples, and the decision engine configured as the operator would for them.
import { DecisionEngine } from "../../operator/decision/engine.ts";
import type { MonitorIdentity, Sample } from "../../sidecar/protocol.ts";

/** Monitor `i` of the simulated fleet, spread over `nodes` edge nodes. */
export function benchMonitor(i: number, nodes: number): MonitorIdentity {
  return {
    node: `edge-${i % nodes}`,
    namespace: "bench",
    pod: `pod-${i}`,
    podUid: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    container: "app",
  };
}

/** A 1 Hz sample below every threshold (nothing is decided: the whole path runs). */
export function benchSample(id: MonitorIdentity, seq: number, ts: number): Sample {
  return {
    v: 1,
    ...id,
    boot: 1,
    seq,
    ts,
    intervalMs: 1000,
    cpuCores: 0.2,
    cpuLimitCores: 1,
    cpuPercent: 20,
    memoryBytes: 50e6,
    memoryLimitBytes: 256e6,
    memoryPercent: 19.5,
  };
}

/** The engine with the bench EdgeNode's thresholds and `nodes` edge nodes. */
export function benchEngine(nodes: number): DecisionEngine {
  const engine = new DecisionEngine();
  engine.configure("bench", {
    samplingIntervalSeconds: 1,
    sustainedWindowSeconds: 10,
    breachPercent: 80,
    cooldownSeconds: 300,
    maxConcurrentMigrations: 1,
    thresholds: { cpu: { triggerPercent: 80 }, memory: { triggerPercent: 90 } },
    nodes: Object.fromEntries(
      Array.from({ length: nodes }, (_, i) => [`edge-${i}`, { cpuCores: 4, memoryBytes: 8e9 }]),
    ),
  });
  return engine;
}
