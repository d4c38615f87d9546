// Ingest benchmark: simulated monitors publish through a real nats-server into the
// operator's receive path (MetricsSubscriber + DecisionEngine, as the operator wires
// them), in this process; we measure what it handles per core and how long a sample
// takes from publish to decision.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { connect } from "nats";
import { pino } from "pino";
import { Registry } from "prom-client";
import { MetricsSubscriber } from "../../operator/metrics/subscriber.ts";
import { MonitorKeys } from "../../operator/monitor/keys.ts";
import { startNats } from "../support/nats-server.ts";
import { repoRoot } from "../support/operator.ts";
import { benchEngine } from "./samples.ts";

const run = promisify(execFile);

export interface IngestResult {
  pods: number;
  seconds: number;
  handled: number;
  ratePerSec: number;
  cpuCores: number;
  perCore: number;
  p50Ms: number;
  p99Ms: number;
  rssMB: number;
  dropped: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

export async function runIngest(pods: number, seconds: number): Promise<IngestResult> {
  const nats = await startNats("bench-nats");
  const master = randomBytes(32);
  const nc = await connect({ servers: nats.url });
  const nodes = 100;
  const engine = benchEngine(nodes);
  const keys = new MonitorKeys(master);
  const latencies: number[] = [];
  let handled = 0;
  const registry = new Registry();
  const sub = new MetricsSubscriber({
    nc,
    registry,
    // As the operator does: the key of a known pod, derived once (operator/monitor/keys.ts).
    keyLookup: (id) => (id.namespace === "bench" ? keys.get(id) : undefined),
    onSample: (s, at) => {
      engine.observe(s, at);
      handled++;
      latencies.push(Date.now() - s.ts);
    },
    log: pino({ level: "warn" }),
  });
  sub.watchAll();
  await nc.flush();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(
    process.execPath,
    [
      join(repoRoot, "test/bench/publisher.ts"),
      nats.url,
      String(pods),
      String(seconds),
      String(nodes),
    ],
    {
      env: { ...process.env, BENCH_MASTER_KEY: master.toString("hex") },
    },
  );
  // Let in-flight messages drain.
  await new Promise((r) => setTimeout(r, 300));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuCores = (cpu.user + cpu.system) / 1e6 / wall;
  const rssMB = process.memoryUsage().rss / 2 ** 20;
  const dropped =
    (await registry.getSingleMetric("edgeshift_samples_dropped_total")?.get())?.values.reduce(
      (a, v) => a + v.value,
      0,
    ) ?? 0;
  sub.close();
  await nc.close();
  await nats.dispose();
  latencies.sort((a, b) => a - b);
  const ratePerSec = handled / wall;
  return {
    pods,
    seconds,
    handled,
    ratePerSec,
    cpuCores,
    perCore: ratePerSec / Math.max(cpuCores, 1e-9),
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    rssMB,
    dropped,
  };
}

if (import.meta.main) {
  for (const pods of [1000, 10_000]) console.log(JSON.stringify(await runIngest(pods, 10)));
}
