// The cutover deadline leaves the owner its time after the reveal. A
// ReplicaSet's pod moves (a restart Migration; the test plays the kubelets);
// while the restored pod is Ready, an admission policy refuses the operator's
// reveal for longer than the cutover timeout (an API server that is slow or
// refusing, a webhook being rolled out). Once the reveal goes through, the
// real ReplicaSet controller must still get to adopt the restored pod and
// remove the original: the Migration ends Succeeded, not CutOverFailed "did
// not adopt" at the very pass that revealed it.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { AdmissionregistrationV1Api, AppsV1Api, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MIGRATION_POD_LABEL } from "../../migration/restore/pod.ts";
import { waitUntil } from "../cluster/process.ts";
import { type EdgeFixture, edgeFixture } from "../support/edge-fixture.ts";
import { holdPolicyYaml, refusedUnder } from "../support/hold-policy.ts";
import { createMigration, setPodRunning } from "../support/objects.ts";
import { OPERATOR_NAMESPACE } from "../support/operator.ts";

const run = promisify(execFile);
const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const CUTOVER_TIMEOUT_S = 3;
const HOLD = "edgeshift-test-cutdl-hold";
const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:edgeshift-operator`;
const PROBE = "cutdl-probe-restored";

let f: EdgeFixture;
let apps: AppsV1Api;
let admission: AdmissionregistrationV1Api;

const kube = (args: string[], input?: string) => {
  const p = run(kubectl, ["--kubeconfig", kubeconfig, ...args], { maxBuffer: 64 << 20 });
  if (input !== undefined) p.child.stdin?.end(input);
  return p.then((r) => r.stdout);
};

/** What the API server has refused under the hold policy so far (its own metric). */
async function refusals(): Promise<number> {
  return refusedUnder(await kube(["get", "--raw", "/metrics"]), HOLD);
}

/** Refuses every change the operator makes to a restored pod in the fixture's namespace. */
async function holdReveal(): Promise<void> {
  await kube(
    ["apply", "-f", "-"],
    holdPolicyYaml({
      name: HOLD,
      namespace: f.namespace,
      operatorUser: OPERATOR_USER,
      what: "reveal",
    }),
  );
  // In force once the API server refuses the operator a change to a restored
  // pod (a server-side dry run as the operator, on a pod that never runs).
  await f.c.core.createNamespacedPod({
    namespace: f.namespace,
    body: {
      metadata: { name: PROBE, labels: { [MIGRATION_POD_LABEL]: "probe" } },
      spec: {
        nodeSelector: { "edgeshift.dev/no-such-node": "true" },
        containers: [{ name: "c", image: "registry.local/workload:1" }],
      },
    },
  });
  await waitUntil(
    "the hold in force",
    async () =>
      (await kube([
        "-n",
        f.namespace,
        "--as",
        OPERATOR_USER,
        "label",
        "pod",
        PROBE,
        "edgeshift.dev/dry-run=x",
        "--dry-run=server",
      ]).then(
        () => false,
        () => true,
      ))
        ? true
        : undefined,
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

async function releaseReveal(): Promise<void> {
  await admission.deleteValidatingAdmissionPolicyBinding({ name: HOLD }).catch(() => {});
  await admission.deleteValidatingAdmissionPolicy({ name: HOLD }).catch(() => {});
}

async function podsOf(app: string): Promise<V1Pod[]> {
  return (await f.c.core.listNamespacedPod({ namespace: f.namespace, labelSelector: `app=${app}` }))
    .items;
}

beforeAll(async () => {
  f = await edgeFixture({
    prefix: "cutdl",
    kubeconfig,
    kubectl,
    natsUrl: inject("natsUrl"),
    pods: [],
    spec: { restorePolicy: "restart" },
    operatorEnv: { EDGESHIFT_CUTOVER_TIMEOUT: `${CUTOVER_TIMEOUT_S}s` },
  });
  apps = f.c.kc.makeApiClient(AppsV1Api);
  admission = f.c.kc.makeApiClient(AdmissionregistrationV1Api);
});

afterAll(async () => {
  await releaseReveal();
  await apps
    .deleteCollectionNamespacedReplicaSet({ namespace: f?.namespace ?? "" })
    .catch(() => {});
  await f?.cleanup();
});

describe("the cutover deadline", () => {
  it("counts from the reveal: held past the timeout, the ReplicaSet still adopts the restored pod and the Migration succeeds", async () => {
    const rs = await apps.createNamespacedReplicaSet({
      namespace: f.namespace,
      body: {
        metadata: { name: "web" },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: {
              nodeName: f.edge,
              automountServiceAccountToken: false,
              containers: [{ name: "app", image: "registry.local/workload:1" }],
            },
          },
        },
      },
    });
    const [orig] = await waitUntil(
      "the ReplicaSet's pod",
      async () => {
        const p = await podsOf("web");
        return p.length === 1 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const origName = orig?.metadata?.name ?? "";
    await setPodRunning(f.c, f.namespace, origName);

    await holdReveal();
    await createMigration(f.c, f.namespace, "web", { podName: origName });
    const restoring = await f.until("web", "a restored pod", (m) => Boolean(m.status?.restoredPod));
    const restored = restoring.status?.restoredPod ?? "";
    await waitUntil(
      "the restored pod created",
      async () =>
        f.c.core
          .readNamespacedPod({ namespace: f.namespace, name: restored })
          .catch(() => undefined),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const before = await refusals();
    // The test plays the cloud node's kubelet: the restored pod runs and is Ready.
    await setPodRunning(f.c, f.namespace, restored);
    const cutting = await f.until("web", "CuttingOver", (m) => m.status?.phase === "CuttingOver");
    const readyAt = Date.parse(cutting.status?.timestamps?.restored ?? "");
    // Held past the deadline as counted from Ready, refused at least twice.
    await waitUntil(
      "the reveal refused twice and held past the cutover timeout",
      async () =>
        (await refusals()) - before >= 2 && Date.now() > readyAt + (CUTOVER_TIMEOUT_S + 1) * 1000
          ? true
          : undefined,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const held = await f.read("web");
    expect(held.status?.phase, held.status?.message).toBe("CuttingOver");
    expect(held.status?.timestamps?.revealed).toBeUndefined();
    await releaseReveal();

    const done = await f.until(
      "web",
      "finished",
      (m) => m.status?.phase === "Succeeded" || m.status?.phase === "Failed",
    );
    expect(done.status?.phase, `${done.status?.failureReason}: ${done.status?.message}`).toBe(
      "Succeeded",
    );
    const revealedAt = Date.parse(done.status?.timestamps?.revealed ?? "");
    expect(revealedAt).toBeGreaterThan(readyAt + CUTOVER_TIMEOUT_S * 1000);
    // One copy the ReplicaSet owns: the restored pod; the ReplicaSet removed the original.
    const kept = await f.c.core.readNamespacedPod({ namespace: f.namespace, name: restored });
    expect(kept.metadata?.ownerReferences?.find((o) => o.controller)?.uid).toBe(rs.metadata?.uid);
    expect(kept.metadata?.deletionTimestamp).toBeUndefined();
    const left = await f.c.core
      .readNamespacedPod({ namespace: f.namespace, name: origName })
      .catch(() => undefined);
    expect(left?.metadata?.deletionTimestamp ?? "gone").toBeTruthy();
    const live = (await podsOf("web")).filter((p) => !p.metadata?.deletionTimestamp);
    expect(live.map((p) => p.metadata?.name)).toEqual([restored]);
  }, 120_000);
});
