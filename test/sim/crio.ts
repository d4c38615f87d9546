// What CRI-O does around CRIU for the node simulator: write a checkpoint
// archive in CRI-O's format (config.dump, spec.dump, checkpoint/,
// rootfs-diff.tar, deleted.files, bind.mounts, dump.log, stats-dump,
// network.status) from a real `runc checkpoint`, and pull and unpack a
// checkpoint image (index -> manifest -> one layer holding the archive's
// files) for a restore.
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { kubeletArchiveName } from "../../migration/kubelet/standin-archive.ts";
import { CrioAnnotation, CriuAnnotation } from "../../migration/oci/annotations.ts";
import { MediaType } from "../../migration/oci/image.ts";
import type { RegistryCredentials } from "../../migration/registry/auth.ts";
import { RegistryClient } from "../../migration/registry/client.ts";
import type { ContainerSpec, SimRuntime } from "./runtime.ts";

const run = promisify(execFile);

export interface ArchiveTarget {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  /** The image the container runs (config.dump rootfsImageName: CRI-O pulls it to restore). */
  image: string;
  /** The runtime container id. */
  containerId: string;
  /** The spec it was created from (bind mounts, env, args go into spec.dump). */
  spec: ContainerSpec;
  createdAt: Date;
}

export interface CheckpointArchive {
  path: string;
  sizeBytes: number;
  /** runc checkpoint alone. */
  checkpointMs: number;
  /** Everything, archive included. */
  totalMs: number;
  frozenUs?: number;
}

/**
 * `runc checkpoint --leave-running` of the container, then the CRI-O archive
 * at `<checkpointDir>/checkpoint-<pod>_<ns>-<container>-<time>.tar` (mode
 * 0600, renamed into place so no reader sees half a file).
 */
export async function checkpointToArchive(
  runtime: SimRuntime,
  checkpointDir: string,
  t: ArchiveTarget,
  opts: { timeoutMs?: number } = {},
): Promise<CheckpointArchive> {
  const started = performance.now();
  const at = new Date();
  await mkdir(checkpointDir, { recursive: true });
  const stage = await mkdtemp(join(checkpointDir, ".stage-"));
  try {
    const ck = await runtime.checkpoint(t.containerId, join(stage, "checkpoint"), {
      leaveRunning: true,
      timeoutMs: opts.timeoutMs,
    });
    const json = (v: unknown) => JSON.stringify(v, null, 2);
    const id = createHash("sha256")
      .update(t.containerId + t.podUid)
      .digest("hex");
    await writeFile(
      join(stage, "config.dump"),
      json({
        id,
        name: `k8s_${t.container}_${t.pod}_${t.namespace}_${t.podUid}_0`,
        rootfsImage: t.image,
        rootfsImageRef: createHash("sha256").update(t.image).digest("hex"),
        rootfsImageName: t.image,
        runtime: "runc",
        createdTime: t.createdAt.toISOString(),
        checkpointedTime: at.toISOString(),
        restoredTime: "0001-01-01T00:00:00Z",
        restored: false,
      }),
    );
    const binds = (t.spec.mounts ?? []).map((m) => ({
      destination: m.destination,
      type: "bind",
      source: m.source,
      options: ["rbind", m.readOnly ? "ro" : "rw"],
    }));
    await writeFile(
      join(stage, "spec.dump"),
      json({
        ociVersion: "1.0.2-dev",
        process: {
          args: t.spec.args,
          env: Object.entries(t.spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
          cwd: t.spec.cwd ?? "/",
        },
        root: { path: join(runtime.bundleDir(t.containerId), "rootfs") },
        hostname: t.pod,
        mounts: [{ destination: "/proc", type: "proc", source: "proc" }, ...binds],
        annotations: {
          "io.container.manager": "cri-o",
          "io.kubernetes.container.name": t.container,
          "io.kubernetes.cri-o.ContainerType": "container",
          "io.kubernetes.cri-o.Created": t.createdAt.toISOString(),
          "io.kubernetes.cri-o.ImageName": t.image,
          "io.kubernetes.cri-o.Metadata": JSON.stringify({ name: t.container }),
          "io.kubernetes.pod.name": t.pod,
          "io.kubernetes.pod.namespace": t.namespace,
          "io.kubernetes.pod.uid": t.podUid,
        },
      }),
    );
    // The container's writable layer. Bind-mount targets are in it as empty
    // folders, as in CRI-O's diff; overlay whiteouts (deleted files) are not
    // produced by the test workloads, so deleted.files stays empty.
    await run("tar", [
      "-C",
      runtime.upperDir(t.containerId),
      "--numeric-owner",
      "-cf",
      join(stage, "rootfs-diff.tar"),
      ".",
    ]);
    await writeFile(join(stage, "deleted.files"), "[]");
    await writeFile(
      join(stage, "bind.mounts"),
      json(
        (t.spec.mounts ?? []).map((m) => ({
          source: m.source,
          destination: m.destination,
          file_type: "directory",
          permissions: 0o755,
        })),
      ),
    );
    await writeFile(join(stage, "network.status"), "[]");
    // CRIU writes dump.log and stats-dump into its image folder; CRI-O keeps them at the top.
    for (const f of ["dump.log", "stats-dump"]) {
      const src = join(stage, "checkpoint", f);
      if (existsSync(src)) await rename(src, join(stage, f));
    }
    const names = [
      "config.dump",
      "spec.dump",
      "checkpoint",
      "rootfs-diff.tar",
      "deleted.files",
      "bind.mounts",
      "dump.log",
      "stats-dump",
      "network.status",
    ].filter((n) => existsSync(join(stage, n)));
    const path = join(
      checkpointDir,
      kubeletArchiveName({ pod: t.pod, namespace: t.namespace, container: t.container }, at),
    );
    const tmp = join(checkpointDir, `.partial-${randomUUID()}`);
    await run("tar", ["-C", stage, "--numeric-owner", "-cf", tmp, ...names]);
    await chmod(tmp, 0o600);
    await rename(tmp, path);
    return {
      path,
      sizeBytes: (await stat(path)).size,
      checkpointMs: ck.durationMs,
      totalMs: performance.now() - started,
      frozenUs: ck.stats?.frozenUs,
    };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

// --- pulling ------------------------------------------------------------------------

export interface ImageRef {
  registry: string;
  repo: string;
  /** Digest ("sha256:...") or tag. */
  reference: string;
}

/** "host[:port]/path(:tag|@sha256:hex)" with an explicit registry host; undefined otherwise. */
export function parseImageRef(image: string): ImageRef | undefined {
  const slash = image.indexOf("/");
  if (slash === -1) return undefined;
  const registry = image.slice(0, slash);
  if (!registry.includes(".") && !registry.includes(":") && registry !== "localhost") {
    return undefined;
  }
  let rest = image.slice(slash + 1);
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at !== -1) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon !== -1) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  return { registry, repo: rest, reference };
}

export interface RegistryAccess {
  credentials?: RegistryCredentials;
  insecure?: boolean;
}

/** Why a pull failed, with the kubelet's waiting reason (ErrImagePull or CreateContainerError). */
export class PullError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface PulledCheckpoint {
  /** Folder holding the archive's files (config.dump, checkpoint/, rootfs-diff.tar, ...). */
  dir: string;
  containerName: string;
  /** config.dump rootfsImageName: the base image to restore on. */
  baseImage: string;
  layerBytes: number;
  mediaType: string;
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { architecture?: string; os?: string };
}
interface ManifestLike {
  mediaType?: string;
  manifests?: Descriptor[];
  layers?: Descriptor[];
  annotations?: Record<string, string>;
}

async function fetchVerified(
  client: RegistryClient,
  ref: ImageRef,
  reference: string,
  accept: string[],
): Promise<ManifestLike> {
  const got = await client.getManifest(ref.repo, reference, accept);
  if (!got) throw new PullError("ErrImagePull", `manifest unknown: ${ref.repo}:${reference}`);
  if (reference.startsWith("sha256:") && sha256(got.bytes) !== reference) {
    throw new PullError(
      "ErrImagePull",
      `manifest ${reference} does not match its content (${sha256(got.bytes)})`,
    );
  }
  return JSON.parse(got.bytes.toString("utf8")) as ManifestLike;
}

/** The checkpoint annotation's container name on the index or manifest, if any. */
function checkpointName(...docs: (ManifestLike | undefined)[]): string | undefined {
  for (const d of docs) {
    const a = d?.annotations ?? {};
    const v = a[CrioAnnotation.Name] ?? a[CriuAnnotation.ContainerName];
    if (v) return v;
  }
  return undefined;
}

/**
 * Pulls `image` when it is a checkpoint image: verifies manifest and layer
 * digests and unpacks the layer into a new folder under `workDir`. Resolves
 * undefined for an image without the checkpoint annotation (a normal image).
 */
export async function pullCheckpointImage(
  image: string,
  access: RegistryAccess,
  workDir: string,
  opts: { afterDownload?: (blobPath: string) => Promise<void> } = {},
): Promise<PulledCheckpoint | undefined> {
  const ref = parseImageRef(image);
  if (!ref) throw new PullError("InvalidImageName", `cannot parse image ${image}`);
  const client = new RegistryClient({
    registry: ref.registry,
    insecure: access.insecure,
    credentials: access.credentials,
  });
  try {
    let top: ManifestLike;
    try {
      top = await fetchVerified(client, ref, ref.reference, [
        MediaType.ImageIndex,
        MediaType.ImageManifest,
      ]);
    } catch (err) {
      if (err instanceof PullError) throw err;
      throw new PullError("ErrImagePull", `pulling ${image}: ${(err as Error).message}`);
    }
    let index: ManifestLike | undefined;
    let manifest = top;
    if (top.manifests) {
      index = top;
      const d =
        top.manifests.find((m) => (m.platform?.architecture ?? "amd64") === "amd64") ??
        top.manifests[0];
      if (!d) throw new PullError("ErrImagePull", `index of ${image} lists no manifest`);
      manifest = await fetchVerified(client, ref, d.digest, [MediaType.ImageManifest]);
    }
    const containerName = checkpointName(manifest, index);
    if (!containerName) return undefined;
    const layer = manifest.layers?.[0];
    if (!layer || (manifest.layers?.length ?? 0) !== 1) {
      throw new PullError("ErrImagePull", `checkpoint image ${image} must have exactly one layer`);
    }
    const dir = await mkdtemp(join(workDir, "pull-"));
    try {
      const blobPath = join(dir, "layer.blob");
      let hash = createHash("sha256");
      let bytes = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          bytes += chunk.length;
          cb(null, chunk);
        },
      });
      await pipeline(
        await client.getBlob(ref.repo, layer.digest),
        tap,
        createWriteStream(blobPath),
      );
      if (opts.afterDownload) {
        // Fault injection (tests): the bytes as stored may differ from what the registry sent.
        await opts.afterDownload(blobPath);
        hash = createHash("sha256");
        bytes = 0;
        for await (const chunk of createReadStream(blobPath)) {
          hash.update(chunk as Buffer);
          bytes += (chunk as Buffer).length;
        }
      }
      const digest = `sha256:${hash.digest("hex")}`;
      if (digest !== layer.digest || (layer.size !== undefined && bytes !== layer.size)) {
        throw new PullError(
          "ErrImagePull",
          `layer ${layer.digest} of ${image} does not match its content (${digest}, ${bytes} bytes)`,
        );
      }
      const files = join(dir, "files");
      await mkdir(files);
      const mediaType = layer.mediaType ?? MediaType.LayerTar;
      const tarPath = join(dir, "layer.tar");
      if (mediaType === MediaType.LayerTar) {
        await rename(blobPath, tarPath);
      } else {
        const decompress =
          mediaType === MediaType.LayerTarZstd
            ? createZstdDecompress()
            : mediaType === MediaType.LayerTarGzip
              ? createGunzip()
              : undefined;
        if (!decompress) throw new PullError("ErrImagePull", `unknown layer type ${mediaType}`);
        await pipeline(createReadStream(blobPath), decompress, createWriteStream(tarPath)).catch(
          (err: Error) => {
            throw new PullError("ErrImagePull", `decompressing layer of ${image}: ${err.message}`);
          },
        );
        await rm(blobPath);
      }
      await run("tar", ["-C", files, "--numeric-owner", "-xf", tarPath]).catch((err: Error) => {
        throw new PullError("ErrImagePull", `unpacking layer of ${image}: ${err.message}`);
      });
      await rm(tarPath);
      const config = JSON.parse(
        await readFile(join(files, "config.dump"), "utf8").catch(() => "{}"),
      );
      const baseImage = String(config.rootfsImageName ?? config.rootfsImage ?? "");
      if (!baseImage || !existsSync(join(files, "checkpoint"))) {
        throw new PullError(
          "CreateContainerError",
          `checkpoint image ${image} lacks config.dump's base image or checkpoint/`,
        );
      }
      return { dir: files, containerName, baseImage, layerBytes: bytes, mediaType };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  } finally {
    client.close();
  }
}

/** Unpacks rootfs-diff.tar of a pulled checkpoint into `into` (the restored container's layer seed). */
export async function unpackRootfsDiff(pulled: PulledCheckpoint, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  const diff = join(pulled.dir, "rootfs-diff.tar");
  if (existsSync(diff)) await run("tar", ["-C", into, "--numeric-owner", "-xf", diff]);
}
