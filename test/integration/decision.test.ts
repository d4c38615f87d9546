// The whole metrics path on real parts: the operator injects a monitor; the real
// monitor process (playing the ephemeral container, since no kubelet runs here)
// samples a real busy process and publishes to a real NATS; the operator verifies
// the samples, decides and creates the Migration in the real API server.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { V1EphemeralContainer } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, MIGRATION_PLURAL, type Migration, VERSION } from "../../operator/api/v1alpha1.ts";
import { migrationName } from "../../operator/decision/engine.ts";
import { waitUntil } from "../cluster/process.ts";
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
  type RunningOperator,
  repoRoot,
  serviceAccountKubeconfig,
  startOperator,
} from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const natsUrl = inject("natsUrl");
const NS = "dec-apps";
const WINDOW_S = 4;

let c: Clients;
let op: RunningOperator;
let saKubeconfig: string;
const children: ChildProcess[] = [];

// Idle until SIGUSR1, then burns one core until SIGUSR2.
const LOAD = `
let busy = false;
process.on("SIGUSR1", () => { busy = true; });
process.on("SIGUSR2", () => { busy = false; });
setInterval(() => { const end = Date.now() + 95; while (busy && Date.now() < end) {} }, 100);
`;

async function ephemeralEnv(mon: V1EphemeralContainer): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const e of mon.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) {
      const secret = await c.core.readNamespacedSecret({ namespace: NS, name: ref.name ?? "" });
      env[e.name] = Buffer.from(secret.data?.[ref.key] ?? "", "base64").toString();
    } else env[e.name] = e.value ?? "";
  }
  return env;
}

/** A Running pod with its monitor started the way the runtime would start it. */
async function monitoredWorkload(
  name: string,
): Promise<{ load: ChildProcess; monitor: ChildProcess; podUid: string }> {
  await createPod(c, NS, name, "dec-edge", { cpuLimit: "1" });
  await setPodRunning(c, NS, name);
  const pod = await waitUntil(
    `monitor in ${name}`,
    async () => {
      const p = await c.core.readNamespacedPod({ namespace: NS, name });
      return p.spec?.ephemeralContainers?.length ? p : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
  const mon = pod.spec?.ephemeralContainers?.[0] as V1EphemeralContainer;
  const load = spawn(process.execPath, ["-e", LOAD], { stdio: "ignore" });
  children.push(load);
  const monitor = spawn(process.execPath, [join(repoRoot, "sidecar/main.ts")], {
    env: {
      ...(await ephemeralEnv(mon)),
      EDGESHIFT_NATS_URL: natsUrl,
      EDGESHIFT_ROOT_PID: String(load.pid),
      PATH: process.env.PATH,
    },
    stdio: "ignore",
  });
  children.push(monitor);
  return { load, monitor, podUid: pod.metadata?.uid ?? "" };
}

const getMigration = async (name: string) => {
  try {
    return (await c.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
    })) as Migration;
  } catch {
    return undefined;
  }
};

beforeAll(async () => {
  c = adminClients(kubeconfig);
  await installOperatorRbac(kubectl, kubeconfig);
  saKubeconfig = await serviceAccountKubeconfig(
    kubeconfig,
    OPERATOR_NAMESPACE,
    "edgeshift-operator",
  );
  await createNode(c, "dec-edge", { "test.edgeshift.dev/group": "dec" });
  // A cloud node, so the Migration the engine creates stays in flight (its restored
  // pod waits for a kubelet that never comes) rather than failing with NoTarget.
  await createNode(c, "dec-cloud", { "test.edgeshift.dev/group": "dec-cloud" });
  await createNamespace(c, NS);
  await c.custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "edgenodes",
    body: {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "EdgeNode",
      metadata: { name: "dec-edge" },
      spec: {
        nodeSelector: { matchLabels: { "test.edgeshift.dev/group": "dec" } },
        pods: { namespaces: [NS] },
        thresholds: { cpu: { triggerPercent: 50 } },
        samplingIntervalSeconds: 1,
        sustainedWindowSeconds: WINDOW_S,
        breachPercent: 80,
        maxConcurrentMigrations: 5,
        cloud: { nodeSelector: { matchLabels: { "test.edgeshift.dev/group": "dec-cloud" } } },
        restorePolicy: "restart",
      },
    },
  });
  op = await startOperator({ name: "decision-op", kubeconfig: saKubeconfig, natsUrl });
});

afterAll(async () => {
  for (const ch of children) {
    if (ch.exitCode === null && ch.signalCode === null) {
      ch.kill("SIGKILL");
      await once(ch, "exit");
    }
  }
  await op?.kill();
  await op?.cleanup();
  if (saKubeconfig) await rm(dirname(saKubeconfig), { recursive: true, force: true });
  await c.custom
    .deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: "edgenodes",
      name: "dec-edge",
    })
    .catch(() => {});
  await c.core.deleteNamespace({ name: NS }).catch(() => {});
  for (const n of ["dec-edge", "dec-cloud"]) await c.core.deleteNode({ name: n }).catch(() => {});
});

describe("metrics path to a Migration", () => {
  it("creates the Migration within the sustained window plus 1 s of a sustained breach", async () => {
    const { load, podUid } = await monitoredWorkload("hot");
    // Let the monitor's first samples (idle) arrive before the load starts.
    await waitUntil(
      "samples from the monitor",
      async () => ((await op.metric("edgeshift_samples_received_total")) >= 2 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    const start = Date.now();
    load.kill("SIGUSR1");
    const name = migrationName("hot", podUid);
    const m = await waitUntil("the Migration", () => getMigration(name), {
      timeoutMs: 15_000,
      intervalMs: 25,
    });
    const elapsed = Date.now() - start;
    console.log(
      `[measure] sustained breach start -> Migration created: ${elapsed} ms (window ${WINDOW_S} s, interval 1 s)`,
    );
    expect(elapsed).toBeLessThanOrEqual(WINDOW_S * 1000 + 1000 + 250);
    expect(elapsed).toBeGreaterThanOrEqual((WINDOW_S - 1) * 1000);
    expect(m.spec).toMatchObject({
      podName: "hot",
      containers: ["app"],
      reason: { type: "ThresholdExceeded", metric: "cpu", threshold: 50, windowSeconds: WINDOW_S },
    });
    expect(m.spec.reason?.value).toBeGreaterThan(50);
    expect(m.metadata.labels).toMatchObject({
      "edgeshift.dev/source-node": "dec-edge",
      "edgeshift.dev/edgenode": "dec-edge",
    });
    expect(await op.metric("edgeshift_samples_dropped_total")).toBe(0);
    // Still hot: no second Migration for the same pod.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await op.metric("edgeshift_decisions_total", { result: "created" })).toBe(1);
    load.kill("SIGUSR2");
  });

  it("creates none when the load stops before the window is over", async () => {
    const { load, podUid } = await monitoredWorkload("spiky");
    await new Promise((r) => setTimeout(r, 2000));
    load.kill("SIGUSR1");
    await new Promise((r) => setTimeout(r, 1500));
    load.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, (WINDOW_S + 2) * 1000));
    expect(await getMigration(migrationName("spiky", podUid))).toBeUndefined();
    expect(await op.metric("edgeshift_decisions_total", { result: "created" })).toBe(1);
  });

  it("reports active migrations and stale monitors in the EdgeNode status", async () => {
    const { monitor } = await monitoredWorkload("quiet");
    const status = async () =>
      (
        (await c.custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: "edgenodes",
          name: "dec-edge",
        })) as { status?: { activeMigrations?: number; staleMonitors?: number } }
      ).status ?? {};
    await waitUntil(
      "activeMigrations 1",
      async () => ((await status()).activeMigrations === 1 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
    await new Promise((r) => setTimeout(r, 2000));
    expect((await status()).staleMonitors ?? 0).toBe(0);
    // The monitor goes silent: after three intervals its pod's monitoring is stale.
    monitor.kill("SIGKILL");
    await waitUntil(
      "staleMonitors 1",
      async () => ((await status()).staleMonitors === 1 ? true : undefined),
      {
        timeoutMs: 10_000,
      },
    );
  });
});
