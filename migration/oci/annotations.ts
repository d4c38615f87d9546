// Annotations that mark an image as a container checkpoint. CRI-O restores
// from an image carrying io.kubernetes.cri-o.annotations.checkpoint.name
// (cri-o pkg/annotations); containerd 2.1-2.3 looks for
// org.criu.checkpoint.container.name in the index (the names checkpointctl's
// lib/annotations.go defines). We write both families on manifest and index.
import type { CheckpointMetadata } from "../archive/metadata.ts";

export const CrioAnnotation = {
  Name: "io.kubernetes.cri-o.annotations.checkpoint.name",
  RawImageName: "io.kubernetes.cri-o.annotations.checkpoint.rawImageName",
  RootfsImageID: "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageID",
  RootfsImageName: "io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName",
} as const;

export const CriuAnnotation = {
  ContainerName: "org.criu.checkpoint.container.name",
  PodName: "org.criu.checkpoint.pod.name",
  PodNamespace: "org.criu.checkpoint.pod.namespace",
  RootfsImageName: "org.criu.checkpoint.rootfsImageName",
  RootfsImageUserRequested: "org.criu.checkpoint.rootfsImageUserRequested",
  RootfsImageID: "org.criu.checkpoint.rootfsImageID",
  EngineName: "org.criu.checkpoint.engine.name",
  RuntimeName: "org.criu.checkpoint.runtime.name",
  HostArch: "org.criu.checkpoint.host.arch",
} as const;

export const OciAnnotation = {
  Created: "org.opencontainers.image.created",
} as const;

export const EdgeshiftAnnotation = {
  /**
   * Identity of the source archive and compression. A re-push of the same
   * archive to the same tag finds it and uploads nothing.
   */
  Source: "dev.edgeshift.checkpoint.source",
} as const;

/** Both annotation families for one checkpoint, from the archive's metadata. */
export function checkpointAnnotations(
  meta: CheckpointMetadata,
  extra: { architecture?: string; created?: string } = {},
): Record<string, string> {
  const out: Record<string, string> = {
    [CrioAnnotation.Name]: meta.containerName,
    [CrioAnnotation.RootfsImageName]: meta.baseImage,
    [CriuAnnotation.ContainerName]: meta.containerName,
    [CriuAnnotation.RootfsImageName]: meta.baseImage,
    [CriuAnnotation.EngineName]: meta.engine,
  };
  const set = (key: string, value: string | undefined) => {
    if (value) out[key] = value;
  };
  set(CrioAnnotation.RawImageName, meta.rawImageName);
  set(CrioAnnotation.RootfsImageID, meta.baseImageId);
  set(CriuAnnotation.RootfsImageUserRequested, meta.rawImageName);
  set(CriuAnnotation.RootfsImageID, meta.baseImageId);
  set(CriuAnnotation.PodName, meta.podName);
  set(CriuAnnotation.PodNamespace, meta.namespace);
  set(CriuAnnotation.RuntimeName, meta.runtime);
  set(CriuAnnotation.HostArch, extra.architecture);
  set(OciAnnotation.Created, extra.created);
  return out;
}
