// Which pods on an EdgeNode's nodes it manages (spec.pods and the opt-out
// annotation): the monitor watches only these, and only these move, whether
// the decision engine or a person wrote the Migration. One rule set, so the
// API's promise holds on both paths. Pure, so the rules are unit-tested.
import type { V1Pod } from "@kubernetes/client-node";
import { matchesLabelSelector } from "../api/labels.ts";
import { MIGRATE_ANNOTATION, type PodSelection } from "../api/v1alpha1.ts";

export const PART_OF_LABEL = "app.kubernetes.io/part-of";

export type PodSelectionResult =
  | { selected: true }
  | {
      selected: false;
      /** The Migration failure reason for it. */
      reason: "OptedOut" | "NotSelected";
      /** Why, as a clause: "it is annotated …", "namespace x is …". */
      message: string;
    };

/**
 * Whether the EdgeNode whose `spec.pods` is `selection` manages `pod`. Says
 * nothing about the pod's lifecycle (Running, terminating): each caller has
 * its own rule for that.
 */
export function podSelection(
  pod: V1Pod,
  selection: PodSelection | undefined,
  operatorNamespace: string,
): PodSelectionResult {
  const md = pod.metadata ?? {};
  const ns = md.namespace ?? "";
  const no = (message: string): PodSelectionResult => ({
    selected: false,
    reason: "NotSelected",
    message,
  });
  if (md.annotations?.[MIGRATE_ANNOTATION] === "false") {
    return {
      selected: false,
      reason: "OptedOut",
      message: `it is annotated ${MIGRATE_ANNOTATION}: "false"`,
    };
  }
  if (md.annotations?.["kubernetes.io/config.mirror"]) return no("it is a static pod");
  if (md.ownerReferences?.some((o) => o.kind === "DaemonSet")) return no("it is a DaemonSet pod");
  if (ns === operatorNamespace || md.labels?.[PART_OF_LABEL] === "edgeshift")
    return no("it is edgeshift's own pod");
  if (selection?.namespaces?.length && !selection.namespaces.includes(ns))
    return no(`namespace ${ns} is not in spec.pods.namespaces`);
  if (selection?.excludeNamespaces?.includes(ns))
    return no(`namespace ${ns} is in spec.pods.excludeNamespaces`);
  if (selection?.selector && !matchesLabelSelector(selection.selector, md.labels ?? {}))
    return no("its labels do not match spec.pods.selector");
  return { selected: true };
}
