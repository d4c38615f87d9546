// Checkpoint archive -> OCI image in a registry, in one read of the archive:
// hash + compress + upload stream together, then the small config, the
// manifest (by digest) and, last, the index under the tag. A push that fails
// anywhere before that last PUT leaves nothing tagged.
import { basename } from "node:path";
import { type Logger, pino } from "pino";
import type { ArchiveInfo } from "../archive/validate.ts";
import { checkpointAnnotations, EdgeshiftAnnotation } from "../oci/annotations.ts";
import {
  buildCheckpointImage,
  type Compression,
  MediaType,
  ociPlatform,
  type Platform,
} from "../oci/image.ts";
import { encodeLayer, type LayerDigests } from "../oci/layer.ts";
import { sanitizeTag, TAG_PATTERN } from "../oci/tag.ts";
import type { RegistryCredentials } from "./auth.ts";
import { RegistryClient, RegistryError } from "./client.ts";
import { parseRepository } from "./reference.ts";

const silent = pino({ level: "silent" });

export interface PushCheckpointOptions {
  /** What validateArchive returned for the archive. */
  archive: ArchiveInfo;
  /** host[:port]/path, no tag. */
  repository: string;
  /** Sanitised when it is not a valid tag. */
  tag: string;
  /** Default zstd. */
  compression?: Compression;
  /** Compression level (zstd and gzip default 1). */
  level?: number;
  /** Plain HTTP; only for a registry explicitly marked insecure. */
  insecure?: boolean;
  ca?: string | Buffer;
  credentials?: RegistryCredentials;
  /** Default: this machine's (CRIU restores only on the same architecture). */
  platform?: Platform;
  /** Return the image already under the tag when it was built from this same archive. Default true. */
  reuseExisting?: boolean;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface PushResult {
  /** host/repo:tag */
  reference: string;
  /** Digest of the index the tag points to. */
  digest: string;
  /** host/repo@digest */
  pinnedReference: string;
  manifestDigest: string;
  layer: LayerDigests;
  sizes: {
    archiveBytes: number;
    /** The layer blob (compressed size when compressed). */
    layerBytes: number;
    /** Request body bytes actually sent, all requests included. */
    uploadedBytes: number;
  };
  /** True when the tag already held this archive's image and nothing was uploaded. */
  reused: boolean;
  durationMs: number;
}

/** Identity of the source archive and encoding, stored on the image to make re-pushes free. */
export function sourceFingerprint(archive: ArchiveInfo, compression: Compression): string {
  return JSON.stringify({
    archive: basename(archive.path),
    size: archive.sizeBytes,
    mtimeMs: archive.modifiedAt.getTime(),
    compression,
  });
}

function createdTime(archive: ArchiveInfo): string {
  const t = archive.metadata.checkpointedTime
    ? new Date(archive.metadata.checkpointedTime)
    : undefined;
  return (t && !Number.isNaN(t.getTime()) ? t : archive.modifiedAt)
    .toISOString()
    .replace(/\.\d+Z$/, "Z");
}

interface IndexJson {
  manifests?: { digest?: string }[];
  annotations?: Record<string, string>;
}
interface ManifestJson {
  config?: { digest?: string };
  layers?: { mediaType?: string; digest?: string; size?: number }[];
}
interface ConfigJson {
  rootfs?: { diff_ids?: string[] };
}

/** A JSON document the registry answered 200 with; malformed, it is the registry's fault (a RegistryError with that status). */
function parseJson<T>(what: string, bytes: Buffer): T {
  try {
    return JSON.parse(bytes.toString("utf8")) as T;
  } catch {
    throw new RegistryError(`${what}: the registry answered no valid JSON`, { status: 200 });
  }
}

/** A blob streamed by getBlob; a connection that breaks mid-body is a RegistryError without a status. */
async function readJson<T>(what: string, stream: AsyncIterable<unknown>): Promise<T> {
  const chunks: Buffer[] = [];
  try {
    for await (const c of stream) chunks.push(c as Buffer);
  } catch (err) {
    throw err instanceof RegistryError
      ? err
      : new RegistryError(`${what} failed: ${(err as Error).message}`, { cause: err });
  }
  return parseJson<T>(what, Buffer.concat(chunks));
}

/** The existing image under `tag` if it was built from the same archive and all its blobs are present. */
async function findExisting(
  client: RegistryClient,
  repo: string,
  tag: string,
  fingerprint: string,
  signal: AbortSignal | undefined,
): Promise<{ digest: string; manifestDigest: string; layer: LayerDigests } | undefined> {
  const index = await client.getManifest(repo, tag, [MediaType.ImageIndex], signal);
  if (!index || index.mediaType !== MediaType.ImageIndex) return undefined;
  const parsed = parseJson<IndexJson>(`GET manifest ${tag}`, index.bytes);
  const manifestDigest = parsed.manifests?.[0]?.digest;
  if (parsed.annotations?.[EdgeshiftAnnotation.Source] !== fingerprint || !manifestDigest) {
    return undefined;
  }
  const manifest = await client.getManifest(
    repo,
    manifestDigest,
    [MediaType.ImageManifest],
    signal,
  );
  if (!manifest) return undefined;
  const m = parseJson<ManifestJson>(`GET manifest ${manifestDigest}`, manifest.bytes);
  const layer = m.layers?.[0];
  const configDigest = m.config?.digest;
  if (!layer?.digest || !layer.mediaType || layer.size === undefined || !configDigest)
    return undefined;
  if ((await client.blobSize(repo, layer.digest, signal)) === undefined) return undefined;
  const config = await readJson<ConfigJson>(
    `GET blob ${configDigest}`,
    await client.getBlob(repo, configDigest, signal),
  );
  const diffId = config.rootfs?.diff_ids?.[0];
  if (!diffId) return undefined;
  const compression: Compression = layer.mediaType.endsWith("+zstd")
    ? "zstd"
    : layer.mediaType.endsWith("+gzip")
      ? "gzip"
      : "none";
  return {
    digest: index.digest,
    manifestDigest,
    layer: {
      mediaType: layer.mediaType,
      compression,
      diffId,
      digest: layer.digest,
      size: layer.size,
      uncompressedSize: -1,
    },
  };
}

/**
 * Packs a validated checkpoint archive into an OCI image (one layer: the
 * archive; both checkpoint annotation families on manifest and index) and
 * pushes it. Reads the archive once with bounded memory. Throws RegistryError
 * (or the stream's error); credentials never appear in errors or logs.
 */
export async function pushCheckpointImage(opts: PushCheckpointOptions): Promise<PushResult> {
  const started = performance.now();
  const compression = opts.compression ?? "zstd";
  const repo = parseRepository(opts.repository);
  const tag = TAG_PATTERN.test(opts.tag) ? opts.tag : sanitizeTag(opts.tag);
  const reference = `${repo.registry}/${repo.name}:${tag}`;
  const log = (opts.logger ?? silent).child({ image: reference, compression });
  const platform = opts.platform ?? ociPlatform(process.arch);
  const fingerprint = sourceFingerprint(opts.archive, compression);
  const client = new RegistryClient({
    registry: repo.apiHost,
    insecure: opts.insecure,
    ca: opts.ca,
    credentials: opts.credentials,
    logger: opts.logger,
  });
  const result = (
    digest: string,
    manifestDigest: string,
    layer: LayerDigests,
    reused: boolean,
  ): PushResult => ({
    reference,
    digest,
    pinnedReference: `${repo.registry}/${repo.name}@${digest}`,
    manifestDigest,
    layer: { ...layer, uncompressedSize: opts.archive.sizeBytes },
    sizes: {
      archiveBytes: opts.archive.sizeBytes,
      layerBytes: layer.size,
      uploadedBytes: client.bytesSent,
    },
    reused,
    durationMs: Math.round(performance.now() - started),
  });

  try {
    if (opts.reuseExisting ?? true) {
      const existing = await findExisting(client, repo.name, tag, fingerprint, opts.signal);
      if (existing) {
        log.info({ digest: existing.digest }, "Found checkpoint image already pushed");
        return result(existing.digest, existing.manifestDigest, existing.layer, true);
      }
    }

    const { produced: layer } = await client.putBlobStream(
      repo.name,
      (sink) =>
        encodeLayer(opts.archive.path, compression, sink, {
          level: opts.level,
          signal: opts.signal,
        }),
      (l) => l.digest,
      opts.signal,
    );
    if (layer.uncompressedSize !== opts.archive.sizeBytes) {
      // The archive changed between validation and push: the kubelet never rewrites one.
      throw new RegistryError(
        `Archive ${opts.archive.path} changed size during the push (${opts.archive.sizeBytes} -> ${layer.uncompressedSize})`,
      );
    }

    const created = createdTime(opts.archive);
    const annotations = {
      ...checkpointAnnotations(opts.archive.metadata, {
        architecture: platform.architecture,
        created,
      }),
      [EdgeshiftAnnotation.Source]: fingerprint,
    };
    const image = buildCheckpointImage({ layer, platform, created, annotations });
    await client.putBlob(repo.name, image.config.bytes, image.config.digest, opts.signal);
    await client.putManifest(
      repo.name,
      image.manifest.digest,
      image.manifest.bytes,
      MediaType.ImageManifest,
      opts.signal,
    );
    // The tag goes on last: until here a failed push has tagged nothing.
    await client.putManifest(repo.name, tag, image.index.bytes, MediaType.ImageIndex, opts.signal);
    const out = result(image.index.digest, image.manifest.digest, layer, false);
    log.info(
      {
        digest: out.digest,
        archiveBytes: out.sizes.archiveBytes,
        layerBytes: out.sizes.layerBytes,
        durationMs: out.durationMs,
      },
      "Pushed checkpoint image",
    );
    return out;
  } finally {
    client.close();
  }
}
