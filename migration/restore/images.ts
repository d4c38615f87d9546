// What the operator lets a restored pod run. The digests come from the edge
// agent, the least trusted writer of a Migration's status: the operator never
// takes an image reference from status, it builds one from the EdgeNode's own
// repository and a digest it has checked, and refuses anything else.
import type { ContainerCheckpointStatus } from "../../operator/api/v1alpha1.ts";
import { parseRepository } from "../registry/reference.ts";

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export type CheckpointImages =
  | { ok: true; images: Record<string, string> }
  | { ok: false; message: string };

/**
 * The checkpoint image of each migrated container: `<repository>@<digest>`,
 * with the repository written the way the agent's push writes it. Fails when
 * the EdgeNode names no repository, a container has no well-formed sha256
 * digest, or status already holds an image reference that is anything else.
 */
export function checkpointImages(
  repository: string | undefined,
  containers: readonly ContainerCheckpointStatus[],
): CheckpointImages {
  if (!repository) return { ok: false, message: "the EdgeNode names no registry repository" };
  let repo: ReturnType<typeof parseRepository>;
  try {
    repo = parseRepository(repository);
  } catch (err) {
    return {
      ok: false,
      message: `the EdgeNode's repository is invalid: ${(err as Error).message}`,
    };
  }
  if (containers.length === 0) return { ok: false, message: "no container was checkpointed" };
  const images: Record<string, string> = {};
  for (const c of containers) {
    if (!c.digest || !DIGEST.test(c.digest)) {
      return {
        ok: false,
        message: `container ${c.name}: the reported digest ${JSON.stringify(c.digest ?? "")} is not sha256:<64 hex>`,
      };
    }
    const image = `${repo.registry}/${repo.name}@${c.digest}`;
    if (c.image !== undefined && c.image !== image) {
      return {
        ok: false,
        message: `container ${c.name}: image ${JSON.stringify(c.image.slice(0, 200))} is not ${image} (only the EdgeNode's repository, pinned by the reported digest, is run)`,
      };
    }
    images[c.name] = image;
  }
  return { ok: true, images };
}
