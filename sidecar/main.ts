// The monitor: runs beside one workload container and publishes its CPU and memory
// use to NATS. Wiring only.
import { connect, Events, type NatsConnection } from "nats";
import { pino } from "pino";
import { AppMetricReader, seriesText } from "./app-metric.ts";
import { ConfigError, loadConfig, redactUrl } from "./config.ts";
import { Sampler } from "./measure.ts";
import { Monitor } from "./monitor.ts";

const DRAIN_TIMEOUT_MS = 3000;

function main(): void {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    pino().fatal({ problems: err.problems }, "Refused to start with an invalid configuration");
    process.exit(2);
  }

  const log = pino({
    level: config.logLevel,
    base: {
      component: "monitor",
      node: config.node,
      namespace: config.namespace,
      pod: config.pod,
      container: config.container,
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ["signingKey", "*.signingKey"],
  });

  let nc: NatsConnection | undefined;
  let connected = false;
  connect({
    servers: config.natsServers,
    name: `edgeshift-monitor ${config.namespace}/${config.pod}/${config.container}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 2000,
    reconnectJitter: 1000,
    // The NATS service may come up after the monitor; keep dialling instead of failing.
    waitOnFirstConnect: true,
  }).then(
    async (c) => {
      nc = c;
      connected = true;
      log.info({ server: redactUrl(c.getServer()) }, "Connected to NATS");
      for await (const s of c.status()) {
        if (s.type === Events.Disconnect) {
          connected = false;
          log.warn({ server: redactUrl(String(s.data)) }, "Disconnected from NATS");
        } else if (s.type === Events.Reconnect) {
          connected = true;
          log.info({ server: redactUrl(String(s.data)) }, "Reconnected to NATS");
        }
      }
    },
    (err) => log.error({ err }, "Failed to connect to NATS"),
  );

  const sampler = new Sampler({
    procRoot: config.procRoot,
    cgroupRoot: config.cgroupRoot,
    rootPid: config.rootPid,
  });
  const app = config.appMetric
    ? new AppMetricReader(config.appMetric, { intervalMs: config.intervalMs })
    : undefined;
  const monitor = new Monitor({
    config,
    log,
    app,
    measure: () => sampler.measure(),
    // nats.js would buffer while disconnected and send late samples on reconnect: skip instead.
    publish: (subject, data) => {
      if (!nc || !connected || nc.isClosed() || nc.isDraining()) return false;
      nc.publish(subject, data);
      return true;
    },
  });

  let exiting = false;
  const shutdown = async (why: string) => {
    if (exiting) return;
    exiting = true;
    monitor.stop();
    if (nc && !nc.isClosed()) {
      const timeout = new Promise((r) => setTimeout(r, DRAIN_TIMEOUT_MS).unref());
      await Promise.race([nc.drain().catch(() => {}), timeout]);
    }
    log.info({ why }, "Stopped monitor");
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
  monitor.done.then((reason) => void shutdown(reason));

  monitor.start();
  log.info(
    {
      subject: monitor.subject,
      intervalMs: config.intervalMs,
      cpuLimitCores: config.cpuLimitCores,
      memoryLimitBytes: config.memoryLimitBytes,
      rootPid: config.rootPid,
      appMetric: config.appMetric
        ? `${seriesText(config.appMetric)} at :${config.appMetric.port}${config.appMetric.path}`
        : undefined,
    },
    "Started monitor",
  );
}

main();
