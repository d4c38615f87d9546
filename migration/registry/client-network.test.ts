// A registry that stops answering partway: every transport failure of every
// request a push makes (the tag and manifest reads that look for an earlier
// push, the config blob, the streamed layer, the token) reaches the caller as a
// RegistryError without a status and with the socket's error as its cause, so
// the agent can tell the registry's failures from its API server's. The peer
// is a minimal registry over plain HTTP on localhost that cuts the connection
// of the request the test names.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { writeSyntheticArchive } from "../../test/support/synthetic-archive.ts";
import { type ArchiveInfo, validateArchive } from "../archive/validate.ts";
import { RegistryClient, RegistryError } from "./client.ts";
import { pushCheckpointImage } from "./push.ts";

/** Which request the peer cuts: its answer stops after a few bytes and the socket closes. */
type Cut = "none" | "manifest" | "config" | "patch" | "token" | "stall";

let cut: Cut = "none";
let bearer = false;
let server: Server;
let host: string;
let dir: string;
let archive: ArchiveInfo;
const blobs = new Map<string, Buffer>();
const manifests = new Map<string, { type: string; bytes: Buffer }>();
const uploads = new Map<string, Buffer[]>();

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Headers that promise a body, a few bytes of it, then the connection goes (or, "stall", hangs). */
function cutShort(res: ServerResponse, stall = false): void {
  res.writeHead(200, { "content-type": "application/json", "content-length": "4096" });
  res.write('{"schemaVersion":');
  if (!stall) setImmediate(() => res.socket?.destroy());
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", `http://${host}`);
  const send = (status: number, headers: Record<string, string> = {}, b = "") => {
    res.writeHead(status, { "content-length": String(Buffer.byteLength(b)), ...headers });
    res.end(b);
  };
  if (url.pathname === "/token") {
    if (cut === "token") return cutShort(res);
    return send(200, { "content-type": "application/json" }, '{"token":"t","expires_in":300}');
  }
  if (bearer && req.headers.authorization !== "Bearer t") {
    await body(req);
    return send(401, { "www-authenticate": `Bearer realm="http://${host}/token",service="peer"` });
  }
  if (url.pathname === "/v2/") return send(200);
  const m = url.pathname.match(/^\/v2\/edgeshift\/ckpt\/(blobs|manifests)\/(.*)$/);
  const [, kind, rest = ""] = m ?? [];
  if (kind === "blobs" && rest === "uploads/" && req.method === "POST") {
    const id = randomBytes(8).toString("hex");
    uploads.set(id, []);
    return send(202, { location: `/v2/edgeshift/ckpt/blobs/uploads/${id}` });
  }
  if (kind === "blobs" && rest.startsWith("uploads/")) {
    const id = rest.slice(8);
    if (req.method === "PATCH") {
      if (cut === "patch") {
        req.once("data", () => req.socket.destroy());
        return;
      }
      uploads.get(id)?.push(await body(req));
      return send(202, { location: `/v2/edgeshift/ckpt/blobs/uploads/${id}` });
    }
    if (req.method === "DELETE") return send(204);
    if (req.method === "PUT") {
      const data = Buffer.concat([...(uploads.get(id) ?? []), await body(req)]);
      blobs.set(url.searchParams.get("digest") ?? sha(data), data);
      return send(201);
    }
  }
  if (kind === "blobs" && (req.method === "HEAD" || req.method === "GET")) {
    const b = blobs.get(rest);
    if (!b) return send(404);
    if (req.method === "GET" && cut === "config") return cutShort(res);
    res.writeHead(200, { "content-length": String(b.length) });
    return void res.end(req.method === "GET" ? b : undefined);
  }
  if (kind === "manifests" && req.method === "PUT") {
    const b = await body(req);
    const entry = { type: String(req.headers["content-type"]), bytes: b };
    manifests.set(rest, entry);
    manifests.set(sha(b), entry);
    return send(201, { "docker-content-digest": sha(b) });
  }
  if (kind === "manifests" && req.method === "GET") {
    if (cut === "manifest" || cut === "stall") return cutShort(res, cut === "stall");
    const mf = manifests.get(rest);
    if (!mf) return send(404);
    res.writeHead(200, { "content-type": mf.type, "docker-content-digest": sha(mf.bytes) });
    return void res.end(mf.bytes);
  }
  return send(405);
}

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), "edgeshift-regnet-"));
  const a = await writeSyntheticArchive(
    join(dir, "checkpoint-web-0_shop-app-2025-01-01T00:00:00Z.tar"),
    {
      namespace: "shop",
      pod: "web-0",
      container: "app",
      image: "registry.example/shop/web:1.2",
      dataBytes: 4 * 1024 * 1024,
    },
  );
  archive = await validateArchive(a.path);
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  cut = "none";
  bearer = false;
  blobs.clear();
  manifests.clear();
  uploads.clear();
});

const push = () =>
  pushCheckpointImage({
    archive,
    repository: `${host}/edgeshift/ckpt`,
    tag: "web-0-app",
    compression: "none",
    insecure: true,
  });

/** The push's error, which must be the registry's: no status, the socket's error kept. */
async function registryFailure(p: Promise<unknown>): Promise<RegistryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, String(err)).toBeInstanceOf(RegistryError);
  const e = err as RegistryError;
  expect(e.status).toBeUndefined();
  expect(e.cause).toBeInstanceOf(Error);
  return e;
}

describe("registry transport failures are RegistryErrors", () => {
  it("a registry where nothing listens", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await registryFailure(
      pushCheckpointImage({
        archive,
        repository: `127.0.0.1:${port}/edgeshift/ckpt`,
        tag: "web-0-app",
        insecure: true,
      }),
    );
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it("the answer to the tag lookup cut short", async () => {
    cut = "manifest";
    const err = await registryFailure(push());
    expect(err.message).toContain("GET");
  });

  it("the streamed layer upload's connection closed mid-body", async () => {
    cut = "patch";
    const err = await registryFailure(push());
    expect(err.message).toContain("PATCH");
  });

  it("the config blob of an earlier push cut short while looking for it", async () => {
    await push();
    expect(manifests.has("web-0-app")).toBe(true);
    cut = "config";
    const err = await registryFailure(push());
    expect(err.message).toContain("GET blob");
  });

  it("the token service's answer cut short", async () => {
    bearer = true;
    cut = "token";
    const err = await registryFailure(push());
    expect(err.message).toContain("Token request");
  });

  it("an answer that stops making progress", async () => {
    cut = "stall";
    const client = new RegistryClient({ registry: host, insecure: true, timeoutMs: 300 });
    try {
      await registryFailure(client.getManifest("edgeshift/ckpt", "web-0-app", ["*/*"]));
    } finally {
      client.close();
    }
  });

  it("a registry that answers, works: the same peer takes a whole push", async () => {
    const res = await push();
    expect(res.digest).toMatch(/^sha256:/);
    expect((await push()).reused).toBe(true);
  });
});
