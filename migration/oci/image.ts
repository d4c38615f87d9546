// Pure builders for the OCI image config, manifest and index of a checkpoint
// image: one layer that is the checkpoint archive itself (the files at `/`,
// which is what `buildah add archive.tar /` produces).
import { createHash } from "node:crypto";

export const MediaType = {
  ImageIndex: "application/vnd.oci.image.index.v1+json",
  ImageManifest: "application/vnd.oci.image.manifest.v1+json",
  ImageConfig: "application/vnd.oci.image.config.v1+json",
  LayerTar: "application/vnd.oci.image.layer.v1.tar",
  LayerTarGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  LayerTarZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
} as const;

export const COMPRESSIONS = ["none", "zstd", "gzip"] as const;
export type Compression = (typeof COMPRESSIONS)[number];

export function layerMediaType(c: Compression): string {
  return c === "zstd"
    ? MediaType.LayerTarZstd
    : c === "gzip"
      ? MediaType.LayerTarGzip
      : MediaType.LayerTar;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

const NODE_TO_OCI_ARCH: Record<string, Platform> = {
  x64: { architecture: "amd64", os: "linux" },
  arm64: { architecture: "arm64", os: "linux" },
  arm: { architecture: "arm", os: "linux", variant: "v7" },
  ia32: { architecture: "386", os: "linux" },
  ppc64: { architecture: "ppc64le", os: "linux" },
  s390x: { architecture: "s390x", os: "linux" },
  riscv64: { architecture: "riscv64", os: "linux" },
};

/** The OCI platform for a Node `process.arch`. CRIU restores only on the same architecture. */
export function ociPlatform(nodeArch: string): Platform {
  const p = NODE_TO_OCI_ARCH[nodeArch];
  if (!p) throw new Error(`No OCI architecture for Node arch ${nodeArch}`);
  return { ...p };
}

export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Serialised JSON with its digest and size: what gets uploaded and referenced. */
export interface Blob {
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: string;
}

export function jsonBlob(value: unknown, mediaType: string): Blob {
  const bytes = Buffer.from(JSON.stringify(value));
  return { bytes, digest: sha256Digest(bytes), size: bytes.length, mediaType };
}

export function buildImageConfig(opts: {
  diffId: string;
  platform: Platform;
  /** RFC 3339. Deterministic input keeps the config digest stable across retries. */
  created: string;
  labels?: Record<string, string>;
}) {
  return {
    created: opts.created,
    architecture: opts.platform.architecture,
    os: opts.platform.os,
    ...(opts.platform.variant ? { variant: opts.platform.variant } : {}),
    config: opts.labels ? { Labels: opts.labels } : {},
    rootfs: { type: "layers", diff_ids: [opts.diffId] },
    history: [{ created: opts.created, created_by: "edgeshift: container checkpoint archive" }],
  };
}

export function buildManifest(opts: {
  config: Descriptor;
  layers: Descriptor[];
  annotations: Record<string, string>;
}) {
  return {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    config: {
      mediaType: opts.config.mediaType,
      digest: opts.config.digest,
      size: opts.config.size,
    },
    layers: opts.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    annotations: { ...opts.annotations },
  };
}

export function buildIndex(opts: {
  manifest: Descriptor;
  platform: Platform;
  annotations: Record<string, string>;
}) {
  return {
    schemaVersion: 2,
    mediaType: MediaType.ImageIndex,
    manifests: [
      {
        mediaType: MediaType.ImageManifest,
        digest: opts.manifest.digest,
        size: opts.manifest.size,
        platform: { ...opts.platform },
        annotations: { ...opts.annotations },
      },
    ],
    annotations: { ...opts.annotations },
  };
}

export interface CheckpointImage {
  config: Blob;
  manifest: Blob;
  index: Blob;
}

/** Config, manifest and index for one checkpoint layer, annotations on manifest and index. */
export function buildCheckpointImage(opts: {
  layer: Descriptor & { diffId: string };
  platform: Platform;
  created: string;
  annotations: Record<string, string>;
}): CheckpointImage {
  const config = jsonBlob(
    buildImageConfig({ diffId: opts.layer.diffId, platform: opts.platform, created: opts.created }),
    MediaType.ImageConfig,
  );
  const manifest = jsonBlob(
    buildManifest({
      config,
      layers: [
        { mediaType: opts.layer.mediaType, digest: opts.layer.digest, size: opts.layer.size },
      ],
      annotations: opts.annotations,
    }),
    MediaType.ImageManifest,
  );
  const index = jsonBlob(
    buildIndex({ manifest, platform: opts.platform, annotations: opts.annotations }),
    MediaType.ImageIndex,
  );
  return { config, manifest, index };
}
