// A large checkpoint archive pushed to the real docker-registry (htpasswd basic
// auth) and read back with skopeo. Only the registry is real here: the archive
// is synthetic (test/support/synthetic-archive.ts, CRI-O's layout and generated
// memory pages) because what is measured is the push's streaming, memory and
// wire bytes, which depend on the archive's size and not on its content. The
// real kubelet's archives and their push are tested in test/nodes/.
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { scanTar } from "../../migration/archive/tar.ts";
import { type ArchiveInfo, validateArchive } from "../../migration/archive/validate.ts";
import type { Compression } from "../../migration/oci/image.ts";
import { RegistryCredentials } from "../../migration/registry/auth.ts";
import { RegistryClient, RegistryError } from "../../migration/registry/client.ts";
import { pushCheckpointImage } from "../../migration/registry/push.ts";
import { type CompiledEntry, compileEntry } from "../support/compiled-child.ts";
import { CountingProxy } from "../support/counting-proxy.ts";
import type { PushChildRequest, PushChildResponse } from "../support/push-child.ts";
import { kubeletArchiveName, writeSyntheticArchive } from "../support/synthetic-archive.ts";

const run = promisify(execFile);
const suffix = randomBytes(3).toString("hex");
const NS = `ckpt-it-${suffix}`;
const ARCHIVE_MB = 300;

let dir: string;
let checkpointDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "edgeshift-ckpt-it-"));
  checkpointDir = join(dir, "checkpoints");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe(`a ${ARCHIVE_MB} MB checkpoint pushed to the real registry`, () => {
  const registry = () => inject("registry");
  const repo = `edgeshift/it-${suffix}`;
  let archive: ArchiveInfo;
  let archiveSha: string;
  let child: CompiledEntry;
  let authfile: string;
  let proxy: CountingProxy;
  const pushed = new Map<Compression, PushChildResponse>();

  async function skopeo(args: string[]): Promise<string> {
    const { stdout } = await run(
      "skopeo",
      [...args.slice(0, 1), "--authfile", authfile, "--tls-verify=false", ...args.slice(1)],
      { maxBuffer: 16 << 20 },
    );
    return stdout;
  }

  /** Runs validate + push in a child process (compiled JS, as the agent runs it); credentials go over stdin. */
  async function pushInChild(compression: Compression, tag: string): Promise<PushChildResponse> {
    const reg = registry();
    const req: PushChildRequest = {
      archivePath: archive.path,
      checkpointDir,
      repository: `127.0.0.1:${proxy.port}/${repo}`,
      tag,
      compression,
      insecure: true,
      username: reg.username,
      password: reg.password,
    };
    // A clean environment: nothing of the test runner's (NODE_OPTIONS hooks) in
    // the measured process. --expose-gc as the agent runs (see migration/oci/layer.ts).
    const p = spawn(process.execPath, ["--expose-gc", child.path], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    p.stdin.end(JSON.stringify(req));
    const code = await new Promise<number | null>((r) => p.on("exit", r));
    if (code !== 0) throw new Error(`push child exited ${code}: ${err}`);
    expect(err).not.toContain(reg.password);
    expect(out).not.toContain(reg.password);
    return JSON.parse(out) as PushChildResponse;
  }

  beforeAll(async () => {
    const reg = registry();
    const [host = "", port = "0"] = reg.host.split(":");
    proxy = new CountingProxy({ host, port: Number(port) });
    await proxy.start();
    authfile = join(dir, "auth.json");
    await writeFile(
      authfile,
      JSON.stringify({
        auths: {
          [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString("base64") },
        },
      }),
      { mode: 0o600 },
    );
    child = await compileEntry("test/support/push-child.ts");
    // An archive as the kubelet names and places it, confined and validated as the agent does.
    const target = { namespace: NS, pod: "web-0", container: "app" };
    const path = join(checkpointDir, kubeletArchiveName(target, new Date()));
    await writeSyntheticArchive(path, {
      ...target,
      image: "registry.local/workload:1",
      dataBytes: ARCHIVE_MB * 1000 * 1000,
    });
    archive = await validateArchive(path, { checkpointDir });
    archiveSha = `sha256:${(await run("sha256sum", [archive.path])).stdout.split(" ")[0]}`;
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    await child?.dispose();
  });

  for (const compression of ["zstd", "none", "gzip"] as const) {
    it(`${compression}: pushes with peak RSS under 100 MB and one streaming upload`, async () => {
      const before = proxy.bytesUp;
      const res = await pushInChild(compression, `web-0-app-${compression}`);
      pushed.set(compression, res);
      expect(res.result.reused).toBe(false);
      expect(res.result.layer.diffId).toBe(archiveSha);
      expect(res.result.sizes.archiveBytes).toBeGreaterThan(ARCHIVE_MB * 1000 * 1000);
      if (compression === "none") expect(res.result.layer.digest).toBe(archiveSha);
      else expect(res.result.sizes.layerBytes).toBeLessThan(res.result.sizes.archiveBytes * 0.7);
      // On the wire: the layer once, plus headers and the small JSON documents.
      const onWire = proxy.bytesUp - before;
      expect(onWire).toBeGreaterThanOrEqual(res.result.sizes.layerBytes);
      expect(onWire).toBeLessThan(res.result.sizes.layerBytes + 256 * 1024);
      console.log(
        `[push] ${compression}: ${(res.result.sizes.archiveBytes / 1e6).toFixed(0)} MB -> ${(res.result.sizes.layerBytes / 1e6).toFixed(0)} MB in ${res.elapsedMs.toFixed(0)} ms, peak RSS ${(res.maxRssBytes / 1e6).toFixed(1)} MB`,
      );
      expect(res.maxRssBytes).toBeLessThan(100 * 1000 * 1000);
    }, 120_000);
  }

  it("skopeo shows both annotation families on the index and on the manifest", async () => {
    const zstd = pushed.get("zstd");
    if (!zstd) throw new Error("the zstd push did not run");
    const ref = `docker://${registry().host}/${repo}`;
    const index = JSON.parse(await skopeo(["inspect", "--raw", `${ref}:web-0-app-zstd`]));
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    for (const a of [index.annotations, index.manifests[0].annotations]) {
      expect(a["io.kubernetes.cri-o.annotations.checkpoint.name"]).toBe("app");
      expect(a["org.criu.checkpoint.container.name"]).toBe("app");
      expect(a["io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName"]).toBe(
        "registry.local/workload:1",
      );
      expect(a["org.criu.checkpoint.rootfsImageName"]).toBe("registry.local/workload:1");
    }
    const manifestDigest = index.manifests[0].digest;
    expect(manifestDigest).toBe(zstd.result.manifestDigest);
    const manifest = JSON.parse(await skopeo(["inspect", "--raw", `${ref}@${manifestDigest}`]));
    expect(manifest.annotations["io.kubernetes.cri-o.annotations.checkpoint.name"]).toBe("app");
    expect(manifest.annotations["org.criu.checkpoint.container.name"]).toBe("app");
    expect(manifest.layers).toEqual([
      {
        mediaType: "application/vnd.oci.image.layer.v1.tar+zstd",
        digest: zstd.result.layer.digest,
        size: zstd.result.layer.size,
      },
    ]);
    // skopeo resolves the index to this platform's image and agrees on the layer.
    const inspected = JSON.parse(await skopeo(["inspect", `${ref}:web-0-app-zstd`]));
    expect(inspected.Layers).toEqual([zstd.result.layer.digest]);
    expect(inspected.Architecture).toBe("amd64");
  });

  it("pulling each layer back gives the archive byte for byte, file by file", async () => {
    const reg = registry();
    const client = new RegistryClient({
      registry: reg.host,
      insecure: true,
      credentials: new RegistryCredentials(reg.username, reg.password),
    });
    try {
      for (const [compression, res] of pushed) {
        const out = join(dir, `pulled-${compression}.tar`);
        const body = await client.getBlob(repo, res.result.layer.digest);
        const decode =
          compression === "zstd"
            ? [createZstdDecompress()]
            : compression === "gzip"
              ? [createGunzip()]
              : [];
        await pipeline([body, ...decode, createWriteStream(out)]);
        expect(`sha256:${(await run("sha256sum", [out])).stdout.split(" ")[0]}`).toBe(archiveSha);
        if (compression === "zstd")
          expect(await fileDigests(out)).toEqual(await fileDigests(archive.path));
        await rm(out);
      }
    } finally {
      client.close();
    }
  }, 120_000);

  it("re-pushing the same archive uploads no layer bytes", async () => {
    const before = proxy.bytesUp;
    const res = await pushInChild("zstd", "web-0-app-zstd");
    expect(res.result.reused).toBe(true);
    expect(res.result.sizes.uploadedBytes).toBe(0);
    expect(res.result.digest).toBe(pushed.get("zstd")?.result.digest);
    // Only request lines and headers went up: no body at all.
    expect(proxy.bytesUp - before).toBeLessThan(16 * 1024);
  }, 60_000);

  it("a push cut off midway leaves nothing tagged", async () => {
    const reg = registry();
    proxy.cutAfterBytes = proxy.bytesUp + 50 * 1000 * 1000;
    try {
      const err = await pushCheckpointImage({
        archive,
        repository: `127.0.0.1:${proxy.port}/${repo}`,
        tag: "cut-midway",
        compression: "none",
        insecure: true,
        credentials: new RegistryCredentials(reg.username, reg.password),
      }).catch((e) => e);
      expect(err).toBeInstanceOf(RegistryError);
    } finally {
      proxy.cutAfterBytes = Number.POSITIVE_INFINITY;
    }
    const client = new RegistryClient({
      registry: reg.host,
      insecure: true,
      credentials: new RegistryCredentials(reg.username, reg.password),
    });
    try {
      expect(
        await client.getManifest(repo, "cut-midway", ["application/vnd.oci.image.index.v1+json"]),
      ).toBeUndefined();
    } finally {
      client.close();
    }
    await expect(
      skopeo(["inspect", "--raw", `docker://${reg.host}/${repo}:cut-midway`]),
    ).rejects.toThrow();
  }, 60_000);

  it("wrong credentials fail with 401 and the password appears nowhere", async () => {
    const reg = registry();
    const wrong = `${reg.password}-wrong`;
    const err = await pushCheckpointImage({
      archive,
      repository: `${reg.host}/${repo}`,
      tag: "never",
      insecure: true,
      credentials: new RegistryCredentials(reg.username, wrong),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect(`${err} ${(err as Error).stack} ${JSON.stringify(err)}`).not.toContain(wrong);
  });
});

/** sha256 of every regular file's content in a tar, by name. */
async function fileDigests(path: string): Promise<Record<string, string>> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    const out: Record<string, string> = {};
    const buf = Buffer.allocUnsafe(1 << 20);
    for await (const e of scanTar(fh, size)) {
      if (e.type !== "file") continue;
      const h = createHash("sha256");
      for (let done = 0; done < e.size; ) {
        const { bytesRead } = await fh.read(
          buf,
          0,
          Math.min(buf.length, e.size - done),
          e.dataOffset + done,
        );
        h.update(buf.subarray(0, bytesRead));
        done += bytesRead;
      }
      out[e.name] = h.digest("hex");
    }
    return out;
  } finally {
    await fh.close();
  }
}
