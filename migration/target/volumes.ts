// Whether the target node can give the restored pod the original's volumes.
// Pure: the caller passes the claims and volumes the pod names (from the API).
//
// The restored pod keeps the original's volumes and mounts (the runtimes refuse
// to restore a container whose bind mounts differ), and it starts while the
// original still runs, on another node. So a volume the target cannot reach,
// or one only one node or one pod may use at a time, would leave the restored
// pod Pending or ContainerCreating after the checkpoint was taken; refusing up
// front, with the reason, costs nothing. A hostPath volume is refused too: on
// the target the same path is another node's directory, so what the pod wrote
// there stays behind while it goes on as if it had moved. Volumes that are
// made afresh for the new pod (emptyDir, configMap, secret, projected,
// downwardAPI, generic ephemeral) are not moved: their content on the target
// is what the target gives (see the README's Limitations).
import type {
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
} from "@kubernetes/client-node";
import { termMatches } from "./choose.ts";

export interface VolumeInput {
  pod: V1Pod;
  target: V1Node;
  /** The claims the pod names, by claim name (absent: not found). */
  claims: Map<string, V1PersistentVolumeClaim>;
  /** The volumes those claims are bound to, by volume name (absent: not found). */
  volumes: Map<string, V1PersistentVolume>;
}

/** The claim names the pod's volumes use (persistentVolumeClaim volumes only). */
export function claimNames(pod: V1Pod): string[] {
  return (pod.spec?.volumes ?? []).flatMap((v) =>
    v.persistentVolumeClaim?.claimName ? [v.persistentVolumeClaim.claimName] : [],
  );
}

/** Why the target cannot provide the pod's volumes: one line per volume, empty when it can. */
export function volumeRefusals(input: VolumeInput): string[] {
  const { pod, target, claims, volumes } = input;
  const node = target.metadata?.name ?? "";
  const out: string[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    if (v.hostPath) {
      out.push(
        `volume ${v.name} (hostPath ${v.hostPath.path}): a directory of ${pod.spec?.nodeName ?? "the source node"}; on ${node} the same path is another directory, so its data would not move`,
      );
      continue;
    }
    const claimName = v.persistentVolumeClaim?.claimName;
    if (!claimName) continue;
    const what = `volume ${v.name} (claim ${claimName})`;
    const claim = claims.get(claimName);
    if (!claim) {
      out.push(`${what}: the claim does not exist`);
      continue;
    }
    const pvName = claim.spec?.volumeName;
    if (claim.status?.phase !== "Bound" || !pvName) {
      out.push(`${what}: the claim is not bound`);
      continue;
    }
    const pv = volumes.get(pvName);
    if (!pv) {
      out.push(`${what}: its PersistentVolume ${pvName} does not exist`);
      continue;
    }
    const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
    if (terms.length > 0 && !terms.some((t) => termMatches(t, target))) {
      out.push(
        `${what}: PersistentVolume ${pvName} is reachable only from the nodes its nodeAffinity selects, and ${node} is not one of them`,
      );
      continue;
    }
    const modes = pv.spec?.accessModes ?? claim.spec?.accessModes ?? [];
    const shared = modes.includes("ReadWriteMany") || modes.includes("ReadOnlyMany");
    if (!shared && modes.includes("ReadWriteOncePod")) {
      out.push(
        `${what}: ReadWriteOncePod, held by the original pod until cutover, so the restored pod could not start`,
      );
    } else if (!shared && modes.includes("ReadWriteOnce")) {
      out.push(
        `${what}: ReadWriteOnce, attached to ${pod.spec?.nodeName ?? "the source node"} until cutover, so it cannot be attached to ${node} for the restored pod`,
      );
    }
  }
  return out;
}
