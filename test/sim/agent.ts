// Runs the edge agent (migration/agent/main.ts) on a simulated node, as the
// DaemonSet would: with the edgeshift-agent ServiceAccount's token, the
// node's kubelet CA, its checkpoint directory and the registry credentials as
// files. Like test/support/agent.ts, but against a SimNode's real kubelet
// endpoint instead of the stand-in.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { freePort } from "../cluster/process.ts";
import { OPERATOR_NAMESPACE, repoRoot, serviceAccountKubeconfig } from "../support/operator.ts";
import type { SimNode } from "./node.ts";

export interface SimAgent {
  proc: ChildProcess;
  logPath: string;
  logs(): Promise<string>;
  stop(): Promise<void>;
}

export async function startSimAgent(opts: {
  kubeconfig: string;
  node: SimNode;
  edgeNode: string;
  repository: string;
  registry: { host: string; username: string; password: string };
}): Promise<SimAgent> {
  const dir = await mkdtemp(join(tmpdir(), `edgeshift-simagent-${opts.node.name}-`));
  const saKubeconfig = await serviceAccountKubeconfig(
    opts.kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-agent",
  );
  const sa = new KubeConfig();
  sa.loadFromFile(saKubeconfig);
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, sa.getCurrentUser()?.token ?? "", { mode: 0o600 });
  const caFile = join(dir, "kubelet-ca.crt");
  await writeFile(caFile, opts.node.kubelet.caPem);
  const authFile = join(dir, "registry.json");
  await writeFile(
    authFile,
    JSON.stringify({
      auths: {
        [opts.registry.host]: {
          username: opts.registry.username,
          password: opts.registry.password,
        },
      },
    }),
    { mode: 0o600 },
  );
  const logPath = join(dir, "agent.log");
  const out = createWriteStream(logPath);
  const proc = spawn(
    "setpriv",
    ["--pdeathsig", "KILL", "--", process.execPath, join(repoRoot, "migration/agent/main.ts")],
    {
      env: {
        PATH: process.env.PATH,
        KUBECONFIG: saKubeconfig,
        EDGESHIFT_NODE_NAME: opts.node.name,
        EDGESHIFT_EDGENODE: opts.edgeNode,
        EDGESHIFT_KUBELET_HOST: opts.node.kubelet.host,
        EDGESHIFT_KUBELET_PORT: String(opts.node.kubelet.port),
        EDGESHIFT_KUBELET_CA_FILE: caFile,
        EDGESHIFT_TOKEN_FILE: tokenFile,
        EDGESHIFT_CHECKPOINT_DIR: opts.node.checkpointDir,
        EDGESHIFT_REGISTRY_REPOSITORY: opts.repository,
        EDGESHIFT_REGISTRY_INSECURE: "true",
        EDGESHIFT_REGISTRY_AUTH_FILE: authFile,
        EDGESHIFT_HTTP_PORT: String(await freePort()),
        EDGESHIFT_LOG_LEVEL: "debug",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  proc.stdout?.pipe(out);
  proc.stderr?.pipe(out);
  return {
    proc,
    logPath,
    logs: () => readFile(logPath, "utf8").catch(() => ""),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await once(proc, "exit");
      }
      await rm(dirname(saKubeconfig), { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    },
  };
}
