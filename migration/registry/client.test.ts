// The registry client's auth and failure handling against a small local
// registry peer speaking the distribution protocol over TLS with its own CA
// (bearer token service, basic, anonymous). The real docker-registry is in
// test/integration/checkpoint-image.test.ts.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  makeServingCertificate,
  type ServingCertificate,
} from "../../test/support/serving-cert.ts";
import { writeSyntheticArchive } from "../../test/support/synthetic-archive.ts";
import { type ArchiveInfo, validateArchive } from "../archive/validate.ts";
import { RegistryCredentials } from "./auth.ts";
import { RegistryClient, RegistryError } from "./client.ts";
import { pushCheckpointImage } from "./push.ts";

type AuthMode = "bearer" | "basic" | "anonymous";

interface Peer {
  url: string;
  host: string;
  mode: AuthMode;
  /** Answer 500 to the PUT that completes a blob upload. */
  failCompletion: boolean;
  blobs: Map<string, Buffer>;
  manifests: Map<string, { type: string; bytes: Buffer }>;
  log: { method: string; path: string; authorization?: string }[];
  tokenRequests: URLSearchParams[];
  cancelled: string[];
  server: Server;
}

const USER = "robot";
const PASS = "s3cret-Pa55word";
let cert: ServingCertificate;
let peer: Peer;
let dir: string;
let archive: ArchiveInfo;

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function startPeer(): Promise<Peer> {
  const tokens = new Set<string>();
  const uploads = new Map<string, Buffer[]>();
  const p = {
    mode: "bearer",
    failCompletion: false,
    blobs: new Map(),
    manifests: new Map(),
    log: [],
    tokenRequests: [],
    cancelled: [],
  } as unknown as Peer;
  const basic = `Basic ${Buffer.from(`${USER}:${PASS}`).toString("base64")}`;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", p.url);
    const auth = req.headers.authorization;
    p.log.push({ method: req.method ?? "", path: url.pathname, authorization: auth });
    const send = (status: number, headers: Record<string, string> = {}, b = "") => {
      res.writeHead(status, { "content-length": String(Buffer.byteLength(b)), ...headers });
      res.end(b);
    };
    if (url.pathname === "/token") {
      p.tokenRequests.push(url.searchParams);
      if (auth !== basic) return send(401, {}, '{"errors":[{"code":"UNAUTHORIZED"}]}');
      const t = randomBytes(16).toString("hex");
      tokens.add(t);
      return send(
        200,
        { "content-type": "application/json" },
        JSON.stringify({ token: t, expires_in: 300 }),
      );
    }
    const ok =
      p.mode === "anonymous" ||
      (p.mode === "basic" && auth === basic) ||
      (p.mode === "bearer" && auth?.startsWith("Bearer ") && tokens.has(auth.slice(7)));
    if (!ok) {
      const challenge =
        p.mode === "basic"
          ? 'Basic realm="peer"'
          : `Bearer realm="${p.url}/token",service="peer-registry",scope="repository:edgeshift/ckpt:pull"`;
      await body(req);
      return send(
        401,
        { "www-authenticate": challenge },
        '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
      );
    }
    const m = url.pathname.match(/^\/v2\/(.+?)\/(blobs|manifests)\/(.*)$/);
    if (url.pathname === "/v2/") return send(200);
    if (!m) return send(404);
    const [, , kind, rest = ""] = m;
    if (kind === "blobs" && rest === "uploads/" && req.method === "POST") {
      const id = randomBytes(8).toString("hex");
      uploads.set(id, []);
      return send(202, { location: `/v2/edgeshift/ckpt/blobs/uploads/${id}?_state=x` });
    }
    if (kind === "blobs" && rest.startsWith("uploads/")) {
      const id = rest.slice(8);
      if (req.method === "PATCH") {
        uploads.get(id)?.push(await body(req));
        return send(202, { location: `/v2/edgeshift/ckpt/blobs/uploads/${id}?_state=y` });
      }
      if (req.method === "DELETE") {
        p.cancelled.push(id);
        uploads.delete(id);
        return send(204);
      }
      if (req.method === "PUT") {
        const data = Buffer.concat([...(uploads.get(id) ?? []), await body(req)]);
        const digest = url.searchParams.get("digest") ?? "";
        if (p.failCompletion)
          return send(500, {}, '{"errors":[{"code":"UNKNOWN","message":"disk full"}]}');
        if (`sha256:${createHash("sha256").update(data).digest("hex")}` !== digest) {
          return send(400, {}, '{"errors":[{"code":"DIGEST_INVALID"}]}');
        }
        p.blobs.set(digest, data);
        uploads.delete(id);
        return send(201, { location: `/v2/edgeshift/ckpt/blobs/${digest}` });
      }
    }
    if (kind === "blobs" && (req.method === "HEAD" || req.method === "GET")) {
      const b = p.blobs.get(rest);
      if (!b) return send(404);
      res.writeHead(200, { "content-length": String(b.length) });
      return res.end(req.method === "GET" ? b : undefined);
    }
    if (kind === "manifests" && req.method === "PUT") {
      const b = await body(req);
      const digest = `sha256:${createHash("sha256").update(b).digest("hex")}`;
      p.manifests.set(rest, { type: String(req.headers["content-type"]), bytes: b });
      p.manifests.set(digest, { type: String(req.headers["content-type"]), bytes: b });
      return send(201, { "docker-content-digest": digest });
    }
    if (kind === "manifests" && req.method === "GET") {
      const mf = p.manifests.get(rest);
      if (!mf) return send(404);
      res.writeHead(200, {
        "content-type": mf.type,
        "docker-content-digest": `sha256:${createHash("sha256").update(mf.bytes).digest("hex")}`,
      });
      return res.end(mf.bytes);
    }
    return send(405);
  };
  p.server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
  const addr = p.server.address();
  p.host = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  p.url = `https://${p.host}`;
  return p;
}

beforeAll(async () => {
  cert = await makeServingCertificate("registry-peer");
  peer = await startPeer();
  dir = await mkdtemp(join(tmpdir(), "edgeshift-regclient-"));
  const a = await writeSyntheticArchive(
    join(dir, "checkpoint-web-0_shop-app-2025-01-01T00:00:00Z.tar"),
    {
      namespace: "shop",
      pod: "web-0",
      container: "app",
      image: "registry.example/shop/web:1.2",
      dataBytes: 2 * 1024 * 1024,
    },
  );
  archive = await validateArchive(a.path);
});

afterAll(async () => {
  peer.server.closeAllConnections();
  await new Promise((r) => peer.server.close(r));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  peer.mode = "bearer";
  peer.failCompletion = false;
  peer.blobs.clear();
  peer.manifests.clear();
  peer.log.length = 0;
  peer.tokenRequests.length = 0;
  peer.cancelled.length = 0;
});

const push = (over: Partial<Parameters<typeof pushCheckpointImage>[0]> = {}) =>
  pushCheckpointImage({
    archive,
    repository: `${peer.host}/edgeshift/ckpt`,
    tag: "web-0-app",
    compression: "zstd",
    ca: cert.caPem,
    credentials: new RegistryCredentials(USER, PASS),
    ...over,
  });

describe("bearer token flow", () => {
  it("answers the challenge with a token from the realm and pushes with it", async () => {
    const res = await push();
    // The token service got the basic credentials, the service and our scope.
    expect(peer.tokenRequests.length).toBeGreaterThanOrEqual(1);
    const t = peer.tokenRequests[0];
    expect(t?.get("service")).toBe("peer-registry");
    expect(t?.get("scope")).toMatch(/^repository:edgeshift\/ckpt:pull/);
    // The registry itself never saw the password, only bearer tokens.
    const registryCalls = peer.log.filter((l) => l.path.startsWith("/v2/"));
    expect(registryCalls.some((l) => l.authorization?.startsWith("Basic"))).toBe(false);
    expect(
      registryCalls
        .filter((l) => l.method === "PATCH")
        .every((l) => l.authorization?.startsWith("Bearer ")),
    ).toBe(true);
    // One streaming PATCH for the layer, not many chunks.
    expect(registryCalls.filter((l) => l.method === "PATCH")).toHaveLength(1);
    // What the registry stored is what we reported.
    expect(peer.blobs.get(res.layer.digest)?.length).toBe(res.layer.size);
    expect(peer.manifests.get("web-0-app")?.type).toBe("application/vnd.oci.image.index.v1+json");
    expect(res.digest).toBe(
      `sha256:${createHash("sha256")
        .update(peer.manifests.get("web-0-app")?.bytes ?? "")
        .digest("hex")}`,
    );
    expect(res.reference).toBe(`${peer.host}/edgeshift/ckpt:web-0-app`);
  });

  it("re-pushing the same archive finds the image and sends no body bytes", async () => {
    await push();
    const writes = () => peer.log.filter((l) => ["PATCH", "PUT", "POST"].includes(l.method)).length;
    const before = writes();
    const again = await push();
    expect(again.reused).toBe(true);
    expect(again.sizes.uploadedBytes).toBe(0);
    expect(writes()).toBe(before);
  });

  it("fails with 401 on a wrong password, and the password is in no error", async () => {
    const err = await push({
      credentials: new RegistryCredentials(USER, "wrong-password-xyz"),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect(`${err} ${JSON.stringify(err)} ${(err as Error).stack}`).not.toContain(
      "wrong-password-xyz",
    );
    expect(peer.manifests.size).toBe(0);
  });

  it("refuses anonymous access when the registry wants credentials", async () => {
    const err = await push({ credentials: undefined }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
  });
});

describe("basic and anonymous registries", () => {
  it("retries with basic credentials on a Basic challenge", async () => {
    peer.mode = "basic";
    const res = await push();
    expect(peer.blobs.has(res.layer.digest)).toBe(true);
    expect(peer.tokenRequests).toHaveLength(0);
  });

  it("pushes anonymously when the registry asks for nothing", async () => {
    peer.mode = "anonymous";
    const res = await push({ credentials: undefined });
    expect(peer.manifests.has("web-0-app")).toBe(true);
    expect(peer.log.every((l) => l.authorization === undefined)).toBe(true);
    expect(res.reused).toBe(false);
  });
});

describe("TLS and failures", () => {
  it("trusts only the CA it is given", async () => {
    const err = await push({ ca: undefined }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(String(err)).toMatch(/certificate/);
  });

  it("speaks plain HTTP only when told the registry is insecure", async () => {
    const client = new RegistryClient({ registry: peer.host, ca: cert.caPem });
    expect(client.baseUrl).toBe(`https://${peer.host}`);
    client.close();
    // An insecure client talking to the TLS peer gets no usable answer.
    await expect(push({ insecure: true })).rejects.toThrow();
    expect(peer.manifests.size).toBe(0);
  });

  it("cancels the upload session and tags nothing when completing the blob fails", async () => {
    peer.failCompletion = true;
    const err = await push().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(String(err)).toContain("disk full");
    expect(peer.cancelled).toHaveLength(1);
    expect(peer.manifests.size).toBe(0);
  });

  it("logs no credentials at debug level", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "trace" }, { write: (l: string) => lines.push(l) });
    await push({ logger });
    expect(lines.length).toBeGreaterThan(0);
    const all = lines.join("");
    expect(all).not.toContain(PASS);
    expect(all).not.toContain(Buffer.from(`${USER}:${PASS}`).toString("base64"));
  });
});
