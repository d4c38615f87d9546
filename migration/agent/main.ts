// The edge agent: one per edge node (a DaemonSet made by the operator per
// EdgeNode). Wiring only: config, clients, the Migration controller, the archive
// sweeper, /healthz /readyz /metrics, and a clean stop on SIGTERM.
import { readFile } from "node:fs/promises";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { collectDefaultMetrics, Registry } from "prom-client";
import { informerMetrics } from "../../operator/kube/informer.ts";
import { serveProbes } from "../../operator/kube/probes.ts";
import { startArchiveSweeper } from "../archive/gc.ts";
import { credentialsFromDockerConfigJson } from "../registry/auth.ts";
import { parseRepository } from "../registry/reference.ts";
import { AgentConfigError, loadAgentConfig } from "./config.ts";
import { AgentController } from "./controller.ts";

let config: ReturnType<typeof loadAgentConfig>;
try {
  config = loadAgentConfig(process.env);
  parseRepository(config.registryRepository);
} catch (err) {
  console.error(
    err instanceof AgentConfigError
      ? err.message
      : `Invalid agent configuration: ${(err as Error).message}`,
  );
  process.exit(2);
}

const log = pino({
  level: config.logLevel,
  base: { component: "agent", node: config.node },
  redact: {
    paths: ["*.token", "*.password", "*.authorization", "headers.authorization"],
    censor: "[redacted]",
  },
});
const kc = new KubeConfig();
if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
else kc.loadFromCluster();
const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "edgeshift_agent_process_" });

const registryHost = parseRepository(config.registryRepository).registry;
const agent = new AgentController({
  config,
  kubeConfig: kc,
  custom: kc.makeApiClient(CustomObjectsApi),
  log,
  registry,
  // Read on each push: the kubelet refreshes the mounted Secret when it changes.
  credentials: async () =>
    config.registryAuthFile
      ? credentialsFromDockerConfigJson(await readFile(config.registryAuthFile), registryHost)
      : undefined,
  informerMetrics: informerMetrics(registry),
});

const sweeper = startArchiveSweeper({
  checkpointDir: config.checkpointDir,
  maxAgeMs: config.archiveMaxAgeMs,
  // The kubelet writes a requested archive within its checkpoint timeout.
  requestWindowMs: config.checkpointTimeoutSeconds * 1000 + 60_000,
  intervalMs: config.sweepIntervalMs,
  logger: log,
});

let stopping = false;
const server = serveProbes({
  registry,
  healthy: () => agent.healthy,
  ready: () => !stopping && agent.synced,
  port: config.httpPort,
  onListening: (port) => log.info({ port }, "Serving metrics and probes"),
});

async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "Shutting down");
  setTimeout(() => process.exit(1), 10_000).unref();
  sweeper.stop();
  await agent.stop();
  await new Promise<void>((r) => server.close(() => r()));
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("unhandledRejection", (err) => log.error({ err }, "Unhandled rejection"));

await agent.start();
log.info({ edgeNode: config.edgeNode }, "Agent started");
