// The kubelet client against a local HTTPS peer that answers the way the
// kubelet does (the real kubelet, with real TokenReview/SubjectAccessReview,
// answers in test/nodes/kubelet-checkpoint.test.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  makeServingCertificate,
  type ServingCertificate,
} from "../../test/support/serving-cert.ts";
import {
  CheckpointError,
  type CheckpointErrorReason,
  checkpoint,
  checkpointFailure,
  checkpointPath,
  parseCheckpointResponse,
} from "./client.ts";

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value";
let cert: ServingCertificate;
let server: Server;
let port: number;
let answer: (req: IncomingMessage, res: ServerResponse) => void;
const seen: { method?: string; url?: string; authorization?: string }[] = [];

beforeAll(async () => {
  cert = await makeServingCertificate("kubelet-peer");
  server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
    answer(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  port = typeof addr === "object" && addr ? addr.port : 0;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  seen.length = 0;
});

const target = { namespace: "shop", pod: "web-0", container: "app" };
const call = (over: Partial<Parameters<typeof checkpoint>[1]> = {}) =>
  checkpoint(target, {
    host: "127.0.0.1",
    port,
    token: TOKEN,
    ca: cert.caPem,
    timeoutSeconds: 7,
    ...over,
  });

function respond(status: number, body: string) {
  answer = (_req, res) => {
    res.writeHead(status, { "content-type": "text/plain" });
    res.end(body);
  };
}

async function reasonOf(
  p: Promise<unknown>,
): Promise<{ reason: CheckpointErrorReason; message: string }> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointError);
    const e = err as CheckpointError;
    expect(`${e.message} ${e.stack}`).not.toContain("secret-token-value");
    return { reason: e.reason, message: e.message };
  }
  throw new Error("expected the checkpoint to fail");
}

describe("checkpoint", () => {
  it("POSTs to /checkpoint/{ns}/{pod}/{container}?timeout=N with the bearer token and returns the archive", async () => {
    const archive =
      "/var/lib/kubelet/checkpoints/checkpoint-web-0_shop-app-2025-01-01T00:00:00Z.tar";
    respond(200, JSON.stringify({ items: [archive] }));
    let calls = 0;
    const got = await call({
      token: () => {
        calls++;
        return TOKEN;
      },
    });
    expect(got).toBe(archive);
    expect(calls).toBe(1);
    expect(seen).toEqual([
      {
        method: "POST",
        url: "/checkpoint/shop/web-0/app?timeout=7",
        authorization: `Bearer ${TOKEN}`,
      },
    ]);
  });

  it("maps the kubelet's answers to reasons", async () => {
    const cases: [number, string, CheckpointErrorReason][] = [
      [401, "Unauthorized", "Unauthorized"],
      [
        403,
        "Forbidden (user=system:serviceaccount:x:y, verb=create, resource=nodes, subresource(s)=[checkpoint])",
        "Forbidden",
      ],
      [404, "404 page not found", "CheckpointNotEnabled"],
      [
        500,
        "checkpointing of shop/web-0/app failed (rpc error: code = Unimplemented desc = method CheckpointContainer not implemented)",
        "RuntimeUnsupported",
      ],
      [
        500,
        "checkpointing of shop/web-0/app failed (criu failed: type NOTIFY errno 0)",
        "CheckpointFailed",
      ],
      [
        500,
        "checkpointing of shop/web-0/app failed (rpc error: code = DeadlineExceeded desc = context deadline exceeded)",
        "Timeout",
      ],
      [502, "bad gateway", "CheckpointFailed"],
    ];
    for (const [status, body, reason] of cases) {
      respond(status, body);
      const r = await reasonOf(call());
      expect(r.reason).toBe(reason);
      expect(r.message).toContain(body.slice(0, 20));
    }
  });

  it("refuses a 200 without an archive path", async () => {
    for (const body of ["not json", "{}", '{"items":[]}', '{"items":[42]}']) {
      respond(200, body);
      expect((await reasonOf(call())).reason).toBe("CheckpointFailed");
    }
  });

  it("gives up with Timeout when the kubelet does not answer in time", async () => {
    answer = () => {}; // never answers
    const started = Date.now();
    const r = await reasonOf(call({ requestTimeoutMs: 300 }));
    expect(r.reason).toBe("Timeout");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("does not trust a kubelet whose certificate the given CA did not sign", async () => {
    respond(200, '{"items":["/x.tar"]}');
    const r = await reasonOf(call({ ca: undefined }));
    expect(r.reason).toBe("CheckpointFailed");
    expect(r.message).toMatch(/certificate/);
    // Says what is wrong and what to configure, not only the TLS error code.
    expect(r.message).toMatch(/serving certificate is not signed by the CA the agent trusts/);
    expect(r.message).toMatch(/serverTLSBootstrap/);
    expect(seen).toHaveLength(0);
  });

  it("reports an unreachable kubelet as CheckpointFailed", async () => {
    const r = await reasonOf(call({ port: 1 }));
    expect(r.reason).toBe("CheckpointFailed");
  });
});

describe("pure helpers", () => {
  it("escapes path segments", () => {
    expect(checkpointPath({ namespace: "a b", pod: "p/q", container: "c" }, 30)).toBe(
      "/checkpoint/a%20b/p%2Fq/c?timeout=30",
    );
  });

  it("parses the first item", () => {
    expect(parseCheckpointResponse('{"items":["/a.tar","/b.tar"]}')).toBe("/a.tar");
  });

  it("keeps the status on the error", () => {
    expect(checkpointFailure(403, "Forbidden").status).toBe(403);
  });
});
