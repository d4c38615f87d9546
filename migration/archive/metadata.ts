// What a checkpoint archive says about the container it came from, read from
// its config.dump and spec.dump the way checkpointctl does: the container name
// from the runtime's spec annotations, the base image from config.dump.
import { ArchiveError } from "./errors.ts";

export interface CheckpointMetadata {
  /** The Kubernetes container name (e.g. "app"), not the runtime's long name. */
  containerName: string;
  podName?: string;
  namespace?: string;
  /** The image the container ran, e.g. "docker.io/library/nginx:latest". CRI-O pulls it to restore. */
  baseImage: string;
  /** The runtime's image ID. */
  baseImageId?: string;
  /** The image as the pod spec names it (possibly a digest reference). */
  rawImageName?: string;
  /** "CRI-O", "containerd" or "Podman". */
  engine: string;
  /** The OCI runtime (runc, crun). */
  runtime?: string;
  containerId?: string;
  createdTime?: string;
  checkpointedTime?: string;
}

/** The fields of CRI-O's / containerd's config.dump that we read (checkpointctl's ContainerConfig). */
interface ConfigDump {
  id?: unknown;
  name?: unknown;
  rootfsImage?: unknown;
  rootfsImageRef?: unknown;
  rootfsImageName?: unknown;
  runtime?: unknown;
  createdTime?: unknown;
  checkpointedTime?: unknown;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function parseJson(what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ArchiveError(
      "ArchiveInvalid",
      `${what} is not valid JSON: ${(err as Error).message}`,
    );
  }
}

function asObject(what: string, v: unknown): Record<string, unknown> {
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    throw new ArchiveError("ArchiveInvalid", `${what} is not a JSON object`);
  }
  return v as Record<string, unknown>;
}

/** CRI-O names containers k8s_<container>_<pod>_<namespace>_<uid>_<attempt>. */
function fromKubeletName(name: string | undefined): string | undefined {
  const m = name?.match(/^k8s_([^_]+)_/);
  return m?.[1];
}

export function checkpointMetadataFromDumps(
  configDump: string,
  specDump: string,
): CheckpointMetadata {
  const config = asObject("config.dump", parseJson("config.dump", configDump)) as ConfigDump;
  const spec = asObject("spec.dump", parseJson("spec.dump", specDump));
  const annotations: Record<string, unknown> =
    spec.annotations && typeof spec.annotations === "object"
      ? (spec.annotations as Record<string, unknown>)
      : {};
  const a = (k: string) => str(annotations[k]);

  let engine: string;
  let containerName: string | undefined;
  let podName: string | undefined;
  let namespace: string | undefined;
  const manager = a("io.container.manager");
  if (manager === "cri-o") {
    engine = "CRI-O";
    const raw = a("io.kubernetes.cri-o.Metadata");
    if (raw) {
      const meta = parseJson("spec.dump annotation io.kubernetes.cri-o.Metadata", raw);
      if (meta && typeof meta === "object") containerName = str((meta as { name?: unknown }).name);
    }
    containerName ??= a("io.kubernetes.container.name");
    podName = a("io.kubernetes.pod.name");
    namespace = a("io.kubernetes.pod.namespace");
  } else if (manager === "libpod") {
    engine = "Podman";
    containerName = str(config.name);
  } else {
    engine = "containerd";
    podName = a("io.kubernetes.cri.sandbox-name");
    namespace = a("io.kubernetes.cri.sandbox-namespace");
    // containerd's CRI names a container <name>_<pod>_<namespace>_<uid>_<attempt>
    // (none of those can hold "_"). That name first: a container containerd
    // restored from a checkpoint carries the container-name annotation
    // "containerd" (2.x's restore passes its own name there), so only this
    // names it right when it is checkpointed again.
    const parts = str(config.name)?.split("_") ?? [];
    containerName =
      parts.length === 5 && parts[1] === podName && parts[2] === namespace && parts[0]
        ? parts[0]
        : a("io.kubernetes.cri.container-name");
  }
  containerName ??= fromKubeletName(str(config.name));
  if (!containerName) {
    throw new ArchiveError("ArchiveInvalid", "The archive does not name its container");
  }
  const baseImage =
    str(config.rootfsImageName) ?? str(config.rootfsImage) ?? a("io.kubernetes.cri.image-name");
  if (!baseImage) {
    throw new ArchiveError("ArchiveInvalid", "config.dump names no base image (rootfsImageName)");
  }
  const out: CheckpointMetadata = { containerName, baseImage, engine };
  const optional: [keyof CheckpointMetadata, string | undefined][] = [
    ["podName", podName],
    ["namespace", namespace],
    ["baseImageId", str(config.rootfsImageRef)],
    ["rawImageName", str(config.rootfsImage)],
    ["runtime", str(config.runtime)],
    ["containerId", str(config.id)],
    ["createdTime", str(config.createdTime)],
    ["checkpointedTime", str(config.checkpointedTime)],
  ];
  for (const [k, v] of optional)
    if (v !== undefined) (out as unknown as Record<string, string>)[k] = v;
  return out;
}
