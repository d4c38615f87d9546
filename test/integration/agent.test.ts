// The edge agent as a process, against the real control plane and the real
// registry. The kubelet is the one part no machine here runs: a stand-in with
// the kubelet's endpoint, errors and archive format plays it, and authorises
// the agent's token through real TokenReview and SubjectAccessReview.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { freePort, waitUntil } from "../cluster/process.ts";
import { type RunningAgent, startAgent } from "../support/agent.ts";
import {
  adminClients,
  type Clients,
  createNamespace,
  createNode,
  createPod,
  setPodRunning,
} from "../support/objects.ts";
import { installOperatorRbac } from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const registry = inject("registry");
const NS = "ag-apps";
const REPO = `${registry.host}/edgeshift/agent-test`;

let c: Clients;
let dir: string;
const cleanups: (() => Promise<unknown>)[] = [];

async function agentFor(node: string, repository: string): Promise<RunningAgent> {
  const a = await startAgent({ kubeconfig, node, edgeNode: "ag-edge", repository, registry, dir });
  cleanups.push(() => a.stop());
  return a;
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
  for (const n of ["ag-edge", "ag-edge-noreg", "ag-edge-old", "ag-edge-crash"])
    await createNode(c, n, { "test.edgeshift.dev/group": "ag" });
});

afterAll(async () => {
  for (const f of cleanups.reverse()) await f().catch(() => {});
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  for (const n of ["ag-edge", "ag-edge-noreg", "ag-edge-old", "ag-edge-crash"])
    await c.core.deleteNode({ name: n }).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe("edge agent", () => {
  it("checkpoints through the kubelet, pushes the image, records it and deletes the archive", async () => {
    const a = await agentFor("ag-edge", REPO);
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

  it("deletes a Migration's checkpoint image before letting the Migration go", async () => {
    const m = await get("mig-ok");
    expect(m.metadata.finalizers).toContain("edgeshift.dev/checkpoint-images");
    const digest = m.status?.containers?.[0]?.digest ?? "";
    const auth = Buffer.from(`${registry.username}:${registry.password}`).toString("base64");
    const head = () =>
      fetch(`${registry.url}/v2/edgeshift/agent-test/manifests/${digest}`, {
        method: "HEAD",
        headers: {
          authorization: `Basic ${auth}`,
          accept: "application/vnd.oci.image.index.v1+json",
        },
      }).then((r) => r.status);
    expect(await head()).toBe(200);
    await c.custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name: "mig-ok",
    });
    await waitUntil(
      "the Migration to go",
      async () =>
        get("mig-ok").then(
          () => undefined,
          () => true,
        ),
      { timeoutMs: 20_000 },
    );
    expect(await head()).toBe(404);
  });

  it("adopts the kubelet's archive after a crash mid-checkpoint: one archive, one image", async () => {
    const first = await agentFor("ag-edge-crash", REPO);
    first.standin.settings.delayMs = 3000;
    await migration("mig-crash", "web4", "ag-edge-crash");
    await waitUntil(
      "the checkpoint to start",
      async () =>
        (await get("mig-crash")).status?.timestamps?.checkpointStarted ? true : undefined,
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    // checkpointStarted is written just before the kubelet call: give the call time to be sent.
    await new Promise((r) => setTimeout(r, 700));
    await first.crash();
    // The kubelet finishes the checkpoint it was asked for, with nobody waiting.
    await waitUntil(
      "the kubelet's archive",
      async () => (first.standin.archives.length === 1 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    first.standin.settings.delayMs = 0;
    const second = await startAgent({
      kubeconfig,
      node: "ag-edge-crash",
      edgeNode: "ag-edge",
      repository: REPO,
      registry,
      dir,
      replaces: first,
    });
    cleanups.push(() => second.stop());
    const m = await waitDecided("mig-crash", "ImagePushed");
    expect(cond(m, "ImagePushed")?.status).toBe("True");
    expect(first.standin.archives).toHaveLength(1);
    expect(m.status?.containers?.[0]?.archivePath).toBe(first.standin.archives[0]);
    expect(await readdir(first.checkpointDir)).toEqual([]);
    expect(await readFile(second.logPath, "utf8")).toContain(
      "Adopted the archive of an interrupted checkpoint",
    );
  });

  it("fails with RegistryUnavailable when the registry is down, and leaves no archive", async () => {
    const deadPort = await freePort();
    const a = await agentFor("ag-edge-noreg", `127.0.0.1:${deadPort}/edgeshift/none`);
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
    const a = await agentFor("ag-edge-old", REPO);
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
