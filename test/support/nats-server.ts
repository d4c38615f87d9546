import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  freePort,
  type Managed,
  startProcess,
  stopProcess,
  tailLog,
  waitUntil,
} from "../cluster/process.ts";

const NATS_SERVER = "/usr/sbin/nats-server";

/** A private nats-server for one test file, so tests can stop and restart it at will. */
export interface TestNats {
  url: string;
  port: number;
  logDir: string;
  /** Stops the server; `start` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its log directory. */
  dispose(): Promise<void>;
}

export async function startNats(name = "nats"): Promise<TestNats> {
  const logDir = await mkdtemp(join(tmpdir(), `edgeshift-${name}-`));
  const port = await freePort();
  let proc: Managed | undefined;
  let starts = 0;
  const start = async () => {
    const p = startProcess(
      `${name}-${++starts}`,
      NATS_SERVER,
      ["-a", "127.0.0.1", "-p", String(port), "-P", join(logDir, "nats.pid")],
      {
        logDir,
      },
    );
    proc = p;
    await waitUntil(
      name,
      async () => ((await tailLog(p, 50)).includes("Server is ready") ? true : undefined),
      { timeoutMs: 20_000, intervalMs: 50, alive: [p] },
    );
  };
  const stop = async () => {
    if (proc) await stopProcess(proc);
    proc = undefined;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    logDir,
    start,
    stop,
    dispose: async () => {
      await stop();
      await rm(logDir, { recursive: true, force: true });
    },
  };
}
