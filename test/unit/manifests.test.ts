// What the install bundle and the examples say, checked without a cluster:
// the CRD copies match crds/, the operator's environment passes the operator's
// own config validation, names and selectors line up across files, and the
// examples fit together. test/integration/manifests.test.ts applies them.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type {
  KubernetesObject,
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1Job,
  V1PodDisruptionBudget,
  V1Secret,
  V1Service,
} from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import type { EdgeNode } from "../../operator/api/v1alpha1.ts";
import { loadConfig } from "../../operator/config.ts";
import {
  agentClusterRoleBinding,
  agentDaemonSet,
  agentServiceAccount,
} from "../../operator/edgenode/agent.ts";

const root = resolve(import.meta.dirname, "../..");
const manifests = join(root, "manifests");

function load(rel: string): KubernetesObject[] {
  return parseAllDocuments(readFileSync(join(manifests, rel), "utf8"))
    .map((d) => d.toJS() as KubernetesObject)
    .filter(Boolean);
}
function one<T extends KubernetesObject>(rel: string, kind: string, name?: string): T {
  const found = load(rel).filter((o) => o.kind === kind && (!name || o.metadata?.name === name));
  expect(found, `${kind} ${name ?? ""} in ${rel}`).toHaveLength(1);
  return found[0] as T;
}
const kustomization = (rel: string) =>
  parse(readFileSync(join(manifests, rel), "utf8")) as { resources: string[] };
const yamlFiles = (dir: string) =>
  readdirSync(join(manifests, dir)).filter(
    (f) => f.endsWith(".yaml") && f !== "kustomization.yaml",
  );

const deployment = one<V1Deployment>("operator/operator.yaml", "Deployment");
const operatorContainer = deployment.spec?.template.spec?.containers[0] as V1Container;

/** The environment the kubelet would give the container; references become plausible values. */
function resolvedEnv(env: V1EnvVar[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name")
      out[e.name] = "edgeshift-operator-7d9c-x2x";
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.namespace")
      out[e.name] = deployment.metadata?.namespace ?? "";
    else if (e.valueFrom?.secretKeyRef) out[e.name] = "ab".repeat(32);
    else throw new Error(`unexpected env source for ${e.name}`);
  }
  return out;
}

describe("install bundle", () => {
  it("carries the CRDs exactly as in crds/ (kustomize cannot read outside manifests/)", () => {
    const source = readdirSync(join(root, "crds")).filter((f) => f.endsWith(".yaml"));
    expect(yamlFiles("crds").sort()).toEqual(source.sort());
    for (const f of source) {
      expect(
        readFileSync(join(manifests, "crds", f), "utf8"),
        `manifests/crds/${f} differs from crds/${f}: cp crds/*.yaml manifests/crds/`,
      ).toBe(readFileSync(join(root, "crds", f), "utf8"));
    }
  });

  it("lists every manifest file in its kustomization", () => {
    const listed = new Set(kustomization("kustomization.yaml").resources);
    for (const dir of ["crds", "base", "operator", "nats"]) {
      for (const f of yamlFiles(dir)) expect(listed.has(`${dir}/${f}`), `${dir}/${f}`).toBe(true);
    }
    const examples = new Set(kustomization("examples/kustomization.yaml").resources);
    // migration.yaml names a pod of the reader's, and the other EdgeNodes are
    // alternatives to edgenode.yaml (two EdgeNodes must not select the same
    // nodes): each is applied on its own.
    const alone = ["migration.yaml", "edgenode-request-rate.yaml", "edgenode-prototype.yaml"];
    for (const f of yamlFiles("examples").filter((x) => !alone.includes(x))) {
      expect(examples.has(f), `examples/${f}`).toBe(true);
    }
  });

  it("configures the operator with an environment its config validation accepts", () => {
    const env = resolvedEnv(operatorContainer.env ?? []);
    const config = loadConfig(env);
    expect(config.leaderElection).toBe(true);
    expect(config.namespace).toBe("edgeshift-system");
    expect(config.identity).toBe("edgeshift-operator-7d9c-x2x");
    expect(config.monitorImage).toBe(operatorContainer.image);
    // The NATS URL names the bundled Service.
    const nats = one<V1Service>("nats/nats.yaml", "Service");
    const client = nats.spec?.ports?.find((p) => p.name === "client");
    expect(config.natsUrl).toBe(
      `nats://${nats.metadata?.name}.${nats.metadata?.namespace}.svc:${client?.port}`,
    );
    const key = operatorContainer.env?.find((e) => e.name === "EDGESHIFT_SIGNING_KEY");
    expect(key?.valueFrom?.secretKeyRef).toEqual({ name: "edgeshift-signing-key", key: "key" });
  });

  it("runs two replicas with probes, a PDB and a metrics Service on the operator's port", () => {
    expect(deployment.spec?.replicas).toBe(2);
    expect(operatorContainer.args).toEqual(["operator"]);
    const port = operatorContainer.ports?.find((p) => p.name === "http");
    const env = resolvedEnv(operatorContainer.env ?? []);
    expect(port?.containerPort).toBe(loadConfig(env).httpPort);
    expect(operatorContainer.livenessProbe?.httpGet).toMatchObject({
      path: "/healthz",
      port: "http",
    });
    expect(operatorContainer.readinessProbe?.httpGet).toMatchObject({
      path: "/readyz",
      port: "http",
    });
    const podLabels = deployment.spec?.template.metadata?.labels ?? {};
    const matches = (sel: Record<string, string> | undefined) =>
      Object.entries(sel ?? {}).every(([k, v]) => podLabels[k] === v);
    const pdb = one<V1PodDisruptionBudget>("operator/operator.yaml", "PodDisruptionBudget");
    expect(pdb.spec?.minAvailable).toBe(1);
    expect(matches(pdb.spec?.selector?.matchLabels)).toBe(true);
    const svc = one<V1Service>("operator/operator.yaml", "Service");
    expect(matches(svc.spec?.selector)).toBe(true);
    expect(svc.spec?.ports?.[0]?.targetPort).toBe("http");
  });

  it("uses the ServiceAccounts the RBAC binds", () => {
    const sas = load("base/operator-rbac.yaml")
      .concat(load("base/agent-rbac.yaml"))
      .filter((o) => o.kind === "ServiceAccount")
      .map((o) => o.metadata?.name);
    expect(sas).toContain(deployment.spec?.template.spec?.serviceAccountName);
    // No shared agent identity: the operator makes one per EdgeNode, bound to the bundle's ClusterRole.
    expect(sas).toEqual(["edgeshift-operator"]);
    const en = {
      metadata: { name: "edge", uid: "u" },
      spec: { nodeSelector: { matchLabels: { a: "b" } } },
    } as unknown as EdgeNode;
    const sa = agentServiceAccount(en, { namespace: "edgeshift-system" });
    const crb = agentClusterRoleBinding(en, { namespace: "edgeshift-system" });
    const ds = agentDaemonSet(en, { namespace: "edgeshift-system", image: "i" });
    expect(ds.spec?.template.spec?.serviceAccountName).toBe(sa.metadata?.name);
    expect(crb.subjects).toEqual([
      { kind: "ServiceAccount", name: sa.metadata?.name, namespace: "edgeshift-system" },
    ]);
    const roles = load("base/agent-rbac.yaml")
      .filter((o) => o.kind === "ClusterRole")
      .map((o) => o.metadata?.name);
    expect(roles).toEqual([crb.roleRef.name]);
  });

  it("pins every image and locks every container down", () => {
    const files = [
      "operator/operator.yaml",
      "nats/nats.yaml",
      ...yamlFiles("examples").map((f) => `examples/${f}`),
    ];
    let containers = 0;
    for (const f of files) {
      for (const o of load(f)) {
        const spec = (o as V1Deployment | V1Job).spec?.template?.spec;
        if (!spec) continue;
        expect(spec.securityContext?.runAsNonRoot, `${f} runAsNonRoot`).toBe(true);
        expect(spec.securityContext?.seccompProfile?.type, f).toBe("RuntimeDefault");
        for (const c of spec.containers) {
          containers++;
          expect(c.image, `${f} ${c.name}`).toMatch(/^[^:]+:[\w.-]+$/);
          expect(c.image).not.toMatch(/:latest$/);
          expect(c.securityContext, `${f} ${c.name}`).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          });
          expect(c.resources?.limits?.memory, `${f} ${c.name} memory limit`).toBeDefined();
        }
      }
    }
    expect(containers).toBe(5);
  });
});

describe("examples", () => {
  const edgeNode = one<EdgeNode>("examples/edgenode.yaml", "EdgeNode");
  const secret = one<V1Secret>("examples/registry-secret.yaml", "Secret");
  const jobs = yamlFiles("examples")
    .filter((f) => f.startsWith("testcase-"))
    .map((f) => one<V1Job>(`examples/${f}`, "Job"));

  it("has a registry Secret where the EdgeNode looks, with obviously fake credentials", () => {
    expect(edgeNode.spec.registry?.secretRef).toEqual({
      name: secret.metadata?.name,
      namespace: secret.metadata?.namespace,
    });
    expect(secret.type).toBe("kubernetes.io/dockerconfigjson");
    const config = JSON.parse(secret.stringData?.[".dockerconfigjson"] ?? "") as {
      auths: Record<string, { username: string; password: string; auth: string }>;
    };
    const host = edgeNode.spec.registry?.repository.split("/")[0] ?? "";
    const entry = config.auths[host];
    expect(entry, `auths has the EdgeNode's registry ${host}`).toBeDefined();
    expect(Buffer.from(entry?.auth ?? "", "base64").toString()).toBe(
      `${entry?.username}:${entry?.password}`,
    );
    expect(entry?.password).toMatch(/NOT-A-REAL-PASSWORD/);
    expect(host).toMatch(/\.example\.com(:\d+)?$/);
  });

  it("has three test-case Jobs that land on the EdgeNode's nodes and outlive a migration", () => {
    expect(jobs.map((j) => j.metadata?.name).sort()).toEqual([
      "testcase-checkpoint-cpu-limit",
      "testcase-checkpoint-policy",
      "testcase-restart-policy",
    ]);
    const edgeLabels = edgeNode.spec.nodeSelector.matchLabels ?? {};
    for (const j of jobs) {
      const spec = j.spec?.template.spec;
      // No required placement: it would travel with the restored pod and bar every cloud node.
      expect(spec?.nodeSelector, j.metadata?.name).toBeUndefined();
      expect(
        spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution,
      ).toBeUndefined();
      const preferred =
        spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
      const keys = preferred.flatMap((p) => p.preference.matchExpressions ?? []).map((e) => e.key);
      expect(keys.length, `${j.metadata?.name} prefers edge nodes`).toBeGreaterThan(0);
      for (const k of keys) expect(k in edgeLabels, `${k} on ${j.metadata?.name}`).toBe(true);
      expect(spec?.restartPolicy).toBe("Never");
    }
  });

  it("has test cases that breach the example EdgeNode's thresholds without being OOM-killed", () => {
    const container = (name: string) =>
      jobs.find((j) => j.metadata?.name === name)?.spec?.template.spec
        ?.containers[0] as V1Container;
    const cpuTrigger = edgeNode.spec.thresholds.cpu?.triggerPercent ?? 100;
    // CPU-bound single-threaded loops: 100% of a limit of at most one core.
    for (const name of ["testcase-restart-policy", "testcase-checkpoint-cpu-limit"]) {
      const limit = container(name).resources?.limits?.cpu ?? "";
      expect(limit, name).toMatch(/^\d+m$/);
      expect(Number.parseInt(limit, 10), name).toBeLessThanOrEqual(1000);
      expect(cpuTrigger).toBeLessThan(100);
    }
    // Memory: what it holds plus Node 24's own ~40 MiB (measured) against the limit.
    const hold = container("testcase-checkpoint-policy");
    const holdMiB = Number(hold.env?.find((e) => e.name === "HOLD_MIB")?.value);
    const limitMiB = Number.parseInt(hold.resources?.limits?.memory ?? "", 10);
    expect(hold.resources?.limits?.memory).toMatch(/^\d+Mi$/);
    const percent = ((holdMiB + 40) / limitMiB) * 100;
    expect(percent).toBeGreaterThan(edgeNode.spec.thresholds.memory?.triggerPercent ?? 100);
    expect(holdMiB + 40 + 8).toBeLessThan(limitMiB);
  });
});
