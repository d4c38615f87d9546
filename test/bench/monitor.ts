// The monitor's own footprint and its reaction path: the real sidecar process
// sampling a real process, publishing to a real nats-server, received by the
// operator's subscriber and decision engine.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "nats";
import { pino } from "pino";
import { Registry } from "prom-client";
import { DecisionEngine } from "../../operator/decision/engine.ts";
import { MetricsSubscriber } from "../../operator/metrics/subscriber.ts";
import { startNats } from "../support/nats-server.ts";
import { repoRoot } from "../support/operator.ts";

const KEY = "7a".repeat(32);
const LOAD = `
let busy = false;
process.on("SIGUSR1", () => { busy = true; });
setInterval(() => { const end = Date.now() + 95; while (busy && Date.now() < end) {} }, 100);
`;

function startMonitor(
  natsUrl: string,
  targetPid: number,
  pod: string,
  intervalSeconds: number,
  command: string[] = [join(repoRoot, "sidecar/main.ts")],
): ChildProcess {
  return spawn(process.execPath, command, {
    env: {
      PATH: process.env.PATH,
      EDGESHIFT_NATS_URL: natsUrl,
      EDGESHIFT_NODE: "edge-1",
      EDGESHIFT_NAMESPACE: "bench",
      EDGESHIFT_POD: pod,
      EDGESHIFT_POD_UID: `uid-${pod}`,
      EDGESHIFT_CONTAINER: "app",
      EDGESHIFT_INTERVAL_SECONDS: String(intervalSeconds),
      EDGESHIFT_CPU_LIMIT_CORES: "1",
      EDGESHIFT_MEMORY_LIMIT_BYTES: String(512 * 2 ** 20),
      EDGESHIFT_SIGNING_KEY: KEY,
      EDGESHIFT_ROOT_PID: String(targetPid),
      EDGESHIFT_LOG_LEVEL: "warn",
    },
    stdio: "ignore",
  });
}

function procStats(pid: number): { cpuSec: number; rssMB: number; hwmMB: number; anonMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return {
    cpuSec: ticks / 100,
    rssMB: kb("VmRSS") / 1024,
    hwmMB: kb("VmHWM") / 1024,
    anonMB: kb("RssAnon") / 1024,
  };
}

async function kill(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill("SIGKILL");
  await once(p, "exit");
}

export interface FootprintResult {
  seconds: number;
  samples: number;
  rssMB: number;
  peakRssMB: number;
  /** Private memory; the rest of RSS is the node binary's file pages, shared by every monitor on a node. */
  anonMB: number;
  cpuPercentOfCore: number;
  cpuMsPerSample: number;
}

/** RSS and CPU of one monitor at 1 sample/s over `seconds` (after a 3 s warm-up). */
export async function monitorFootprint(
  seconds: number,
  command?: string[],
): Promise<FootprintResult> {
  const nats = await startNats("bench-mon-nats");
  const nc = await connect({ servers: nats.url });
  let samples = 0;
  nc.subscribe("edgeshift.metrics.>", { callback: () => samples++ });
  const target = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], {
    stdio: "ignore",
  });
  const mon = startMonitor(nats.url, target.pid ?? 0, "footprint", 1, command);
  await new Promise((r) => setTimeout(r, 3000));
  const before = procStats(mon.pid ?? 0);
  const s0 = samples;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = procStats(mon.pid ?? 0);
  const n = samples - s0;
  await kill(mon);
  await kill(target);
  await nc.close();
  await nats.dispose();
  const cpu = after.cpuSec - before.cpuSec;
  return {
    seconds,
    samples: n,
    rssMB: after.rssMB,
    peakRssMB: after.hwmMB,
    anonMB: after.anonMB,
    cpuPercentOfCore: (cpu / seconds) * 100,
    cpuMsPerSample: n ? (cpu * 1000) / n : Number.NaN,
  };
}

/** Time from the start of a sustained breach to the engine's decision, for one window. */
export async function reaction(windowSeconds: number): Promise<number> {
  const nats = await startNats("bench-react-nats");
  const nc = await connect({ servers: nats.url });
  const engine = new DecisionEngine();
  engine.configure("bench", {
    samplingIntervalSeconds: 1,
    sustainedWindowSeconds: windowSeconds,
    breachPercent: 80,
    cooldownSeconds: 300,
    maxConcurrentMigrations: 1,
    thresholds: { cpu: { triggerPercent: 50 } },
    nodes: { "edge-1": { cpuCores: 4, memoryBytes: 8e9 } },
  });
  let decidedAt = 0;
  const sub = new MetricsSubscriber({
    nc,
    registry: new Registry(),
    keyLookup: () => Buffer.from(KEY, "hex"),
    onSample: (s, at) => {
      if (engine.observe(s, at).length && !decidedAt) decidedAt = Date.now();
    },
    log: pino({ level: "warn" }),
  });
  sub.watchAll();
  const load = spawn(process.execPath, ["-e", LOAD], { stdio: "ignore" });
  const mon = startMonitor(nats.url, load.pid ?? 0, `react-${windowSeconds}`, 1);
  await new Promise((r) => setTimeout(r, 2500));
  const start = Date.now();
  load.kill("SIGUSR1");
  while (!decidedAt && Date.now() - start < (windowSeconds + 10) * 1000)
    await new Promise((r) => setTimeout(r, 20));
  await kill(mon);
  await kill(load);
  sub.close();
  await nc.close();
  await nats.dispose();
  return decidedAt ? decidedAt - start : Number.NaN;
}

if (import.meta.main) {
  console.log(JSON.stringify(await monitorFootprint(20)));
  for (const w of [3, 5]) console.log(w, await reaction(w));
}
