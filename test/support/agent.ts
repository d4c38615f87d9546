import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { type KubeletStandIn, startKubeletStandIn } from "../../migration/kubelet/standin.ts";
import { freePort } from "../cluster/process.ts";
import { OPERATOR_NAMESPACE, repoRoot, serviceAccountKubeconfig } from "./operator.ts";

export interface RegistryAccess {
  host: string;
  username: string;
  password: string;
}

export interface RunningAgent {
  node: string;
  /** The kubelet stand-in the agent talks to (no kubelet runs here). */
  standin: KubeletStandIn;
  checkpointDir: string;
  proc: ChildProcess;
  logPath: string;
  /** Stops the agent and the stand-in, removes the token and files. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; the stand-in keeps running. */
  crash(): Promise<void>;
}

/**
 * Runs migration/agent/main.ts as the DaemonSet would on `node`: with the
 * edgeshift-agent ServiceAccount's token, the kubelet's CA, the checkpoint
 * directory and the registry credentials mounted as files.
 */
export async function startAgent(opts: {
  kubeconfig: string;
  node: string;
  edgeNode: string;
  repository: string;
  registry: RegistryAccess;
  dir: string;
  checkpointDataBytes?: number;
  /** Another agent on the same node, replaced after a crash: same kubelet, same directory. */
  replaces?: RunningAgent;
}): Promise<RunningAgent> {
  const { node, dir } = opts;
  const checkpointDir =
    opts.replaces?.checkpointDir ?? (await mkdtemp(join(dir, `${node}-checkpoints-`)));
  const standin =
    opts.replaces?.standin ??
    (await startKubeletStandIn({
      kubeconfig: opts.kubeconfig,
      nodeName: node,
      checkpointDir,
      checkpointDataBytes: opts.checkpointDataBytes ?? 4 << 20,
    }));
  const saKubeconfig = await serviceAccountKubeconfig(
    opts.kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-agent",
  );
  const sa = new KubeConfig();
  sa.loadFromFile(saKubeconfig);
  const tokenFile = join(dir, `${node}.token`);
  await writeFile(tokenFile, sa.getCurrentUser()?.token ?? "", { mode: 0o600 });
  const caFile = join(dir, `${node}-kubelet-ca.crt`);
  await writeFile(caFile, standin.caPem);
  const authFile = join(dir, `${node}-registry.json`);
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
  const logPath = join(dir, `${node}-agent-${Date.now()}.log`);
  const out = createWriteStream(logPath);
  const proc = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      process.execPath,
      "--expose-gc",
      join(repoRoot, "migration/agent/main.ts"),
    ],
    {
      env: {
        PATH: process.env.PATH,
        KUBECONFIG: saKubeconfig,
        EDGESHIFT_NODE_NAME: node,
        EDGESHIFT_EDGENODE: opts.edgeNode,
        EDGESHIFT_KUBELET_HOST: standin.host,
        EDGESHIFT_KUBELET_PORT: String(standin.port),
        EDGESHIFT_KUBELET_CA_FILE: caFile,
        EDGESHIFT_TOKEN_FILE: tokenFile,
        EDGESHIFT_CHECKPOINT_DIR: checkpointDir,
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
    node,
    standin,
    checkpointDir,
    proc,
    logPath,
    async crash() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await once(proc, "exit");
      }
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await once(proc, "exit");
      }
      await standin.close();
      await rm(dirname(saKubeconfig), { recursive: true, force: true });
    },
  };
}
