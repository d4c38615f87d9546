// The real monitor process publishing to a real nats-server.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "nats";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  decodeAndVerify,
  type ReplayState,
  type SignedSample,
  subjectFor,
} from "../../sidecar/protocol.ts";
import { type Managed, startProcess, stopProcess, tailLog, waitUntil } from "../cluster/process.ts";
import { startNats, type TestNats } from "../support/nats-server.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const KEY_HEX = "5f".repeat(32);
const key = Buffer.from(KEY_HEX, "hex");
const identity = {
  node: "edge-1.lab",
  namespace: "shop",
  pod: "web-0",
  podUid: "0b7e1c7a-5d5e-4c1e-9d7e-2f0a1b2c3d4e",
  container: "app",
};
const subject = subjectFor(identity.node, identity.namespace, identity.pod, identity.container);

let nats: TestNats;
let nc: NatsConnection;
const running: Managed[] = [];
const targets: ChildProcess[] = [];

beforeAll(async () => {
  nats = await startNats("monitor-nats");
  nc = await connect({
    servers: nats.url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 200,
  });
});

afterAll(async () => {
  await nc?.close();
  await nats?.dispose();
});

afterEach(async () => {
  for (const p of running.splice(0)) await stopProcess(p, 1000);
  for (const t of targets.splice(0)) {
    if (t.exitCode === null && t.signalCode === null) {
      t.kill("SIGKILL");
      await once(t, "exit");
    }
  }
});

function target(script: string): ChildProcess {
  const t = spawn(process.execPath, ["-e", script], { stdio: "ignore" });
  targets.push(t);
  return t;
}

function startMonitor(rootPid: number, intervalSeconds: number): Managed {
  const m = startProcess("monitor", process.execPath, ["sidecar/main.ts"], {
    logDir: nats.logDir,
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      EDGESHIFT_NATS_URL: nats.url,
      EDGESHIFT_NODE: identity.node,
      EDGESHIFT_NAMESPACE: identity.namespace,
      EDGESHIFT_POD: identity.pod,
      EDGESHIFT_POD_UID: identity.podUid,
      EDGESHIFT_CONTAINER: identity.container,
      EDGESHIFT_INTERVAL_SECONDS: String(intervalSeconds),
      EDGESHIFT_CPU_LIMIT_CORES: "2",
      EDGESHIFT_MEMORY_LIMIT_BYTES: String(512 * 2 ** 20),
      EDGESHIFT_SIGNING_KEY: KEY_HEX,
      EDGESHIFT_ROOT_PID: String(rootPid),
    },
  });
  running.push(m);
  return m;
}

interface Received {
  at: number;
  sample: SignedSample;
}

/** Subscribes to the monitor's subject and verifies every message as the operator would. */
function collect(): { samples: Received[]; rejected: string[]; stop: () => void } {
  const samples: Received[] = [];
  const rejected: string[] = [];
  const state: ReplayState = new Map();
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      const at = Date.now();
      const r = decodeAndVerify(
        msg.data,
        msg.subject,
        (id) => (id.podUid === identity.podUid ? key : undefined),
        state,
        at,
      );
      if (r.ok) samples.push({ at, sample: r.sample });
      else rejected.push(r.reason);
    },
  });
  return { samples, rejected, stop: () => sub.unsubscribe() };
}

async function waitForSamples(
  c: { samples: Received[] },
  n: number,
  alive: Managed[],
  timeoutMs = 20_000,
) {
  await waitUntil(`${n} samples`, async () => (c.samples.length >= n ? true : undefined), {
    timeoutMs,
    alive,
  });
}

describe("monitor process", () => {
  it("publishes signed samples with increasing seq and exits 0 on SIGTERM", async () => {
    const burner = target("for(;;){}");
    const c = collect();
    const monitor = startMonitor(burner.pid ?? 0, 0.5);
    try {
      await waitForSamples(c, 4, [monitor]);
    } finally {
      c.stop();
    }
    expect(c.rejected).toEqual([]);
    const seqs = c.samples.map((r) => r.sample.seq);
    expect(seqs.slice(0, 4)).toEqual([
      seqs[0],
      (seqs[0] ?? 0) + 1,
      (seqs[0] ?? 0) + 2,
      (seqs[0] ?? 0) + 3,
    ]);
    expect(new Set(c.samples.map((r) => r.sample.boot)).size).toBe(1);
    for (const { sample } of c.samples) {
      expect(sample).toMatchObject({ ...identity, v: 1, intervalMs: 500, cpuLimitCores: 2 });
      // One busy core against a 2-core limit (on a loaded 2-core machine it may get less
      // than a whole core; an idle process reads ~0).
      expect(sample.cpuCores).toBeGreaterThan(0.25);
      expect(sample.cpuPercent).toBeCloseTo((sample.cpuCores / 2) * 100, 1);
      expect(sample.memoryBytes).toBeGreaterThan(10 * 2 ** 20);
      expect(sample.memoryPercent).toBeCloseTo((sample.memoryBytes / (512 * 2 ** 20)) * 100, 1);
    }

    monitor.child.kill("SIGTERM");
    expect(await monitor.exited).toBe(0);
    const log = await readFile(monitor.logPath, "utf8");
    expect(log).toContain("Stopped monitor");
    expect(log).not.toContain(KEY_HEX);
  });

  it("exits 0 by itself once its target processes are gone", async () => {
    const idle = target("setInterval(()=>{},1000)");
    const c = collect();
    const monitor = startMonitor(idle.pid ?? 0, 0.2);
    try {
      await waitForSamples(c, 1, [monitor]);
    } finally {
      c.stop();
    }
    idle.kill("SIGKILL");
    const code = await Promise.race([
      monitor.exited,
      new Promise((r) => setTimeout(() => r("still running"), 10_000)),
    ]);
    expect(code).toBe(0);
    expect(await tailLog(monitor, 5)).toContain("Target processes exited");
  });

  it("drops samples while NATS is down instead of sending them late", async () => {
    const idle = target("setInterval(()=>{},1000)");
    const c = collect();
    const monitor = startMonitor(idle.pid ?? 0, 0.25);
    try {
      await waitForSamples(c, 2, [monitor]);
      await nats.stop();
      const downFor = 2500;
      await new Promise((r) => setTimeout(r, downFor));
      const before = c.samples.length;
      const lastSeq = c.samples.at(-1)?.sample.seq ?? 0;
      // Every sample taken before this moment was taken while NATS was down.
      const restartAt = Date.now();
      await nats.start();
      await waitForSamples(c, before + 3, [monitor], 30_000);

      const after = c.samples.slice(before);
      // Nothing from the outage arrives after it: every sample was taken once NATS was back.
      for (const r of after) expect(r.sample.ts).toBeGreaterThanOrEqual(restartAt);
      // And the outage left a gap in the sequence: those samples were dropped, not queued.
      expect((after[0]?.sample.seq ?? 0) - lastSeq).toBeGreaterThan(downFor / 250 / 2);
      expect(c.rejected).toEqual([]);
      expect(await readFile(monitor.logPath, "utf8")).toContain(
        "Resumed publishing after dropping samples",
      );
    } finally {
      c.stop();
    }
  });
});
