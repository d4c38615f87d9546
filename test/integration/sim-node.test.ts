// The node simulator against the real control plane: a Node that stays
// Ready, a counter pod that really runs (runc) and is reported like a kubelet
// reports it, the kubelet checkpoint endpoint (real CRIU dump, CRI-O archive
// the agent's validator accepts), a checkpoint image that cannot be pulled
// failing the container visibly, and deletion.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { validateArchive } from "../../migration/archive/validate.ts";
import { checkpoint } from "../../migration/kubelet/client.ts";
import { waitUntil } from "../cluster/process.ts";
import { SimNode } from "../sim/node.ts";
import { counterPod, podProgress, WORKLOAD_IMAGE } from "../sim/pods.ts";
import { ensureSimTools } from "../sim/setup.ts";
import { adminClients, type Clients, createNamespace } from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  serviceAccountKubeconfig,
} from "../support/operator.ts";

const run = promisify(execFile);
const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const registry = inject("registry");
const NS = "simnode";

let c: Clients;
let node: SimNode | undefined;
let agentKubeconfig: string | undefined;
let token = "";

beforeAll(async () => {
  c = adminClients(kubeconfig);
  const tools = await ensureSimTools();
  await installOperatorRbac(kubectl, kubeconfig);
  agentKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-agent",
  );
  const kc = new KubeConfig();
  kc.loadFromFile(agentKubeconfig);
  token = kc.getCurrentUser()?.token ?? "";
  await createNamespace(c, NS);
  node = await SimNode.start({
    kubeconfig,
    name: "sim-edge-1",
    labels: { "test.edgeshift.dev/group": "simnode" },
    tools,
    namespaces: [NS],
    registries: {
      [registry.host]: { username: registry.username, password: registry.password, insecure: true },
    },
  });
}, 180_000);

afterAll(async () => {
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  // The node still runs: it stops the containers and removes the pods.
  await waitUntil(
    "the namespace's pods to go",
    async () =>
      (await c.core.listNamespacedPod({ namespace: NS })).items.length === 0 ? true : undefined,
    { timeoutMs: 20_000, intervalMs: 200 },
  ).catch(() => {});
  await node?.close();
  if (agentKubeconfig) await rm(dirname(agentKubeconfig), { recursive: true, force: true });
});

const pod = (name: string) => c.core.readNamespacedPod({ namespace: NS, name });

describe("simulated node (kubelet + CRI-O with runc and CRIU)", () => {
  it("registers a Ready node reporting CRI-O", async () => {
    const n = await c.core.readNode({ name: "sim-edge-1" });
    expect(n.status?.nodeInfo?.containerRuntimeVersion).toBe("cri-o://1.30.4");
    expect(n.status?.conditions?.find((x) => x.type === "Ready")?.status).toBe("True");
    expect(n.status?.daemonEndpoints?.kubeletEndpoint?.Port).toBe(node?.kubelet.port);
    expect(n.metadata?.labels?.["test.edgeshift.dev/group"]).toBe("simnode");
  });

  it("runs a counter pod, reports it like a kubelet, checkpoints it into a valid CRI-O archive, and removes it on deletion", async () => {
    if (!node) throw new Error("no node");
    const sim = node;
    await c.core.createNamespacedPod({ namespace: NS, body: counterPod("counter", "sim-edge-1") });
    const running = await waitUntil(
      "the pod Running",
      async () => {
        const p = await pod("counter");
        return p.status?.phase === "Running" ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(running.status?.podIP).toMatch(/^10\.244\.\d+\.\d+$/);
    expect(running.status?.conditions?.find((x) => x.type === "Ready")?.status).toBe("True");
    const cs = running.status?.containerStatuses?.[0];
    expect(cs?.name).toBe("app");
    expect(cs?.ready).toBe(true);
    expect(cs?.restartCount).toBe(0);
    expect(cs?.state?.running?.startedAt).toBeDefined();
    expect(cs?.containerID).toMatch(/^cri-o:\/\//);
    const first = await waitUntil(
      "progress",
      async () => {
        const p = await podProgress(c, sim, NS, "counter");
        return p && p.counter > 0 ? p : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    expect(first.pid).toBe(1);

    // Unauthenticated: 401, as the kubelet answers.
    await expect(
      checkpoint(
        { namespace: NS, pod: "counter", container: "app" },
        { host: sim.kubelet.host, port: sim.kubelet.port, ca: sim.kubelet.caPem, token: "nope" },
      ),
    ).rejects.toMatchObject({ reason: "Unauthorized" });
    await expect(
      checkpoint(
        { namespace: NS, pod: "counter", container: "nope" },
        { host: sim.kubelet.host, port: sim.kubelet.port, ca: sim.kubelet.caPem, token },
      ),
    ).rejects.toMatchObject({ status: 404 });

    const path = await checkpoint(
      { namespace: NS, pod: "counter", container: "app" },
      {
        host: sim.kubelet.host,
        port: sim.kubelet.port,
        ca: sim.kubelet.caPem,
        token,
        timeoutSeconds: 30,
      },
    );
    expect(dirname(path)).toBe(sim.checkpointDir);
    expect(path).toMatch(/checkpoint-counter_simnode-app-.*Z\.tar$/);
    const info = await validateArchive(path, { checkpointDir: sim.checkpointDir });
    expect(info.metadata.containerName).toBe("app");
    expect(info.metadata.baseImage).toBe(WORKLOAD_IMAGE);
    expect(info.metadata.engine).toBe("CRI-O");
    expect(info.metadata.podName).toBe("counter");
    expect(info.metadata.namespace).toBe(NS);
    expect(info.checkpointBytes).toBeGreaterThan(1 << 20);
    const { stdout } = await run("tar", ["-tf", path]);
    const names = stdout.split("\n");
    for (const n of [
      "config.dump",
      "spec.dump",
      "rootfs-diff.tar",
      "deleted.files",
      "bind.mounts",
      "dump.log",
      "stats-dump",
      "network.status",
      "checkpoint/inventory.img",
      "checkpoint/pages-1.img",
    ]) {
      expect(names, n).toContain(n);
    }
    expect(sim.checkpoints).toHaveLength(1);
    console.log(
      `checkpoint: dump ${Math.round(sim.checkpoints[0]?.checkpointMs ?? 0)} ms, archive total ${Math.round(sim.checkpoints[0]?.totalMs ?? 0)} ms, ${((sim.checkpoints[0]?.archiveBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`,
    );
    // The source keeps running after the checkpoint.
    const after = (await podProgress(c, sim, NS, "counter"))?.counter ?? 0;
    await waitUntil(
      "progress after the checkpoint",
      async () =>
        ((await podProgress(c, sim, NS, "counter"))?.counter ?? 0) > after ? true : undefined,
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    expect((await pod("counter")).status?.phase).toBe("Running");

    const id = sim.container(NS, "counter", "app")?.id;
    await c.core.deleteNamespacedPod({ namespace: NS, name: "counter" });
    await waitUntil(
      "the pod gone",
      async () => ((await pod("counter").catch(() => undefined)) ? undefined : true),
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect((await sim.runtime.list()).map((s) => s.id)).not.toContain(id);
    await rm(path, { force: true });
  });

  it("fails a container whose checkpoint image cannot be pulled, with the kubelet's reason", async () => {
    const image = `${registry.host}/edgeshift/missing@sha256:${"0".repeat(64)}`;
    await c.core.createNamespacedPod({
      namespace: NS,
      body: counterPod("unpullable", "sim-edge-1", { image }),
    });
    const p = await waitUntil(
      "a waiting container status",
      async () => {
        const x = await pod("unpullable");
        return x.status?.containerStatuses?.[0]?.state?.waiting ? x : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(p.status?.phase).toBe("Pending");
    expect(p.status?.containerStatuses?.[0]?.state?.waiting?.reason).toBe("ErrImagePull");
    expect(p.status?.containerStatuses?.[0]?.state?.waiting?.message).toMatch(/manifest unknown/);
    expect(p.status?.conditions?.find((x) => x.type === "Ready")?.status).toBe("False");
  });
});
