import { describe, expect, it } from "vitest";
import type { EdgeNode } from "../api/v1alpha1.ts";
import { agentDaemonSet, agentName, nodeSelectorRequirements } from "./agent.ts";

const en: EdgeNode = {
  apiVersion: "edgeshift.dev/v1alpha1",
  kind: "EdgeNode",
  metadata: { name: "factory", uid: "uid-1" },
  spec: {
    nodeSelector: {
      matchLabels: { "node-role.edgeshift.dev/edge": "true" },
      matchExpressions: [
        { key: "zone", operator: "In", values: ["a", "b"] },
        { key: "retired", operator: "DoesNotExist" },
      ],
    },
    thresholds: { cpu: { triggerPercent: 80 } },
    cloud: { nodeSelector: { matchLabels: { cloud: "true" } } },
    registry: {
      repository: "registry.example.com/edgeshift/checkpoints",
      secretRef: { name: "regcred" },
    },
  },
};

describe("agentDaemonSet", () => {
  it("runs on exactly the EdgeNode's nodes", () => {
    expect(nodeSelectorRequirements(en.spec.nodeSelector)).toEqual([
      { key: "node-role.edgeshift.dev/edge", operator: "In", values: ["true"] },
      { key: "zone", operator: "In", values: ["a", "b"] },
      { key: "retired", operator: "DoesNotExist", values: undefined },
    ]);
  });

  it("is owned by the EdgeNode, mounts the checkpoint dir and the registry secret, and holds no credential", () => {
    const ds = agentDaemonSet(en, { namespace: "edgeshift-system", image: "img:1" });
    expect(ds.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "EdgeNode",
      name: "factory",
      uid: "uid-1",
      controller: true,
    });
    const pod = ds.spec?.template.spec;
    expect(pod?.serviceAccountName).toBe("edgeshift-agent");
    expect(pod?.volumes?.map((v) => v.name)).toEqual(["checkpoints", "registry-auth"]);
    expect(pod?.volumes?.[1]?.secret?.secretName).toBe("regcred");
    const env = Object.fromEntries(
      (pod?.containers[0]?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]),
    );
    expect(env.EDGESHIFT_REGISTRY_REPOSITORY).toBe("registry.example.com/edgeshift/checkpoints");
    expect(env.EDGESHIFT_REGISTRY_AUTH_FILE).toBe("/etc/edgeshift/registry/config.json");
    expect(JSON.stringify(ds)).not.toMatch(/password|token/i);
    expect(ds.spec?.selector.matchLabels).toEqual({
      "app.kubernetes.io/component": "agent",
      "edgeshift.dev/edgenode": "factory",
    });
  });

  it("keeps names short and distinct", () => {
    const a = agentName("x".repeat(60));
    const b = agentName(`${"x".repeat(59)}y`);
    expect(a.length).toBeLessThanOrEqual(63);
    expect(a).not.toBe(b);
    expect(agentName("factory")).toBe("edgeshift-agent-factory");
  });
});
