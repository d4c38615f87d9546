import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { AppReading } from "./app-metric.ts";
import { Monitor, type MonitorDeps } from "./monitor.ts";
import { decodeAndVerify, type SignedSample } from "./protocol.ts";

const key = Buffer.alloc(16, 7);
const config = {
  node: "n",
  namespace: "ns",
  pod: "p",
  podUid: "u",
  container: "c",
  intervalMs: 1000,
  cpuLimitCores: 1,
  memoryLimitBytes: 2 ** 30,
  signingKey: key,
};

/** Runs a monitor (10 ms interval) until it has published `count` samples: those, verified. */
async function published(app: MonitorDeps["app"], count: number) {
  const out: SignedSample[] = [];
  let t = 1_800_000_000_000;
  const m = new Monitor({
    config: { ...config, intervalMs: 10 },
    log: pino({ level: "silent" }),
    measure: () => ({ targets: 1, cpuCores: 0.25, memoryBytes: 2 ** 20, source: "proc" }),
    publish: (subject, data) => {
      const r = decodeAndVerify(data, subject, () => key, new Map(), t);
      if (r.ok) out.push(r.sample);
      return true;
    },
    now: () => (t += 10),
    app,
  });
  m.start();
  for (let waited = 0; out.length < count && waited < 10_000; waited += 5)
    await new Promise((r) => setTimeout(r, 5));
  m.stop();
  return out;
}

describe("the monitor's application metric", () => {
  it("signs the latest reading into each sample, first before any, and starts a scrape each tick", async () => {
    const readings: (AppReading | undefined)[] = [
      undefined,
      { status: "first" },
      { status: "ok", value: 42 },
    ];
    let scrapes = 0;
    const samples = await published(
      {
        take: () => readings[Math.min(scrapes, readings.length - 1)],
        scrape: async () => {
          scrapes++;
        },
      },
      4,
    );
    expect(samples).toHaveLength(4);
    expect(samples[0]?.appStatus).toBe("first");
    expect(samples[0]?.appValue).toBeUndefined();
    expect(samples.at(-1)).toMatchObject({ appStatus: "ok", appValue: 42 });
    expect(scrapes).toBeGreaterThanOrEqual(samples.length);
  });

  it("carries nothing of it without one", async () => {
    const samples = await published(undefined, 3);
    expect(samples).toHaveLength(3);
    for (const s of samples) expect("appStatus" in s).toBe(false);
  });
});
