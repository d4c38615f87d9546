// The operator process: wiring only. Loads config, builds clients, warms the
// caches, runs leader election, starts the controllers on the leader, serves
// /metrics /healthz /readyz, and drains on SIGTERM.
import {
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
} from "@kubernetes/client-node";
import { connect } from "nats";
import { pino } from "pino";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { ConfigError, loadConfig } from "./config.ts";
import { DecisionController } from "./decision/controller.ts";
import { EdgeNodeController } from "./edgenode/controller.ts";
import { injectionMetrics } from "./edgenode/podwatcher.ts";
import { EventRecorder } from "./kube/events.ts";
import { informerMetrics } from "./kube/informer.ts";
import { LeaderElector } from "./kube/leader.ts";
import { serveProbes } from "./kube/probes.ts";
import { queueMetrics } from "./kube/workqueue.ts";
import { MigrationController } from "./migration/controller.ts";

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}

const log = pino({
  level: config.logLevel,
  base: { component: "operator", identity: config.identity },
  redact: {
    paths: [
      "signingKey",
      "*.signingKey",
      "*.token",
      "*.password",
      "*.authorization",
      "headers.authorization",
    ],
    censor: "[redacted]",
  },
});

const kc = new KubeConfig();
if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
else kc.loadFromCluster();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const coordination = kc.makeApiClient(CoordinationV1Api);

const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "edgeshift_process_" });
const leaderGauge = new Gauge({
  name: "edgeshift_leader",
  help: "1 while this replica is the leader",
  registers: [registry],
});
const recorder = new EventRecorder({
  api: kc.makeApiClient(EventsV1Api),
  controller: "edgeshift.dev/operator",
  instance: config.identity,
  fallbackNamespace: config.namespace,
  log,
});

const informers = informerMetrics(registry);
const workQueueMetrics = queueMetrics(registry);
const edgeNodes = new EdgeNodeController({
  kubeConfig: kc,
  core,
  custom,
  apps: kc.makeApiClient(AppsV1Api),
  rbac: kc.makeApiClient(RbacAuthorizationV1Api),
  agentImage: config.monitorImage,
  recorder,
  log,
  registry,
  signingKey: config.signingKey,
  operatorNamespace: config.namespace,
  monitorImage: config.monitorImage,
  monitorNatsUrl: config.monitorNatsUrl,
  workers: config.workers,
  informerMetrics: informers,
  queueMetrics: workQueueMetrics,
  injectionMetrics: injectionMetrics(registry),
});

// Samples are disposable telemetry: keep reconnecting forever, buffer nothing.
log.info({ servers: config.natsUrl }, "Connecting to NATS");
const nc = await connect({
  servers: config.natsUrl,
  name: `edgeshift-operator-${config.identity}`,
  waitOnFirstConnect: true,
  maxReconnectAttempts: -1,
  reconnectTimeWait: 1000,
});
log.info({ server: nc.getServer() }, "Connected to NATS");
const decisions = new DecisionController({
  kubeConfig: kc,
  custom,
  nc,
  edgeNodes,
  recorder,
  registry,
  signingKey: config.signingKey,
  log,
  informerMetrics: informers,
  history: { keep: config.migrationHistoryLimit, ttlMs: config.migrationTtlMs },
});

const migrations = new MigrationController({
  core,
  custom,
  migrations: decisions.migrations,
  edgeNodes,
  recorder,
  registry,
  log,
  operatorNamespace: config.namespace,
  workers: config.workers,
  restoreTimeoutMs: config.restoreTimeoutMs,
  cutoverTimeoutMs: config.cutoverTimeoutMs,
  cleanupImage: config.monitorImage,
  checkpointTimeoutMs: config.checkpointTimeoutMs,
  queueMetrics: workQueueMetrics,
  kubeConfig: kc,
  informerMetrics: informers,
  resyncMs: config.migrationResyncMs,
});
decisions.onMigrationChange((m) => migrations.enqueue(m));
// An original pod's changes (deleted at cutover, ended by itself) wake its Migration.
edgeNodes.onEdgePod((pod) => migrations.podChanged(pod));

let leading = !config.leaderElection;
let workersStarted = false;
let shuttingDown = false;

const server = serveProbes({
  registry,
  healthy: () => edgeNodes.healthy,
  ready: () => !shuttingDown && edgeNodes.synced && (!leading || workersStarted),
  host: config.httpHost,
  port: config.httpPort,
  onListening: (port) => log.info({ port }, "Serving metrics and probes"),
});

async function startLeading(): Promise<void> {
  leading = true;
  leaderGauge.set(1);
  await decisions.start();
  edgeNodes.startWorkers();
  await migrations.start();
  workersStarted = true;
  log.info("Started controllers");
}

const elector = config.leaderElection
  ? new LeaderElector({
      api: coordination,
      namespace: config.namespace,
      name: config.leaseName,
      identity: config.identity,
      leaseDurationMs: config.leaseDurationMs,
      renewDeadlineMs: config.renewDeadlineMs,
      retryPeriodMs: config.retryPeriodMs,
      log,
      onStartedLeading: () => void startLeading(),
      // Another replica may already be reconciling: stop at once, let the
      // Deployment restart us as a standby.
      onStoppedLeading: () => {
        leaderGauge.set(0);
        log.error("Lost leadership; exiting");
        process.exit(1);
      },
    })
  : undefined;

async function shutdown(signal: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  log.info({ signal }, "Shutting down");
  const force = setTimeout(() => {
    log.error("Shutdown timed out");
    process.exit(1);
  }, config.shutdownTimeoutMs);
  force.unref();
  await migrations.stop();
  await decisions.stop();
  await edgeNodes.stop();
  await elector?.release();
  await nc.drain().catch(() => {});
  await new Promise<void>((r) => server.close(() => r()));
  log.info("Stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("unhandledRejection", (err) => log.error({ err }, "Unhandled rejection"));

await edgeNodes.startInformers();
log.info("Caches synced");
if (elector) elector.start();
else await startLeading();
