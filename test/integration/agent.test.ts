// The edge agent as a process, against the real control plane and the real
// registry. The kubelet is the one part no machine here runs: a stand-in with
// the kubelet's endpoint, errors and archive format plays it, and authorises
// the agent's token through real TokenReview and SubjectAccessReview.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type KubeletStandIn, startKubeletStandIn } from "../../migration/kubelet/standin.ts";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { freePort, waitUntil } from "../cluster/process.ts";
import {
  adminClients,
  type Clients,
  createNamespace,
  createNode,
  createPod,
  setPodRunning,
} from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  repoRoot,
  serviceAccountKubeconfig,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const registry = inject("registry");
const NS = "ag-apps";
const REPO = `${registry.host}/edgeshift/agent-test`;

let c: Clients;
let dir: string;
const cleanups: (() => Promise<unknown>)[] = [];

interface Agent {
  standin: KubeletStandIn;
  checkpointDir: string;
  proc: ChildProcess;
  logPath: string;
}

async function startAgent(node: string, repository: string): Promise<Agent> {
  const checkpointDir = await mkdtemp(join(dir, `${node}-checkpoints-`));
  const standin = await startKubeletStandIn({
    kubeconfig,
    nodeName: node,
    checkpointDir,
    checkpointDataBytes: 4 << 20,
  });
  cleanups.push(() => standin.close());
  const saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-agent",
  );
  cleanups.push(() => rm(dirname(saKubeconfig), { recursive: true, force: true }));
  // The projected token and the kubelet CA, as the pod would have them mounted.
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
      auths: { [registry.host]: { username: registry.username, password: registry.password } },
    }),
    { mode: 0o600 },
  );
  const logPath = join(dir, `${node}-agent.log`);
  const out = createWriteStream(logPath);
  const proc = spawn(process.execPath, [join(repoRoot, "migration/agent/main.ts")], {
    env: {
      PATH: process.env.PATH,
      KUBECONFIG: saKubeconfig,
      EDGESHIFT_NODE_NAME: node,
      EDGESHIFT_EDGENODE: "ag-edge",
      EDGESHIFT_KUBELET_HOST: standin.host,
      EDGESHIFT_KUBELET_PORT: String(standin.port),
      EDGESHIFT_KUBELET_CA_FILE: caFile,
      EDGESHIFT_TOKEN_FILE: tokenFile,
      EDGESHIFT_CHECKPOINT_DIR: checkpointDir,
      EDGESHIFT_REGISTRY_REPOSITORY: repository,
      EDGESHIFT_REGISTRY_INSECURE: "true",
      EDGESHIFT_REGISTRY_AUTH_FILE: authFile,
      EDGESHIFT_HTTP_PORT: String(await freePort()),
      EDGESHIFT_LOG_LEVEL: "debug",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout?.pipe(out);
  proc.stderr?.pipe(out);
  cleanups.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      await once(proc, "exit");
    }
  });
  return { standin, checkpointDir, proc, logPath };
}

/** A Migration in the Checkpointing phase, as the operator leaves it for the agent. */
async function migration(name: string, pod: string, node: string): Promise<void> {
  await createPod(c, NS, pod, node);
  await setPodRunning(c, NS, pod);
  await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "Migration",
      metadata: { name, labels: { "edgeshift.dev/source-node": node } },
      spec: { podName: pod, containers: ["app"] },
    },
  });
  await c.custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
      body: { status: { phase: "Checkpointing", sourceNode: node, policy: "checkpoint" } },
    },
    mergePatch,
  );
}

const get = async (name: string) =>
  (await c.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name,
  })) as Migration;
const cond = (m: Migration, type: string) => m.status?.conditions?.find((x) => x.type === type);

async function waitDecided(name: string, type: string): Promise<Migration> {
  return waitUntil(
    `${name} ${type} decided`,
    async () => {
      const m = await get(name);
      const s = cond(m, type)?.status;
      const failed = m.status?.conditions?.some((x) => x.status === "False");
      return s === "True" || s === "False" || failed ? m : undefined;
    },
    { timeoutMs: 45_000, intervalMs: 100 },
  );
}

beforeAll(async () => {
  c = adminClients(kubeconfig);
  dir = await mkdtemp(join(tmpdir(), "edgeshift-agent-test-"));
  await installOperatorRbac(kubectl, kubeconfig);
  await createNamespace(c, NS);
  for (const n of ["ag-edge", "ag-edge-noreg", "ag-edge-old"])
    await createNode(c, n, { "test.edgeshift.dev/group": "ag" });
});

afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  for (const n of ["ag-edge", "ag-edge-noreg", "ag-edge-old"])
    await c.core.deleteNode({ name: n }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe("edge agent", () => {
  it("checkpoints through the kubelet, pushes the image, records it and deletes the archive", async () => {
    const a = await startAgent("ag-edge", REPO);
    await migration("mig-ok", "web", "ag-edge");
    const m = await waitDecided("mig-ok", "ImagePushed");
    expect(cond(m, "Checkpointed")).toMatchObject({ status: "True", reason: "CheckpointCreated" });
    expect(cond(m, "ImagePushed"), await readFile(a.logPath, "utf8")).toMatchObject({
      status: "True",
      reason: "ImagePushed",
    });
    const entry = m.status?.containers?.find((x) => x.name === "app");
    expect(entry?.archivePath).toMatch(/checkpoint-web_ag-apps-app-.*\.tar$/);
    expect(entry?.archiveSizeBytes).toBeGreaterThan(4 << 20);
    expect(entry?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(entry?.image).toBe(`${REPO}@${entry?.digest}`);
    expect(entry?.imageSizeBytes).toBeGreaterThan(0);
    expect(m.status?.timestamps?.checkpointStarted).toBeDefined();
    expect(m.status?.timestamps?.checkpointed).toBeDefined();
    expect(m.status?.timestamps?.imagePushed).toBeDefined();
    // The archive holds process memory: gone from the node once pushed.
    expect(await readdir(a.checkpointDir)).toEqual([]);
    // The registry serves the tagged image, with the digest the status names.
    const auth = Buffer.from(`${registry.username}:${registry.password}`).toString("base64");
    const r = await fetch(`${registry.url}/v2/edgeshift/agent-test/manifests/mig-ok-app`, {
      method: "HEAD",
      headers: {
        authorization: `Basic ${auth}`,
        accept: "application/vnd.oci.image.index.v1+json",
      },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get("docker-content-digest")).toBe(entry?.digest);
    const log = await readFile(a.logPath, "utf8");
    expect(log).not.toContain(registry.password);
  });

  it("fails with RegistryUnavailable when the registry is down, and leaves no archive", async () => {
    const deadPort = await freePort();
    const a = await startAgent("ag-edge-noreg", `127.0.0.1:${deadPort}/edgeshift/none`);
    await migration("mig-noreg", "web2", "ag-edge-noreg");
    const m = await waitDecided("mig-noreg", "ImagePushed");
    expect(cond(m, "ImagePushed")).toMatchObject({
      status: "False",
      reason: "RegistryUnavailable",
    });
    expect(m.status?.failureReason).toBe("RegistryUnavailable");
    expect(a.standin.archives.length).toBe(1);
    expect(await readdir(a.checkpointDir)).toEqual([]);
  });

  it("reports RuntimeUnsupported when the runtime cannot checkpoint (containerd 1.x)", async () => {
    const a = await startAgent("ag-edge-old", REPO);
    a.standin.settings.notImplemented = true;
    await migration("mig-old", "web3", "ag-edge-old");
    const m = await waitDecided("mig-old", "Checkpointed");
    expect(cond(m, "Checkpointed")).toMatchObject({
      status: "False",
      reason: "RuntimeUnsupported",
    });
    expect(m.status?.failureReason).toBe("RuntimeUnsupported");
    expect(cond(m, "ImagePushed")).toBeUndefined();
    expect(await readdir(a.checkpointDir)).toEqual([]);
  });
});
