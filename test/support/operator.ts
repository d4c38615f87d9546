import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { freePort, waitUntil } from "../cluster/process.ts";

const run = promisify(execFile);
export const repoRoot = resolve(import.meta.dirname, "../..");
export const OPERATOR_NAMESPACE = "edgeshift-system";

/** Applies the operator's namespace, ServiceAccount and RBAC from manifests/base. */
export async function installOperatorRbac(kubectl: string, kubeconfig: string): Promise<void> {
  await run(kubectl, [
    "--kubeconfig",
    kubeconfig,
    "apply",
    "--server-side",
    "-f",
    join(repoRoot, "manifests/base"),
  ]);
}

/**
 * A kubeconfig that authenticates as the operator's ServiceAccount (a
 * TokenRequest token), so tests exercise the shipped RBAC, not admin rights.
 * `server` may point at a proxy in front of the API server.
 */
export async function serviceAccountKubeconfig(
  adminKubeconfig: string,
  namespace: string,
  serviceAccount: string,
  server?: string,
): Promise<string> {
  const admin = new KubeConfig();
  admin.loadFromFile(adminKubeconfig);
  const core = admin.makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { expirationSeconds: 3600, audiences: [] } },
  });
  const cluster = admin.getCurrentCluster();
  const dir = await mkdtemp(join(tmpdir(), "edgeshift-sa-"));
  const path = join(dir, `${serviceAccount}.kubeconfig`);
  await writeFile(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        {
          name: "c",
          cluster: {
            server: server ?? cluster?.server,
            "certificate-authority-data": cluster?.caData,
          },
        },
      ],
      users: [{ name: serviceAccount, user: { token: tr.status?.token } }],
      contexts: [{ name: "c", context: { cluster: "c", user: serviceAccount } }],
      "current-context": "c",
    }),
    { mode: 0o600 },
  );
  return path;
}

export interface RunningOperator {
  name: string;
  child: ChildProcess;
  port: number;
  logPath: string;
  metrics(): Promise<string>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  ready(): Promise<boolean>;
  logs(): Promise<string>;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
  /** Removes the log directory (call after the process is gone). */
  cleanup(): Promise<void>;
  exited: Promise<number | null>;
}

/** Runs operator/main.ts as its own process, as it runs in a pod. */
export async function startOperator(opts: {
  name: string;
  kubeconfig: string;
  natsUrl: string;
  env?: Record<string, string>;
  logDir?: string;
}): Promise<RunningOperator> {
  const port = await freePort();
  const logDir = opts.logDir ?? (await mkdtemp(join(tmpdir(), "edgeshift-operator-")));
  const logPath = join(logDir, `${opts.name}.log`);
  const log = createWriteStream(logPath, { flags: "a" });
  const child = spawn(
    "setpriv",
    ["--pdeathsig", "KILL", "--", process.execPath, join(repoRoot, "operator/main.ts")],
    {
      env: {
        PATH: process.env.PATH,
        KUBECONFIG: opts.kubeconfig,
        EDGESHIFT_POD_NAME: opts.name,
        EDGESHIFT_HTTP_HOST: "127.0.0.1",
        EDGESHIFT_HTTP_PORT: String(port),
        EDGESHIFT_MONITOR_IMAGE: "registry.local/edgeshift:test",
        EDGESHIFT_NATS_URL: opts.natsUrl,
        EDGESHIFT_SIGNING_KEY: testSigningKey,
        EDGESHIFT_LOG_LEVEL: "debug",
        // Short enough for a quick failover test, long enough that a busy CI machine
        // does not make a healthy leader miss its renew deadline.
        EDGESHIFT_LEASE_DURATION: "6s",
        EDGESHIFT_RENEW_DEADLINE: "5s",
        EDGESHIFT_RETRY_PERIOD: "1s",
        ...opts.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const base = `http://127.0.0.1:${port}`;
  const op: RunningOperator = {
    name: opts.name,
    child,
    port,
    logPath,
    exited,
    async metrics() {
      return (await fetch(`${base}/metrics`)).text();
    },
    async metric(name, labels = {}) {
      const text = await op.metrics();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith(name)) continue;
        const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const lbl = m[2] ?? "";
        if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`)))
          sum += Number(m[3]);
      }
      return sum;
    },
    async ready() {
      try {
        return (await fetch(`${base}/readyz`)).status === 200;
      } catch {
        return false;
      }
    },
    async logs() {
      return readFile(logPath, "utf8").catch(() => "");
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
    async cleanup() {
      await rm(logDir, { recursive: true, force: true });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
  await waitUntil(
    `operator ${opts.name} /readyz`,
    async () => {
      if (child.exitCode !== null)
        throw new Error(`operator exited ${child.exitCode}:\n${await op.logs()}`);
      return (await op.ready()) ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return op;
}

/** Same for every test run; only ever used against the throw-away test cluster. */
export const testSigningKey = randomBytes(32).toString("hex");
