// Which errors fail an agent step and which go back to the work queue. The
// Kubernetes API errors are the real client's (client-node over undici)
// against a local HTTP peer answering as the API server does (a Status body),
// refusing the connection, or resetting it; the registry's are the real
// registry client's against a closed port.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequeueError } from "../../operator/kube/workqueue.ts";
import { ArchiveError } from "../archive/errors.ts";
import { CheckpointError } from "../kubelet/client.ts";
import { RegistryClient, RegistryError } from "../registry/client.ts";
import { classifyStepError, StepFailure } from "./errors.ts";

let server: Server;
let port: number;
/** A port on which nothing listens (it was bound, then closed). */
let closedPort: number;

/** What the API server answers when a ValidatingWebhookConfiguration with failurePolicy Fail cannot reach its webhook. */
const WEBHOOK_DOWN = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message:
    'Internal error occurred: failed calling webhook "hold.edgeshift.test": failed to call webhook: Post "https://127.0.0.1:9/hold?timeout=5s": dial tcp 127.0.0.1:9: connect: connection refused',
  reason: "InternalError",
  code: 500,
};

function status(code: number, reason: string, message: string) {
  return { kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code };
}

const ANSWERS: Record<string, { code: number; body: object } | "reset"> = {
  webhook: { code: 500, body: WEBHOOK_DOWN },
  unavailable: {
    code: 503,
    body: status(503, "ServiceUnavailable", "the server is shutting down"),
  },
  throttled: { code: 429, body: status(429, "TooManyRequests", "too many requests") },
  conflict: {
    code: 409,
    body: status(409, "Conflict", "the object has been modified; please apply your changes"),
  },
  policy: {
    code: 403,
    body: status(
      403,
      "Forbidden",
      "migrations.edgeshift.dev \"m\" is forbidden: ValidatingAdmissionPolicy 'edgeshift-agent-writes' denied request",
    ),
  },
  invalid: { code: 422, body: status(422, "Invalid", 'Migration.edgeshift.dev "m" is invalid') },
  reset: "reset",
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const what = ANSWERS[req.url?.split("/").at(-1) ?? ""];
    if (what === "reset" || !what) {
      req.socket.destroy();
      return;
    }
    const body = JSON.stringify(what.body);
    res.writeHead(what.code, { "content-type": "application/json" });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

/** The error the real client-node throws reading Migration `name` from a server on `at`. */
async function apiError(name: string, at = port): Promise<unknown> {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node speaks plain HTTP only with skipTLSVerify.
    clusters: [{ name: "c", server: `http://127.0.0.1:${at}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  const custom = kc.makeApiClient(CustomObjectsApi);
  return custom
    .getNamespacedCustomObject({
      group: "edgeshift.dev",
      version: "v1alpha1",
      plural: "migrations",
      namespace: "ns",
      name,
    })
    .then(
      () => {
        throw new Error("the read succeeded");
      },
      (err: unknown) => err,
    );
}

describe("classifyStepError: the agent's Kubernetes API calls", () => {
  it("an API server that cannot call a webhook (500) is a blip to back off from, in either step", async () => {
    const err = await apiError("webhook");
    for (const step of ["Checkpointed", "ImagePushed"] as const) {
      const out = classifyStepError(err, step);
      expect(out).toMatchObject({ kind: "apiUnavailable", status: 500 });
      expect(out.kind === "apiUnavailable" && out.message).toContain("failed calling webhook");
    }
  });

  it("503 and 429 are blips too", async () => {
    expect(classifyStepError(await apiError("unavailable"), "ImagePushed")).toMatchObject({
      kind: "apiUnavailable",
      status: 503,
    });
    expect(classifyStepError(await apiError("throttled"), "Checkpointed")).toMatchObject({
      kind: "apiUnavailable",
      status: 429,
    });
  });

  it("a connection refused or reset by the API server is a blip, never RegistryUnavailable", async () => {
    const refused = await apiError("m", closedPort);
    const reset = await apiError("reset");
    for (const err of [refused, reset]) {
      expect(classifyStepError(err, "ImagePushed")).toMatchObject({
        kind: "apiUnavailable",
        status: undefined,
      });
    }
  });

  it("a bare errno error, which no component claims, is the API client's transport", () => {
    const err = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
    expect(classifyStepError(err, "ImagePushed").kind).toBe("apiUnavailable");
  });

  it("409 is a quiet requeue", async () => {
    expect(classifyStepError(await apiError("conflict"), "ImagePushed")).toEqual({
      kind: "conflict",
    });
    expect(classifyStepError(new RequeueError("conflict"), "Checkpointed")).toEqual({
      kind: "conflict",
    });
  });

  it("403 from an admission policy and 422 are refusals, with the API server's message, and fail no step", async () => {
    const policy = classifyStepError(await apiError("policy"), "ImagePushed");
    expect(policy).toMatchObject({ kind: "apiRefused", status: 403 });
    expect(policy.kind === "apiRefused" && policy.message).toContain("edgeshift-agent-writes");
    expect(classifyStepError(await apiError("invalid"), "Checkpointed")).toMatchObject({
      kind: "apiRefused",
      status: 422,
    });
  });
});

describe("classifyStepError: the step's own verdicts", () => {
  it("only a RegistryError means the registry: unreachable is RegistryUnavailable", async () => {
    const client = new RegistryClient({ registry: `127.0.0.1:${closedPort}`, insecure: true });
    const err = await client.ping("edgeshift/checkpoints").then(
      () => undefined,
      (e: unknown) => e,
    );
    client.close();
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBeUndefined();
    expect(((err as RegistryError).cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
    const out = classifyStepError(err, "ImagePushed");
    expect(out.kind === "failed" && out.failure).toMatchObject({
      condition: "ImagePushed",
      reason: "RegistryUnavailable",
    });
  });

  it("a registry's 5xx is RegistryUnavailable, its 4xx PushFailed", () => {
    const down = classifyStepError(new RegistryError("x", { status: 503 }), "ImagePushed");
    expect(down.kind === "failed" && down.failure.reason).toBe("RegistryUnavailable");
    const denied = classifyStepError(
      new RegistryError("x", { status: 403, code: "DENIED" }),
      "ImagePushed",
    );
    expect(denied.kind === "failed" && denied.failure.reason).toBe("PushFailed");
  });

  it("the kubelet's and the archive's errors fail Checkpointed", () => {
    const unsupported = classifyStepError(
      new CheckpointError("RuntimeUnsupported", "not implemented"),
      "Checkpointed",
    );
    expect(unsupported.kind === "failed" && unsupported.failure).toMatchObject({
      condition: "Checkpointed",
      reason: "RuntimeUnsupported",
    });
    // A kubelet that cannot be reached is the kubelet's failure, not the API server's.
    const unreachable = classifyStepError(
      new CheckpointError("CheckpointFailed", "Cannot reach the kubelet", {
        cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      }),
      "Checkpointed",
    );
    expect(unreachable.kind === "failed" && unreachable.failure.reason).toBe("CheckpointFailed");
    const invalid = classifyStepError(
      new ArchiveError("ArchiveInvalid", "not a tar"),
      "ImagePushed",
    );
    expect(invalid.kind === "failed" && invalid.failure).toMatchObject({
      condition: "Checkpointed",
      reason: "ArchiveInvalid",
    });
  });

  it("an error nobody claims fails the step that was running", () => {
    const enoent = Object.assign(new Error("ENOENT: no such file"), { code: "ENOENT" });
    const cp = classifyStepError(enoent, "Checkpointed");
    expect(cp.kind === "failed" && cp.failure).toMatchObject({
      condition: "Checkpointed",
      reason: "CheckpointFailed",
    });
    const push = classifyStepError(enoent, "ImagePushed");
    expect(push.kind === "failed" && push.failure).toMatchObject({
      condition: "ImagePushed",
      reason: "PushFailed",
    });
    const own = new StepFailure("ImagePushed", "ArchiveInvalid", "no archive recorded");
    expect(classifyStepError(own, "Checkpointed")).toEqual({ kind: "failed", failure: own });
  });
});
