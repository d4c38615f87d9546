import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { PodSelection } from "../api/v1alpha1.ts";
import { podSelection } from "./selection.ts";

function pod(meta: Partial<NonNullable<V1Pod["metadata"]>> = {}, phase = "Running"): V1Pod {
  return {
    metadata: { name: "web", namespace: "apps", uid: "u-1", labels: { app: "web" }, ...meta },
    spec: { nodeName: "edge-1", containers: [{ name: "app" }] },
    status: { phase },
  };
}

const select = (p: V1Pod, s?: PodSelection) => podSelection(p, s, "edgeshift-system");

describe("podSelection", () => {
  it("selects a pod spec.pods names, and every pod when spec.pods is absent", () => {
    expect(select(pod())).toEqual({ selected: true });
    expect(
      select(pod(), { namespaces: ["apps"], selector: { matchLabels: { app: "web" } } }),
    ).toEqual({ selected: true });
  });

  it("does not look at the pod's lifecycle (a Pending or terminating pod is still selected)", () => {
    expect(select(pod({}, "Pending"))).toEqual({ selected: true });
    expect(select(pod({ deletionTimestamp: new Date() }))).toEqual({ selected: true });
  });

  it("refuses a pod annotated edgeshift.dev/migrate: false as OptedOut, whatever spec.pods says", () => {
    const optedOut = pod({ annotations: { "edgeshift.dev/migrate": "false" } });
    for (const s of [undefined, { namespaces: ["apps"] }]) {
      expect(select(optedOut, s)).toEqual({
        selected: false,
        reason: "OptedOut",
        message: 'it is annotated edgeshift.dev/migrate: "false"',
      });
    }
    // Only "false" opts out.
    expect(select(pod({ annotations: { "edgeshift.dev/migrate": "true" } }))).toEqual({
      selected: true,
    });
  });

  it.each<[string, V1Pod, PodSelection | undefined, string]>([
    [
      "namespace not in spec.pods.namespaces",
      pod(),
      { namespaces: ["other", "more"] },
      "namespace apps is not in spec.pods.namespaces",
    ],
    [
      "namespace excluded",
      pod(),
      { excludeNamespaces: ["apps"] },
      "namespace apps is in spec.pods.excludeNamespaces",
    ],
    [
      "labels not selected",
      pod(),
      { selector: { matchLabels: { app: "db" } } },
      "its labels do not match spec.pods.selector",
    ],
    [
      "static pod",
      pod({ annotations: { "kubernetes.io/config.mirror": "x" } }),
      undefined,
      "it is a static pod",
    ],
    [
      "DaemonSet pod",
      pod({ ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "d", uid: "x" }] }),
      undefined,
      "it is a DaemonSet pod",
    ],
    [
      "operator namespace",
      pod({ namespace: "edgeshift-system" }),
      undefined,
      "it is edgeshift's own pod",
    ],
    [
      "edgeshift's own label",
      pod({ labels: { "app.kubernetes.io/part-of": "edgeshift" } }),
      undefined,
      "it is edgeshift's own pod",
    ],
  ])("refuses a pod outside the selection as NotSelected: %s", (_name, p, s, message) => {
    expect(select(p, s)).toEqual({ selected: false, reason: "NotSelected", message });
  });
});
