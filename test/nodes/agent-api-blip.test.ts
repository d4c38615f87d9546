// The edge agent when its API server blips, on a real node: the bundle's agent
// pod on edge-1 checkpoints through the real kubelet and pushes to the
// cluster's registry, and the API server then fails the agent's write of the
// image's digest with a 500, as it does for any webhook it cannot call. The
// hold is real API-server machinery: a ValidatingWebhookConfiguration with
// failurePolicy Fail whose URL is a port where nothing listens, matching only
// that write (the agent's identity, this Migration, the status gaining a
// digest). It is released once the API server's own counter
// (apiserver_admission_webhook_rejection_count) shows it refused the agent,
// never after a sleep. A blip is no verdict on the push: nothing the agent made
// may be undone, and the retry must finish the step with the image it pushed.
// No operator acts here (its Lease is held), as in agent.test.ts.
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EDGENODE_LABEL,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { agentIdentity } from "../../operator/edgenode/agent.ts";
import { mergePatch } from "../../operator/kube/patch.ts";
import { SYSTEM_NAMESPACE } from "../cluster/bundle.ts";
import { waitUntil } from "../cluster/process.ts";
import { getMigration } from "./moves.ts";
import {
  agentPod,
  archivesOn,
  manifestStatus,
  operatorLeader,
  releaseOperatorLease,
  stopOperator,
} from "./node-control.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const ID = "agblip";
const POD = `${ID}-web`;
const MIGRATION = `${ID}-m`;
const HOOK_CONFIG = "edgeshift-test-api-blip";
const HOOK = "blip.edgeshift.test";
const NS = () => cluster().appNamespace;
const EDGE = () => cluster().nodes[0]?.name ?? "";
const REPO = () => `${cluster().registry.host}/edgeshift/checkpoints`;
const AGENT = () => agentIdentity(SYSTEM_NAMESPACE, cluster().edgeNode);

const get = () => getMigration(NS(), MIGRATION);
const cond = (m: Migration, type: string) => m.status?.conditions?.find((x) => x.type === type);

/** The Migration, without a status yet: the agent does not act on it. */
async function createMigration(): Promise<void> {
  await clients().custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: MIGRATION_PLURAL,
    namespace: NS(),
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "Migration",
      metadata: {
        name: MIGRATION,
        labels: { [SOURCE_NODE_LABEL]: EDGE(), [EDGENODE_LABEL]: cluster().edgeNode, test: ID },
      },
      spec: { podName: POD, containers: ["main"] },
    },
  });
}

/** The Migration in the Checkpointing phase, as the operator leaves it for the agent. */
async function checkpointing(): Promise<void> {
  await clients().custom.patchNamespacedCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS(),
      name: MIGRATION,
      body: {
        status: {
          phase: "Checkpointing",
          sourceNode: EDGE(),
          edgeNode: cluster().edgeNode,
          agentIdentity: AGENT(),
          policy: "checkpoint",
          containers: [{ name: "main" }],
        },
      },
    },
    mergePatch,
  );
}

/** A TCP port on this host where nothing listens: bound, then closed. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A webhook the API server must call, and cannot, for the agent's write that
 * records a digest on this Migration's status: that write gets a 500 "failed
 * calling webhook"; every other write passes untouched. The test's own dry
 * runs on the Migration match too: one refused shows the hold in force.
 */
async function holdDigestWrite(): Promise<void> {
  const containers = (o: string) => `${o}.status.?containers.orValue([])`;
  await apply({
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: HOOK_CONFIG },
    webhooks: [
      {
        name: HOOK,
        clientConfig: { url: `https://127.0.0.1:${await closedPort()}/hold` },
        rules: [
          {
            apiGroups: [GROUP],
            apiVersions: [VERSION],
            operations: ["UPDATE"],
            resources: [`${MIGRATION_PLURAL}/status`],
            scope: "Namespaced",
          },
        ],
        failurePolicy: "Fail",
        sideEffects: "None",
        admissionReviewVersions: ["v1"],
        timeoutSeconds: 5,
        matchConditions: [
          {
            name: "this-migration",
            expression: `request.namespace == '${NS()}' && request.name == '${MIGRATION}'`,
          },
          {
            name: "the-agent-records-a-digest-or-a-dry-run",
            expression: `request.dryRun == true || (request.userInfo.username == '${AGENT()}' && ${containers("object")}.exists(c, has(c.digest)) && !${containers("oldObject")}.exists(c, has(c.digest)))`,
          },
        ],
      },
    ],
  });
  await waitUntil(
    "the API server to call the webhook",
    async () => ((await dryRunRefused()) ? true : undefined),
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

/** A server-side dry run of a status write on the Migration: refused while the hold is in force. */
async function dryRunRefused(): Promise<boolean> {
  return kubectl([
    "-n",
    NS(),
    "patch",
    "migration",
    MIGRATION,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status: { message: "dry run" } }),
    "--dry-run=server",
  ]).then(
    () => false,
    (err: Error) => {
      if (err.message.includes("failed calling webhook")) return true;
      throw err;
    },
  );
}

async function releaseHold(): Promise<void> {
  await kubectl(["delete", "validatingwebhookconfiguration", HOOK_CONFIG, "--ignore-not-found"]);
}

/** The API server's count of requests the hold refused because it could not call the webhook. */
async function webhookRefusals(): Promise<number> {
  const text = await kubectl(["get", "--raw", "/metrics"]);
  let n = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_admission_webhook_rejection_count{")) continue;
    if (!line.includes(`name="${HOOK}"`)) continue;
    if (!line.includes('error_type="calling_webhook_error"')) continue;
    n += Number(line.split(" ").at(-1));
  }
  return n;
}

async function agentLog(): Promise<string> {
  const pod = await agentPod(EDGE());
  return kubectl(["-n", SYSTEM_NAMESPACE, "logs", pod.metadata?.name ?? "", "-c", "agent"]);
}

/** The checkpoint registry: the digest a tag points to, and the tags of the repository. */
async function registry(path: string, method = "GET"): Promise<Response> {
  const reg = cluster().registry;
  const name = REPO().slice(REPO().indexOf("/") + 1);
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString("base64");
  return fetch(`${reg.hostUrl}/v2/${name}/${path}`, {
    method,
    headers: {
      authorization: `Basic ${auth}`,
      accept: "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
    },
  });
}

beforeAll(async () => {
  await releaseHold();
  await stopOperator();
  await agentPod(EDGE());
}, 180_000);

afterAll(async () => {
  await releaseHold();
  await clients()
    .custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: NS(),
      name: MIGRATION,
    })
    .catch(() => {});
  // The agent's finalizer goes once it deleted the image: then the operator may lead again.
  await waitUntil(
    `Migration ${MIGRATION} gone`,
    async () =>
      get().then(
        () => undefined,
        () => true,
      ),
    { timeoutMs: 60_000 },
  ).catch(() => {});
  await clients()
    .core.deleteNamespacedPod({ namespace: NS(), name: POD, gracePeriodSeconds: 0 })
    .catch(() => {});
  await releaseOperatorLease();
  await operatorLeader();
}, 180_000);

describe("edge agent under an API-server blip", () => {
  it("a 500 on the write of the pushed image's digest fails nothing: after the blip the step ends ImagePushed, one image, no archive", async () => {
    await apply(busyboxPod(NS(), POD, EDGE(), "while true; do sleep 1; done"));
    await waitForPod(NS(), POD, "Ready", podReady);
    const before = await webhookRefusals();
    await createMigration();
    try {
      await holdDigestWrite();
      // The hold's own dry runs count too: from here on, only the agent's writes.
      const dryRuns = await webhookRefusals();
      expect(dryRuns).toBeGreaterThan(before);
      await checkpointing();
      const refused = await waitUntil(
        "the API server to refuse the agent's digest write",
        async () => {
          const n = await webhookRefusals();
          return n > dryRuns ? n : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 100 },
      );
      expect(refused).toBeGreaterThan(dryRuns);
      // During the blip: the image is in the registry, the archive still on
      // the node, and nothing recorded as failed.
      expect(await manifestStatus(REPO(), `${MIGRATION}-main`)).toBe(200);
      expect(await archivesOn(EDGE(), NS(), POD)).toHaveLength(1);
      const held = await get();
      expect(cond(held, "Checkpointed")?.status).toBe("True");
      expect(cond(held, "ImagePushed")?.status, await agentLog()).not.toBe("False");
      expect(held.status?.containers?.[0]?.digest).toBeUndefined();
    } finally {
      await releaseHold();
    }
    const m = await waitUntil(
      `${MIGRATION} ImagePushed decided`,
      async () => {
        const x = await get();
        const s = cond(x, "ImagePushed")?.status;
        return s === "True" || s === "False" ? x : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    const log = await agentLog();
    expect(cond(m, "ImagePushed"), log).toMatchObject({ status: "True", reason: "ImagePushed" });
    expect(cond(m, "Checkpointed")).toMatchObject({ status: "True", reason: "CheckpointCreated" });
    // The agent saw the API server's 500 and backed off; the retry found the image already pushed.
    expect(log).toContain("A Kubernetes API call failed; retrying with backoff");
    expect(log).toContain("failed calling webhook");
    expect(log).toContain("Found checkpoint image already pushed");
    // One image: the tag of this Migration's container, pointing at the digest recorded.
    const digest = m.status?.containers?.[0]?.digest ?? "";
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const head = await registry(`manifests/${MIGRATION}-main`, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers.get("docker-content-digest")).toBe(digest);
    const tags = ((await (await registry("tags/list")).json()) as { tags?: string[] }).tags ?? [];
    expect(tags.filter((t) => t.startsWith(`${MIGRATION}-`))).toEqual([`${MIGRATION}-main`]);
    // Pushed, recorded, then deleted: no archive left on the node.
    expect(await archivesOn(EDGE(), NS(), POD)).toEqual([]);
    const pod = await waitForPod(NS(), POD, "Ready", podReady);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  });
});
