// Whose checkpoint an archive holds, by what the archive itself says. The
// kubelet's name, checkpoint-<pod>_<namespace>-<container>-<time>.tar, cannot
// tell pod web in namespace a container b-c from pod web in namespace a-b
// container c; spec.dump's annotations can.
import type { CheckpointMetadata } from "./metadata.ts";

export interface ArchiveOwner {
  namespace: string;
  pod: string;
  container: string;
}

/** Undefined when the archive is `owner`'s container's, otherwise why not. Pure. */
export function matchArchive(
  metadata: Pick<CheckpointMetadata, "namespace" | "podName" | "containerName">,
  owner: ArchiveOwner,
): string | undefined {
  const want = `container ${owner.container} of pod ${owner.namespace}/${owner.pod}`;
  if (metadata.namespace === undefined || metadata.podName === undefined) {
    return `the archive does not name its pod and namespace, so it cannot be shown to hold ${want}`;
  }
  if (
    metadata.namespace === owner.namespace &&
    metadata.podName === owner.pod &&
    metadata.containerName === owner.container
  ) {
    return undefined;
  }
  return `the archive holds container ${metadata.containerName} of pod ${metadata.namespace}/${metadata.podName}, not ${want}`;
}
