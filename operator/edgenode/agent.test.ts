import { describe, expect, it } from "vitest";
import type { EdgeNode } from "../api/v1alpha1.ts";
import {
  AGENT_PRIORITY_CLASS,
  agentDaemonSet,
  agentName,
  CLOUD_AGENT_LABEL,
  cloudAgentName,
  nodeSelectorRequirements,
} from "./agent.ts";

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

  it("side cloud (returnToEdge): a second DaemonSet on the cloud nodes, same identity, its own selector", () => {
    const s = { namespace: "edgeshift-system", image: "img" };
    const terms = (ds: ReturnType<typeof agentDaemonSet>) =>
      ds.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms;
    const edge = agentDaemonSet(en, s);
    const cloud = agentDaemonSet(en, s, "cloud");
    expect(terms(edge)).toEqual([
      { matchExpressions: nodeSelectorRequirements(en.spec.nodeSelector) },
    ]);
    expect(terms(cloud)).toEqual([
      { matchExpressions: [{ key: "cloud", operator: "In", values: ["true"] }] },
    ]);
    expect(cloud.metadata?.name).toBe("edgeshift-agent-factory-cloud");
    expect(cloud.metadata?.name).toBe(cloudAgentName("factory"));
    expect(cloud.spec?.template.spec?.serviceAccountName).toBe(agentName("factory"));
    // Its selector tells its pods from the edge DaemonSet's (which are not its own).
    expect(cloud.spec?.selector.matchLabels).toEqual({
      ...edge.spec?.selector.matchLabels,
      ...CLOUD_AGENT_LABEL,
    });
    expect(cloud.spec?.template.metadata?.labels).toMatchObject(
      cloud.spec?.selector.matchLabels ?? {},
    );
    expect(edge.spec?.template.metadata?.labels).not.toHaveProperty(
      Object.keys(CLOUD_AGENT_LABEL)[0] ?? "",
    );
    // Everything else (mounts, env, security) is the same agent.
    expect(cloud.spec?.template.spec?.containers).toEqual(edge.spec?.template.spec?.containers);
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
    expect(pod?.serviceAccountName).toBe(agentName("factory"));
    expect(pod?.volumes?.map((v) => v.name)).toEqual(["checkpoints", "cgroup", "registry-auth"]);
    expect(pod?.volumes?.[2]?.secret?.secretName).toBe("regcred");
    // The host's cgroups, where the agent freezes a source container (handoff Freeze).
    expect(pod?.volumes?.[1]?.hostPath?.path).toBe("/sys/fs/cgroup");
    expect(pod?.containers[0]?.volumeMounts?.find((v) => v.name === "cgroup")?.mountPath).toBe(
      "/host/sys/fs/cgroup",
    );
    const env = Object.fromEntries(
      (pod?.containers[0]?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]),
    );
    expect(env.EDGESHIFT_REGISTRY_REPOSITORY).toBe("registry.example.com/edgeshift/checkpoints");
    expect(env.EDGESHIFT_REGISTRY_AUTH_FILE).toBe("/etc/edgeshift/registry/config.json");
    expect(env.EDGESHIFT_CGROUP_ROOT).toBe("/host/sys/fs/cgroup");
    // The fence deadline of a held original: the EdgeNode's, else the CRD default.
    expect(env.EDGESHIFT_FENCE_TIMEOUT_SECONDS).toBe("120");
    const short = agentDaemonSet(
      { ...en, spec: { ...en.spec, freezeTimeoutSeconds: 15 } },
      { namespace: "edgeshift-system", image: "img:1" },
    );
    expect(
      short.spec?.template.spec?.containers[0]?.env?.find(
        (e) => e.name === "EDGESHIFT_FENCE_TIMEOUT_SECONDS",
      )?.value,
    ).toBe("15");
    expect(JSON.stringify(ds)).not.toMatch(/password|token/i);
    expect(ds.spec?.selector.matchLabels).toEqual({
      "app.kubernetes.io/component": "agent",
      "edgeshift.dev/edgenode": "factory",
    });
  });

  it("runs node-critical, so the node pressure that triggers a migration does not evict the agent first", () => {
    const pod = agentDaemonSet(en, { namespace: "edgeshift-system", image: "img:1" }).spec?.template
      .spec;
    expect(AGENT_PRIORITY_CLASS).toBe("system-node-critical");
    expect(pod?.priorityClassName).toBe("system-node-critical");
    // The API server resolves the class; a literal priority would be refused beside it.
    expect(pod?.priority).toBeUndefined();
    expect(pod?.tolerations).toEqual([{ operator: "Exists" }]);
  });

  it("passes the kubelet TLS choice to the agent: ClusterCA by default, NodeSelfSigned, or a mounted CA bundle", () => {
    const envOf = (e: EdgeNode) => {
      const pod = agentDaemonSet(e, { namespace: "edgeshift-system", image: "img" }).spec?.template
        .spec;
      const c = pod?.containers[0];
      const env = Object.fromEntries((c?.env ?? []).map((v) => [v.name, v.value]));
      return { env, volumes: pod?.volumes ?? [], mounts: c?.volumeMounts ?? [] };
    };
    const def = envOf(en);
    expect(def.env.EDGESHIFT_KUBELET_TLS_MODE).toBe("ClusterCA");
    expect(def.env.EDGESHIFT_KUBELET_CA_FILE).toBeUndefined(); // the ServiceAccount's cluster CA
    const self = envOf({ ...en, spec: { ...en.spec, kubeletTLS: { mode: "NodeSelfSigned" } } });
    expect(self.env.EDGESHIFT_KUBELET_TLS_MODE).toBe("NodeSelfSigned");
    expect(self.volumes.map((v) => v.name)).not.toContain("kubelet-ca");
    const bundle = envOf({
      ...en,
      spec: {
        ...en.spec,
        kubeletTLS: { mode: "CABundle", caBundle: { configMapName: "kubelet-ca-pem" } },
      },
    });
    expect(bundle.env.EDGESHIFT_KUBELET_TLS_MODE).toBe("CABundle");
    expect(bundle.env.EDGESHIFT_KUBELET_CA_FILE).toBe("/etc/edgeshift/kubelet-ca/ca.crt");
    expect(bundle.volumes.find((v) => v.name === "kubelet-ca")?.configMap).toEqual({
      name: "kubelet-ca-pem",
      items: [{ key: "ca.crt", path: "ca.crt" }],
    });
    expect(bundle.mounts.find((m) => m.name === "kubelet-ca")).toMatchObject({
      mountPath: "/etc/edgeshift/kubelet-ca",
      readOnly: true,
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
