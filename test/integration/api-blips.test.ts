// An API server that cannot decide is not a refusal. The real operator moves a
// restart Migration to Restoring while a validating webhook that nobody serves
// (failurePolicy Fail) makes the real API server answer the restored pod's
// creation with 500 "failed calling webhook", the way a webhook that is down,
// slow or being rolled out does. The operator retries: once the webhook goes,
// the pod is created; if it never goes, the Migration ends RestoreTimeout
// (although no restored pod ever existed), not RestoreFailed at the first 500.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MIGRATION_POD_LABEL } from "../../migration/restore/pod.ts";
import { freePort, waitUntil } from "../cluster/process.ts";
import { type EdgeFixture, edgeFixture } from "../support/edge-fixture.ts";
import { createMigration } from "../support/objects.ts";

const run = promisify(execFile);
const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const RESTORE_TIMEOUT_S = 30;

let f: EdgeFixture;
let admission: AdmissionregistrationV1Api;
let deadPort: number;
const NS = () => f.namespace;

const webhookName = (migration: string) => `edgeshift-test-blip-${migration}`;

/**
 * A webhook on the creation of `migration`'s restored pod (its label) in NS
 * only, at a port where nothing listens: the API server cannot call it.
 */
async function breakPodCreation(migration: string): Promise<void> {
  const name = webhookName(migration);
  await admission.createValidatingWebhookConfiguration({
    body: {
      metadata: { name },
      webhooks: [
        {
          name: `${name}.edgeshift.dev`,
          clientConfig: { url: `https://127.0.0.1:${deadPort}/validate` },
          rules: [
            {
              apiGroups: [""],
              apiVersions: ["v1"],
              operations: ["CREATE"],
              resources: ["pods"],
              scope: "Namespaced",
            },
          ],
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": NS() } },
          objectSelector: { matchLabels: { [MIGRATION_POD_LABEL]: migration } },
          failurePolicy: "Fail",
          sideEffects: "None",
          admissionReviewVersions: ["v1"],
          timeoutSeconds: 2,
        },
      ],
    },
  });
}

async function mendPodCreation(migration: string): Promise<void> {
  await admission
    .deleteValidatingWebhookConfiguration({ name: webhookName(migration) })
    .catch(() => {});
}

/** The API server's own count of requests it refused because it could not call the webhook. */
async function webhookCallFailures(migration: string): Promise<number> {
  const { stdout } = await run(kubectl, ["--kubeconfig", kubeconfig, "get", "--raw", "/metrics"], {
    maxBuffer: 64 * 1024 * 1024,
  });
  let n = 0;
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("apiserver_admission_webhook_rejection_count{")) continue;
    if (!line.includes(`name="${webhookName(migration)}.edgeshift.dev"`)) continue;
    if (!line.includes('error_type="calling_webhook_error"')) continue;
    n += Number(line.split(" ").at(-1));
  }
  return n;
}

async function restoredPods(migration: string): Promise<string[]> {
  const pods = await f.c.core.listNamespacedPod({
    namespace: NS(),
    labelSelector: `${MIGRATION_POD_LABEL}=${migration}`,
  });
  return pods.items.map((p) => p.metadata?.name ?? "");
}

beforeAll(async () => {
  deadPort = await freePort();
  f = await edgeFixture({
    prefix: "blip",
    kubeconfig,
    kubectl,
    natsUrl: inject("natsUrl"),
    pods: ["blip", "down"],
    spec: { restorePolicy: "restart" },
    operatorEnv: { EDGESHIFT_RESTORE_TIMEOUT: `${RESTORE_TIMEOUT_S}s` },
  });
  admission = f.c.kc.makeApiClient(AdmissionregistrationV1Api);
});

afterAll(async () => {
  for (const m of ["blip", "down"]) await mendPodCreation(m);
  await f?.cleanup();
});

describe("an API server that cannot decide", () => {
  it("retries the restored pod's creation through 500s from a webhook that is down, and creates it once the webhook is back", async () => {
    await breakPodCreation("blip");
    await createMigration(f.c, NS(), "blip", { podName: "blip" });
    // Held: the API server has answered the operator's creations with 500, twice.
    await waitUntil(
      "the API server refusing two creations of the restored pod",
      async () => ((await webhookCallFailures("blip")) >= 2 ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    const held = await f.read("blip");
    expect(held.status?.failureReason, held.status?.message).toBeUndefined();
    expect(held.status?.phase).toBe("Restoring");
    expect(await restoredPods("blip")).toEqual([]);
    await mendPodCreation("blip");
    const [pod] = await waitUntil(
      "the restored pod",
      async () => {
        const pods = await restoredPods("blip");
        return pods.length > 0 ? pods : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const m = await f.read("blip");
    expect(pod).toBe(m.status?.restoredPod);
    expect(m.status?.failureReason, m.status?.message).toBeUndefined();
  }, 120_000);

  it("ends RestoreTimeout, saying the pod was never created and why, when the webhook stays down", async () => {
    await breakPodCreation("down");
    await createMigration(f.c, NS(), "down", { podName: "down" });
    const m = await f.until(
      "down",
      "Failed",
      (x) => x.status?.phase === "Failed",
      (RESTORE_TIMEOUT_S + 90) * 1000,
    );
    expect(m.status?.failureReason, m.status?.message).toBe("RestoreTimeout");
    expect(m.status?.message).toMatch(
      new RegExp(
        `^the restored pod could not be created within ${RESTORE_TIMEOUT_S}(\\.0)?s; last error: HTTP 500: `,
      ),
    );
    expect(m.status?.message).toContain("failed calling webhook");
    expect(await webhookCallFailures("down")).toBeGreaterThanOrEqual(2);
    expect(await restoredPods("down")).toEqual([]);
    // The original was never touched.
    const original = await f.c.core.readNamespacedPod({ namespace: NS(), name: "down" });
    expect(original.metadata?.deletionTimestamp).toBeUndefined();
  }, 200_000);
});
