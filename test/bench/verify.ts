// The receive path without NATS: MetricsSubscriber.handle() and the decision
// engine over pre-signed samples of 10,000 monitors, in this process, with two
// ways to find a monitor's key, measured alternately in the same run: the
// operator's MonitorKeys (derived once, a KeyObject) and the baseline the
// operator used before (the key derived again for every sample, a Buffer).
// What is left is the cost per sample of verification and decision.
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { Registry } from "prom-client";
import { MetricsSubscriber } from "../../operator/metrics/subscriber.ts";
import { MonitorKeys, monitorKey } from "../../operator/monitor/keys.ts";
import { encodeSample, type KeyLookup, signSample, subjectFor } from "../../sidecar/protocol.ts";
import { benchEngine, benchMonitor, benchSample } from "./samples.ts";

export interface VerifyBenchResult {
  way: string;
  /** Median over the rounds, µs of CPU per sample. */
  usPerSample: number;
  accepted: number;
}

const PODS = 10_000;

export function runVerifyBench(rounds = 5): VerifyBenchResult[] {
  const master = randomBytes(32);
  const ways: [string, () => KeyLookup][] = [
    [
      "key derived per sample, raw Buffer (before)",
      () => (id) => monitorKey(master, id.podUid, id.container),
    ],
    [
      "MonitorKeys: derived once, KeyObject (operator)",
      () => {
        const keys = new MonitorKeys(master);
        return (id) => keys.get(id);
      },
    ],
  ];
  const times = ways.map(() => [] as number[]);
  const accepted = ways.map(() => 0);
  for (let round = 0; round < rounds; round++) {
    // Fresh samples each round and pass (the replay check refuses a sequence seen before).
    const ts = Date.now();
    const signed = (seq: number) =>
      Array.from({ length: PODS }, (_, i) => {
        const id = benchMonitor(i, 100);
        const sample = signSample(
          benchSample(id, seq, ts),
          monitorKey(master, id.podUid, id.container),
        );
        return {
          subject: subjectFor(id.node, id.namespace, id.pod, id.container),
          data: encodeSample(sample),
        };
      });
    const passes = [signed(1), signed(2)];
    for (let w = 0; w < ways.length; w++) {
      const [, lookup] = ways[w] as (typeof ways)[number];
      const engine = benchEngine(100);
      let ok = 0;
      const sub = new MetricsSubscriber({
        nc: undefined as never,
        registry: new Registry(),
        keyLookup: lookup(),
        onSample: (s, at) => {
          engine.observe(s, at);
          ok++;
        },
        log: pino({ level: "silent" }),
        now: () => ts,
      });
      // Two passes: the first warms the JIT (and fills MonitorKeys, as in a running operator).
      for (const [pass, msgs] of passes.entries()) {
        const cpu0 = process.cpuUsage();
        for (const m of msgs) sub.handle(m.subject, m.data);
        const cpu = process.cpuUsage(cpu0);
        if (pass === 1) times[w]?.push((cpu.user + cpu.system) / PODS);
      }
      accepted[w] = ok;
    }
  }
  return ways.map(([way], w) => {
    const t = [...(times[w] ?? [])].sort((a, b) => a - b);
    return {
      way,
      usPerSample: t[Math.floor(t.length / 2)] ?? Number.NaN,
      accepted: accepted[w] ?? 0,
    };
  });
}
