// Simulated monitors for the ingest benchmark: `pods` monitors at 1 Hz each, signed
// like the real ones, spread evenly over each second. Runs as its own process so
// its signing cost is not charged to the receiver.
import { connect } from "nats";
import { monitorKey } from "../../operator/monitor/keys.ts";
import { encodeSample, signSample, subjectFor } from "../../sidecar/protocol.ts";
import { benchMonitor, benchSample } from "./samples.ts";

const [natsUrl = "", podsArg = "1000", secondsArg = "10", nodesArg = "100"] = process.argv.slice(2);
const pods = Number(podsArg);
const seconds = Number(secondsArg);
const nodes = Number(nodesArg);
const master = Buffer.from(process.env.BENCH_MASTER_KEY ?? "", "hex");
const nc = await connect({ servers: natsUrl });

const monitors = Array.from({ length: pods }, (_, i) => {
  const id = benchMonitor(i, nodes);
  return {
    id,
    subject: subjectFor(id.node, id.namespace, id.pod, id.container),
    key: monitorKey(master, id.podUid, id.container),
    seq: 0,
  };
});

const tickMs = 10;
const perTick = pods / (1000 / tickMs);
let sent = 0;
let next = 0;
const started = Date.now();
while (Date.now() - started < seconds * 1000) {
  const due = Math.floor(((Date.now() - started) / 1000) * pods);
  while (sent < due) {
    const m = monitors[next] as (typeof monitors)[number];
    next = (next + 1) % pods;
    m.seq++;
    const sample = signSample(benchSample(m.id, m.seq, Date.now()), m.key);
    nc.publish(m.subject, encodeSample(sample));
    sent++;
  }
  await new Promise((r) => setTimeout(r, Math.max(1, tickMs - (perTick > 0 ? 0 : 0))));
}
await nc.flush();
await nc.close();
process.stdout.write(JSON.stringify({ sent }));
