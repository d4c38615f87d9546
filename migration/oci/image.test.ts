import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { CheckpointMetadata } from "../archive/metadata.ts";
import { CrioAnnotation, CriuAnnotation, checkpointAnnotations } from "./annotations.ts";
import { buildCheckpointImage, layerMediaType, MediaType, ociPlatform } from "./image.ts";

const meta: CheckpointMetadata = {
  containerName: "app",
  podName: "web-0",
  namespace: "shop",
  baseImage: "registry.example/shop/web:1.2",
  baseImageId: "abc123",
  rawImageName: "registry.example/shop/web:1.2",
  engine: "CRI-O",
  runtime: "runc",
};
const layer = {
  mediaType: MediaType.LayerTarZstd,
  digest: `sha256:${"b".repeat(64)}`,
  size: 1234,
  diffId: `sha256:${"a".repeat(64)}`,
};
const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

describe("checkpointAnnotations", () => {
  it("writes the CRI-O and the containerd (org.criu) family", () => {
    const a = checkpointAnnotations(meta, { architecture: "amd64" });
    expect(a[CrioAnnotation.Name]).toBe("app");
    expect(a["io.kubernetes.cri-o.annotations.checkpoint.name"]).toBe("app");
    expect(a["org.criu.checkpoint.container.name"]).toBe("app");
    expect(a[CrioAnnotation.RootfsImageName]).toBe("registry.example/shop/web:1.2");
    expect(a[CriuAnnotation.RootfsImageName]).toBe("registry.example/shop/web:1.2");
    expect(a[CriuAnnotation.PodNamespace]).toBe("shop");
    expect(a[CriuAnnotation.HostArch]).toBe("amd64");
  });

  it("leaves out what the archive does not say", () => {
    const a = checkpointAnnotations({ containerName: "c", baseImage: "i", engine: "containerd" });
    expect(Object.keys(a).sort()).toEqual(
      [
        CrioAnnotation.Name,
        CrioAnnotation.RootfsImageName,
        CriuAnnotation.ContainerName,
        CriuAnnotation.RootfsImageName,
        CriuAnnotation.EngineName,
      ].sort(),
    );
  });
});

describe("buildCheckpointImage", () => {
  const annotations = checkpointAnnotations(meta);
  const img = buildCheckpointImage({
    layer,
    platform: ociPlatform("x64"),
    created: "2025-01-02T03:04:05Z",
    annotations,
  });
  const config = JSON.parse(img.config.bytes.toString());
  const manifest = JSON.parse(img.manifest.bytes.toString());
  const index = JSON.parse(img.index.bytes.toString());

  it("digests and sizes are those of the serialised bytes", () => {
    for (const b of [img.config, img.manifest, img.index]) {
      expect(b.digest).toBe(sha(b.bytes));
      expect(b.size).toBe(b.bytes.length);
    }
  });

  it("config names the layer's diff ID and this platform", () => {
    expect(config.rootfs).toEqual({ type: "layers", diff_ids: [layer.diffId] });
    expect(config.architecture).toBe("amd64");
    expect(config.os).toBe("linux");
    expect(config.created).toBe("2025-01-02T03:04:05Z");
  });

  it("manifest references config and the one layer, with both annotation families", () => {
    expect(manifest.mediaType).toBe(MediaType.ImageManifest);
    expect(manifest.config).toEqual({
      mediaType: MediaType.ImageConfig,
      digest: img.config.digest,
      size: img.config.size,
    });
    expect(manifest.layers).toEqual([
      { mediaType: layer.mediaType, digest: layer.digest, size: layer.size },
    ]);
    expect(manifest.annotations).toEqual(annotations);
  });

  it("index references the manifest with its platform, annotations on the index and its entry", () => {
    expect(index.mediaType).toBe(MediaType.ImageIndex);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]).toMatchObject({
      mediaType: MediaType.ImageManifest,
      digest: img.manifest.digest,
      size: img.manifest.size,
      platform: { architecture: "amd64", os: "linux" },
    });
    expect(index.annotations["org.criu.checkpoint.container.name"]).toBe("app");
    expect(index.annotations["io.kubernetes.cri-o.annotations.checkpoint.name"]).toBe("app");
    expect(index.manifests[0].annotations).toEqual(annotations);
  });

  it("is deterministic: the same inputs give the same digests (a retry lands on the same image)", () => {
    const again = buildCheckpointImage({
      layer,
      platform: ociPlatform("x64"),
      created: "2025-01-02T03:04:05Z",
      annotations,
    });
    expect(again.index.digest).toBe(img.index.digest);
  });
});

describe("media types and platforms", () => {
  it("names the layer media type per compression", () => {
    expect(layerMediaType("none")).toBe("application/vnd.oci.image.layer.v1.tar");
    expect(layerMediaType("gzip")).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    expect(layerMediaType("zstd")).toBe("application/vnd.oci.image.layer.v1.tar+zstd");
  });

  it("maps Node's arch to OCI's", () => {
    expect(ociPlatform("arm64")).toEqual({ architecture: "arm64", os: "linux" });
    expect(() => ociPlatform("mips")).toThrow();
  });
});
