// kubectl-edgeshift against the real API server, run as a user runs it: as a
// kubectl plugin found on PATH, or through its launcher. No operator runs in
// this file: the tests write Migration and EdgeNode status themselves (through
// the status subresource, as the operator does) and read what the plugin prints.
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { EventsV1Api, V1MicroTime } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  API_VERSION,
  EDGENODE_PLURAL,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationStatus,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { migrationName } from "../../operator/decision/engine.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { fullEdgeNode, fullEdgeNodeStatus } from "../support/api-fixtures.ts";
import { ignoreNotFound, kubeClients, uniqueName, waitFor } from "../support/kube.ts";
import { createNamespace, createPod } from "../support/objects.ts";
import { repoRoot } from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const kube = kubeClients(kubeconfig);
const { custom, core } = kube;
const launcher = join(repoRoot, "plugin/kubectl-edgeshift");

const NS = uniqueName("plg");
const EDGENODE = uniqueName("plg-edge");
const NODE = "plg-edge-1";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The plugin as a child process; `lines` fills while it runs. */
function start(args: string[], opts: { viaKubectl?: boolean } = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: kubeconfig };
  let child: ChildProcess;
  if (opts.viaKubectl) {
    // kubectl finds plugins on PATH by their kubectl-<name> file name.
    env.PATH = `${dirname(launcher)}:${process.env.PATH ?? ""}`;
    child = spawn(kubectl, ["edgeshift", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  } else {
    child = spawn(launcher, ["--kubeconfig", kubeconfig, ...args], {
      env: { ...process.env, KUBECONFIG: "/nonexistent" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  }
  const lines: string[] = [];
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d;
    lines.splice(0, lines.length, ...stdout.split("\n"));
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d;
  });
  const done = new Promise<Run>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr })),
  );
  return { child, lines, done };
}

const run = (args: string[], opts: { viaKubectl?: boolean } = {}) => start(args, opts).done;

async function createMigration(
  name: string,
  podName: string,
  extra: Partial<Migration["spec"]> = {},
) {
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    body: {
      apiVersion: API_VERSION,
      kind: MIGRATION_KIND,
      metadata: { name },
      spec: { podName, ...extra },
    },
  });
}

async function setStatus(name: string, status: MigrationStatus) {
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
      body: { status },
    },
    mergePatch,
  );
}

const cond = (
  type: string,
  status: "True" | "False" | "Unknown",
  reason: string,
  message = "",
) => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: "2026-03-01T10:00:05Z",
});

const succeededStatus: MigrationStatus = {
  phase: "Succeeded",
  edgeNode: EDGENODE,
  policy: "checkpoint",
  sourceNode: NODE,
  targetNode: "plg-cloud-1",
  restoredPod: "sensor-a-restored",
  containers: [
    {
      name: "app",
      archivePath:
        "/var/lib/kubelet/checkpoints/checkpoint-sensor-a_plg-app-2026-03-01T10:00:01Z.tar",
      archiveSizeBytes: 25 * 1024 * 1024,
      image: "registry.example.com:5000/edgeshift/checkpoints:sensor-a-app",
      digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    },
  ],
  timestamps: {
    created: "2026-03-01T10:00:00Z",
    checkpointStarted: "2026-03-01T10:00:01Z",
    checkpointed: "2026-03-01T10:00:02Z",
    imagePushed: "2026-03-01T10:00:05Z",
    restoreStarted: "2026-03-01T10:00:05Z",
    restored: "2026-03-01T10:00:09Z",
    cutOver: "2026-03-01T10:00:10Z",
    finished: "2026-03-01T10:00:10Z",
  },
  durationSeconds: 10,
  duration: "10.0s",
  conditions: [
    cond("Checkpointed", "True", "CheckpointCreated"),
    cond("ImagePushed", "True", "ImagePushed"),
    cond("Restored", "True", "PodReady", "sensor-a-restored is Ready on plg-cloud-1"),
    cond("Succeeded", "True", "CutOver", "removed the original pod"),
  ],
};

beforeAll(async () => {
  await createNamespace({ kc: kube.kc, core, custom }, NS);
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: EDGENODE_PLURAL,
    body: fullEdgeNode(EDGENODE),
  });
  const status = fullEdgeNodeStatus();
  await custom.patchClusterCustomObjectStatus(
    { group: GROUP, version: VERSION, plural: EDGENODE_PLURAL, name: EDGENODE, body: { status } },
    mergePatch,
  );

  // Three Migrations in three states, oldest first.
  await createMigration("sensor-a-mig", "sensor-a");
  await setStatus("sensor-a-mig", succeededStatus);
  await createMigration("sensor-b-mig", "sensor-b", {
    reason: {
      type: "ThresholdExceeded",
      metric: "cpu",
      value: 93.4,
      threshold: 85,
      windowSeconds: 10,
    },
  });
  await setStatus("sensor-b-mig", {
    phase: "Failed",
    policy: "checkpoint",
    sourceNode: NODE,
    failureReason: "CheckpointFailed",
    message: "kubelet answered 500: method CheckpointContainer not implemented",
    timestamps: {
      created: "2026-03-01T11:00:00Z",
      checkpointStarted: "2026-03-01T11:00:01Z",
      finished: "2026-03-01T11:00:03Z",
    },
    duration: "3.0s",
    conditions: [
      cond(
        "Checkpointed",
        "False",
        "CheckpointFailed",
        "method CheckpointContainer not implemented",
      ),
      cond("Succeeded", "False", "CheckpointFailed", "the original pod keeps running"),
    ],
  });
  await createMigration("sensor-c-mig", "sensor-c", {
    targetNode: "plg-cloud-2",
    restorePolicy: "restart",
  });
  await setStatus("sensor-c-mig", {
    phase: "Restoring",
    policy: "restart",
    sourceNode: NODE,
    targetNode: "plg-cloud-2",
    timestamps: { created: "2026-03-01T12:00:00Z", restoreStarted: "2026-03-01T12:00:01Z" },
  });

  const ref = await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS,
    name: "sensor-a-mig",
  });
  await kube.kc.makeApiClient(EventsV1Api).createNamespacedEvent({
    namespace: NS,
    body: {
      metadata: { name: "sensor-a-mig.plg1" },
      eventTime: new V1MicroTime(),
      reportingController: "edgeshift.dev/operator",
      reportingInstance: "edgeshift-operator-0",
      action: "Finish",
      reason: "MigrationSucceeded",
      note: "pod sensor-a now runs as sensor-a-restored on plg-cloud-1",
      type: "Normal",
      regarding: {
        apiVersion: API_VERSION,
        kind: MIGRATION_KIND,
        name: "sensor-a-mig",
        namespace: NS,
        uid: (ref as Migration).metadata.uid,
      },
    },
  });
});

afterAll(async () => {
  await ignoreNotFound(
    custom.deleteClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
      name: EDGENODE,
    }),
  );
  await ignoreNotFound(core.deleteNamespace({ name: NS }));
});

describe("kubectl edgeshift status", () => {
  it("shows EdgeNodes with their nodes and runtime support, and recent migrations (as a kubectl plugin)", async () => {
    const r = await run(["status"], { viaKubectl: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(
      /^EDGENODE\s+READY\s+CHECKPOINT\s+NODES\s+RUNTIME SUPPORT\s+MONITORED PODS\s+STALE\s+ACTIVE\s+POLICY\s+AGE$/,
    );
    expect(r.stdout).toMatch(
      new RegExp(
        `^${EDGENODE}\\s+True\\s+False\\s+3\\s+2/3 nodes\\s+5\\s+1\\s+1\\s+checkpoint\\s+\\d+s$`,
        "m",
      ),
    );
    // The per-node table of this EdgeNode, and why checkpointing is not supported everywhere.
    const section = r.stdout.slice(r.stdout.indexOf(`${EDGENODE}:`));
    expect(section).toMatch(/NODE\s+RUNTIME\s+CHECKPOINT\s+RESTORE\s+NOTE/);
    expect(section).toMatch(/edge-1\s+cri-o:\/\/1\.33\.2\s+yes\s+yes/);
    expect(section).toMatch(/containerd:\/\/1\.7\.27\s+no\s+no/);
    expect(section).toContain(
      "CheckpointSupported=False SomeNodesUnsupported: edge-3 runs containerd 1.7.27",
    );
    // Newest first.
    const recent = r.stdout.slice(r.stdout.indexOf("Recent migrations"));
    const order = ["sensor-c-mig", "sensor-b-mig", "sensor-a-mig"].map((n) => recent.indexOf(n));
    expect(order.every((i) => i > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(recent).toMatch(
      new RegExp(
        `${NS}\\s+sensor-b-mig\\s+sensor-b\\s+Failed \\(CheckpointFailed\\)\\s+${NODE}\\s+cpu 93\\.4%>85%\\s+3\\.0s`,
      ),
    );
  });

  it("limits the recent migrations with --recent", async () => {
    const r = await run(["status", "--recent", "1"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Recent migrations \(1 of \d+, newest first\)/);
  });
});

describe("kubectl edgeshift list", () => {
  it("lists a namespace's migrations with phase, nodes, policy, trigger and duration", async () => {
    const r = await run(["list", "-n", NS]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^NAME\s+POD\s+DIRECTION\s+PHASE\s+SOURCE\s+TARGET\s+POLICY\s+TRIGGER\s+DURATION\s+AGE$/,
    );
    expect(lines).toHaveLength(4);
    expect(lines[1]).toMatch(
      new RegExp(
        `^sensor-a-mig\\s+sensor-a\\s+ToCloud\\s+Succeeded\\s+${NODE}\\s+plg-cloud-1\\s+checkpoint\\s+Manual\\s+10\\.0s\\s+\\d+s$`,
      ),
    );
    expect(lines[2]).toMatch(/^sensor-b-mig\s+sensor-b\s+ToCloud\s+Failed \(CheckpointFailed\)\s+/);
    // Still running: the duration so far, from status.timestamps.created (long ago).
    expect(lines[3]).toMatch(
      /^sensor-c-mig\s+sensor-c\s+ToCloud\s+Restoring\s+plg-edge-1\s+plg-cloud-2\s+restart\s+Manual\s+\d+h\d+m\s+\d+s$/,
    );
  });

  it("adds the namespace column with -A, and says so when a namespace has none", async () => {
    const all = await run(["list", "-A"]);
    expect(all.code).toBe(0);
    expect(all.stdout.split("\n")[0]).toMatch(/^NAMESPACE\s+NAME\s+POD/);
    expect(all.stdout).toMatch(
      new RegExp(`^${NS}\\s+sensor-a-mig\\s+sensor-a\\s+ToCloud\\s+Succeeded`, "m"),
    );
    const none = await run(["list", "-n", "kube-public"]);
    expect(none).toMatchObject({
      code: 0,
      stdout: "No migrations found in namespace kube-public.\n",
    });
  });
});

describe("kubectl edgeshift describe", () => {
  it("shows the timeline with each step's duration, the checkpoints, conditions and events", async () => {
    const r = await run(["describe", "sensor-a-mig", "-n", NS]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^Name:\s+sensor-a-mig$/m);
    expect(out).toMatch(/^Trigger:\s+Manual \(created by hand\)$/m);
    expect(out).toMatch(/^Target node:\s+plg-cloud-1$/m);
    expect(out).toMatch(/^Phase:\s+Succeeded$/m);
    expect(out).toMatch(
      /app\s+\/var\/lib\/kubelet\/checkpoints\/\S+\s+25\.0 MiB\s+registry\.example\.com:5000\/edgeshift\/checkpoints:sensor-a-app\s+sha256:0123/,
    );
    const timeline = out.slice(out.indexOf("Timeline:"), out.indexOf("Conditions:"));
    expect(timeline).toMatch(/Created\s+2026-03-01T10:00:00Z\s+\+0\.0s/);
    expect(timeline).toMatch(
      /Checkpointed\s+2026-03-01T10:00:02Z\s+\+2\.0s\s+1\.0s \(checkpoint\)/,
    );
    expect(timeline).toMatch(/Image pushed\s+2026-03-01T10:00:05Z\s+\+5\.0s\s+3\.0s \(push\)/);
    expect(timeline).toMatch(/Restored\s+2026-03-01T10:00:09Z\s+\+9\.0s\s+4\.0s \(restore\)/);
    expect(timeline).toMatch(/Cut over\s+2026-03-01T10:00:10Z\s+\+10\.0s\s+1\.0s \(cutover\)/);
    expect(out).toMatch(
      /Restored\s+True\s+PodReady\s+\S+\s+sensor-a-restored is Ready on plg-cloud-1/,
    );
    expect(out).toMatch(
      /Normal\s+MigrationSucceeded\s+\d+s\s+edgeshift\.dev\/operator\s+pod sensor-a now runs as sensor-a-restored/,
    );
  });

  it("names the failure and its reason for a failed migration", async () => {
    const r = await run(["describe", "sensor-b-mig", "-n", NS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^Failure:\s+CheckpointFailed: kubelet answered 500: method CheckpointContainer not implemented$/m,
    );
    expect(r.stdout).toMatch(
      /^Trigger:\s+ThresholdExceeded: cpu at 93\.4%, over the 85% trigger sustained over 10s$/m,
    );
    expect(r.stdout).toMatch(/Events:\n {2}\(none\)/);
  });

  it("exits 1 for a migration that does not exist", async () => {
    const r = await run(["describe", "nope", "-n", NS]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`migration "nope" not found in namespace ${NS}`);
  });
});

describe("kubectl edgeshift migrate", () => {
  /** Writes the next status only once the plugin has printed the previous phase: proof the lines are live. */
  async function advance(
    p: ReturnType<typeof start>,
    name: string,
    steps: [MigrationStatus, RegExp][],
  ): Promise<void> {
    for (const [status, printed] of steps) {
      await setStatus(name, status);
      await waitFor(() => p.lines.some((l) => printed.test(l)), {
        timeoutMs: 15_000,
        intervalMs: 20,
        description: `plugin to print ${printed}`,
      });
    }
  }

  async function podAndMigrationName(pod: string): Promise<string> {
    const created = await createPod({ kc: kube.kc, core, custom }, NS, pod, NODE);
    return migrationName(pod, created.metadata?.uid ?? "");
  }

  it("creates a Migration, prints each phase live with durations, and exits 0 when it succeeds", async () => {
    const name = await podAndMigrationName("sensor-d");
    const p = start(["migrate", "sensor-d", "-n", NS, "--to", "plg-cloud-1"]);
    const m = await waitFor(
      () =>
        custom
          .getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: MIGRATION_PLURAL,
            namespace: NS,
            name,
          })
          .then((x) => x as Migration),
      { timeoutMs: 15_000, description: `Migration ${name}` },
    );
    expect(m.spec).toMatchObject({
      podName: "sensor-d",
      targetNode: "plg-cloud-1",
      reason: { type: "Manual" },
    });
    await waitFor(() => p.lines.some((l) => /Pending\s+waiting for the operator/.test(l)), {
      timeoutMs: 15_000,
      description: "Pending line",
    });
    const t = { created: "2026-03-01T13:00:00Z", restoreStarted: "2026-03-01T13:00:01Z" };
    await advance(p, name, [
      [
        {
          phase: "Restoring",
          policy: "restart",
          sourceNode: NODE,
          targetNode: "plg-cloud-1",
          timestamps: t,
        },
        /Restoring\s+on plg-cloud-1 \(policy restart\)\s+\(Pending took \d+\.\ds\)/,
      ],
      [
        {
          phase: "CuttingOver",
          restoredPod: "sensor-d-r",
          timestamps: { ...t, restored: "2026-03-01T13:00:03Z" },
        },
        /CuttingOver\s+restored pod sensor-d-r is ready; removing the original\s+\(Restoring took \d+\.\ds\)/,
      ],
      [
        {
          phase: "Succeeded",
          duration: "4.0s",
          timestamps: {
            ...t,
            restored: "2026-03-01T13:00:03Z",
            cutOver: "2026-03-01T13:00:04Z",
            finished: "2026-03-01T13:00:04Z",
          },
          conditions: [cond("Succeeded", "True", "CutOver", "removed the original pod")],
        },
        /Succeeded\s+pod sensor-d now runs as sensor-d-r on plg-cloud-1/,
      ],
    ]);
    const r = await p.done;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^Created migration ${NS}/${name} for pod sensor-d on ${NODE} \\(policy: the EdgeNode's, target: plg-cloud-1\\)$`,
        "m",
      ),
    );
    // Elapsed time on each line, growing.
    const elapsed = [
      ...r.stdout.matchAll(/^\s+\+(\d+\.\d)s\s+(Pending|Restoring|CuttingOver|Succeeded)\s/gm),
    ].map((x) => Number(x[1]));
    expect(elapsed).toHaveLength(4);
    expect([...elapsed].sort((a, b) => a - b)).toEqual(elapsed);
    expect(r.stdout).toMatch(new RegExp(`Migration ${NS}/${name} succeeded in 4\\.0s\\.`));
    expect(r.stdout).toMatch(/Cut over\s+2026-03-01T13:00:04Z\s+\+4\.0s\s+1\.0s \(cutover\)/);
  });

  it("exits 1 naming the reason when the migration fails", async () => {
    const name = await podAndMigrationName("sensor-e");
    const p = start(["migrate", "sensor-e", "-n", NS, "--policy", "checkpoint"]);
    await waitFor(() => p.lines.some((l) => /Pending/.test(l)), {
      timeoutMs: 15_000,
      description: "Pending line",
    });
    await advance(p, name, [
      [
        { phase: "Checkpointing", policy: "checkpoint", sourceNode: NODE },
        /Checkpointing\s+on plg-edge-1\s+\(Pending took \d+\.\ds\)/,
      ],
    ]);
    await setStatus(name, {
      phase: "Failed",
      failureReason: "RuntimeUnsupported",
      message:
        "plg-edge-1 runs containerd 1.7.27, which cannot checkpoint; the original pod keeps running",
      conditions: [
        cond("Succeeded", "False", "RuntimeUnsupported", "containerd 1.7.27 cannot checkpoint"),
      ],
    });
    const r = await p.done;
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/Failed\s+RuntimeUnsupported: plg-edge-1 runs containerd 1\.7\.27/);
    expect(r.stderr).toContain(
      `Migration ${NS}/${name} failed: RuntimeUnsupported: plg-edge-1 runs containerd 1.7.27`,
    );
    expect(r.stderr).toContain(`kubectl edgeshift describe ${name} -n ${NS}`);

    // The pod's migration has ended: a second attempt is a new Migration, the next
    // attempt's name (the one the decision engine would give it).
    const again = await run(["migrate", "sensor-e", "-n", NS, "--no-follow"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`Created migration ${NS}/${name}-2 for pod sensor-e`);
  });

  it("with --no-follow creates the Migration with the flags' policy and target and returns at once", async () => {
    const name = await podAndMigrationName("sensor-f");
    const r = await run([
      "migrate",
      "sensor-f",
      "-n",
      NS,
      "--no-follow",
      "--policy",
      "restart",
      "--to",
      "plg-cloud-2",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Follow it with: kubectl edgeshift describe ${name} -n ${NS}`);
    const m = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS,
      name,
    })) as Migration;
    expect(m.spec).toEqual({
      podName: "sensor-f",
      // The CRD's default.
      direction: "ToCloud",
      targetNode: "plg-cloud-2",
      restorePolicy: "restart",
      reason: { type: "Manual" },
    });
  });

  it("stops following at --timeout with exit 124, leaving the migration to go on", async () => {
    await podAndMigrationName("sensor-g");
    const r = await run(["migrate", "sensor-g", "-n", NS, "--timeout", "1s"]);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(
      /Stopped following after 1s; migration \S+ is still Pending and goes on/,
    );
  });

  it("refuses bad usage with exit 2 and a missing pod with exit 1", async () => {
    const usage = await run(["migrate", "-n", NS]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^error: migrate needs the name of a pod/);
    const policy = await run(["migrate", "x", "--policy", "live"]);
    expect(policy.code).toBe(2);
    expect(policy.stderr).toContain("--policy must be checkpoint or restart");
    const missing = await run(["migrate", "no-such-pod", "-n", NS]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`pod "no-such-pod" not found in namespace ${NS}`);
  });
});
