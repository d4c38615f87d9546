import { createHmac } from "node:crypto";

/**
 * Each monitor signs its samples with its own key, derived from the operator's
 * master key and the pod UID and container. The operator re-derives it to
 * verify, so it never has to read the per-pod Secret that hands the key to the
 * monitor; a pod that knows its own key cannot compute another pod's.
 */
export function monitorKey(master: Buffer, podUid: string, container: string): Buffer {
  return createHmac("sha256", master)
    .update(`edgeshift-monitor/v1/${podUid}/${container}`)
    .digest();
}

/** The Secret (in the pod's namespace, owned by the pod) that holds the pod's monitor keys. */
export function monitorSecretName(podUid: string): string {
  return `edgeshift-monitor-${podUid}`;
}
