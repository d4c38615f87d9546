// The agent against a kubelet whose serving certificate is self-signed (kubeadm's
// default) and one signed by a CA: a real HTTPS peer, certificates made by openssl.

import { createServer, type Server } from "node:https";
import type { SecureContextOptions } from "node:tls";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeSelfSignedCertificate } from "../../test/support/self-signed-cert.ts";
import {
  makeServingCertificate,
  type ServingCertificate,
} from "../../test/support/serving-cert.ts";
import { CheckpointError, checkpoint, type KubeletPin } from "./client.ts";

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value";
const ARCHIVE = "/var/lib/kubelet/checkpoints/checkpoint-web-0_shop-app-2025-01-01T00:00:00Z.tar";
const target = { namespace: "shop", pod: "web-0", container: "app" };

let selfA: { certPem: string; keyPem: string };
let selfB: { certPem: string; keyPem: string };
let otherNode: { certPem: string; keyPem: string };
let caSigned: ServingCertificate;
let server: Server | undefined;
let authorizations: (string | undefined)[] = [];

beforeAll(async () => {
  [selfA, selfB, otherNode, caSigned] = await Promise.all([
    makeSelfSignedCertificate("edge-1@1700000000", ["DNS:edge-1"]),
    makeSelfSignedCertificate("edge-1@1800000000", ["DNS:edge-1"]),
    makeSelfSignedCertificate("edge-2@1700000000", ["DNS:edge-2"]),
    makeServingCertificate("edge-1", ["DNS:edge-1", "IP:127.0.0.1"]),
  ]);
});
afterEach(async () => {
  authorizations = [];
  if (server) {
    server.closeAllConnections();
    await new Promise((r) => server?.close(r));
    server = undefined;
  }
});

async function kubelet(cert: { certPem: string; keyPem: string }): Promise<number> {
  server = createServer(
    { cert: cert.certPem, key: cert.keyPem } satisfies SecureContextOptions,
    (req, res) => {
      authorizations.push(req.headers.authorization);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ items: [ARCHIVE] }));
    },
  );
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : 0;
}

function swap(cert: { certPem: string; keyPem: string }) {
  server?.setSecureContext({ cert: cert.certPem, key: cert.keyPem });
  server?.closeAllConnections();
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).reason).toBe("CheckpointFailed");
    expect(`${(err as Error).message} ${(err as Error).stack}`).not.toContain("secret-token-value");
    return (err as Error).message;
  }
  throw new Error("expected the checkpoint to fail");
}

const base = { host: "127.0.0.1", token: TOKEN, nodeName: "edge-1", timeoutSeconds: 5 };

describe("kubelet TLS trust", () => {
  it("ClusterCA refuses a self-signed kubelet and says what it is and which setting fixes it", async () => {
    const port = await kubelet(selfA);
    const message = await failure(checkpoint(target, { ...base, port, ca: caSigned.caPem }));
    expect(message).toContain("The kubelet at 127.0.0.1");
    expect(message).toContain("node edge-1");
    expect(message).toContain("a self-signed serving certificate");
    expect(message).toContain("issuer CN=edge-1@1700000000");
    expect(message).toContain("the cluster CA");
    expect(message).toMatch(/serverTLSBootstrap/);
    expect(message).toMatch(/spec\.kubeletTLS\.mode: NodeSelfSigned/);
    expect(message).toMatch(/spec\.kubeletTLS\.caBundle/);
    expect(authorizations).toHaveLength(0); // the token never left
  });

  it("ClusterCA accepts a kubelet signed by the CA", async () => {
    const port = await kubelet(caSigned);
    await expect(checkpoint(target, { ...base, port, ca: caSigned.caPem })).resolves.toBe(ARCHIVE);
  });

  it("NodeSelfSigned accepts the node's self-signed kubelet and pins it", async () => {
    const port = await kubelet(selfA);
    const pin: KubeletPin = {};
    await expect(
      checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin }),
    ).resolves.toBe(ARCHIVE);
    expect(pin.spkiSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(pin.anchorPem).toContain("BEGIN CERTIFICATE");
    expect(authorizations).toEqual([`Bearer ${TOKEN}`]);
    // Again with the same pin: no re-pin, still accepted.
    const pinned = { ...pin };
    await expect(
      checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin }),
    ).resolves.toBe(ARCHIVE);
    expect(pin).toEqual(pinned);
  });

  it("NodeSelfSigned refuses a certificate that changed after it was pinned, without sending the token", async () => {
    const port = await kubelet(selfA);
    const pin: KubeletPin = {};
    await checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin });
    swap(selfB); // same names, new key: another self-signed certificate for edge-1
    authorizations = [];
    const message = await failure(
      checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin }),
    );
    expect(message).toContain("not the certificate pinned at");
    expect(message).toContain("issuer CN=edge-1@1800000000");
    expect(message).toMatch(/restart the agent pod/);
    expect(authorizations).toHaveLength(0);
  });

  it("NodeSelfSigned refuses a self-signed certificate of another node", async () => {
    const port = await kubelet(otherNode);
    const message = await failure(
      checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin: {} }),
    );
    expect(message).toContain("does not name node edge-1");
    expect(authorizations).toHaveLength(0);
  });

  it("NodeSelfSigned refuses a CA-issued certificate (that is what ClusterCA/CABundle are for)", async () => {
    const port = await kubelet(caSigned);
    const message = await failure(
      checkpoint(target, { ...base, port, tlsMode: "NodeSelfSigned", pin: {} }),
    );
    expect(message).toMatch(/not a self-signed certificate/);
    expect(message).toMatch(/ClusterCA or CABundle/);
    expect(authorizations).toHaveLength(0);
  });
});
