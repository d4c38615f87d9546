// Removing a migration's checkpoint images from the registry: they hold the
// workload's memory. The edge agent that pushed them does it when the
// Migration ends; the operator does it in the agent's place when that agent
// cannot (its EdgeNode, DaemonSet or node gone), so the agent's finalizer
// never wedges a Migration or its namespace.
import { MediaType } from "../oci/image.ts";
import type { RegistryClient } from "./client.ts";

/** The finalizer the agent holds on a Migration until its images are gone. */
export const IMAGE_FINALIZER = "edgeshift.dev/checkpoint-images";

/**
 * Deletes each checkpoint image (the index and the manifests it points to; the
 * registry's own garbage collection takes the blobs). An image already gone
 * counts as deleted. Returns the digests of the indexes that were found.
 */
export async function deleteCheckpointImages(
  client: RegistryClient,
  repository: string,
  digests: string[],
): Promise<string[]> {
  const found: string[] = [];
  for (const digest of digests) {
    const index = await client.getManifest(repository, digest, [MediaType.ImageIndex]);
    if (!index) continue;
    const children =
      (JSON.parse(index.bytes.toString("utf8")) as { manifests?: { digest: string }[] })
        .manifests ?? [];
    for (const d of children) await client.deleteManifest(repository, d.digest);
    await client.deleteManifest(repository, digest);
    found.push(digest);
  }
  return found;
}
