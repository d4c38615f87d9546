// The install bundle against a real API server: it renders with kustomize,
// passes a server-side dry run, applies for real, its workloads pass the
// "restricted" Pod Security Standard, and the operator's and the agent's
// ServiceAccounts can do exactly what their code needs (SubjectAccessReview
// over a matrix of resources, verbs and namespaces) and nothing else.
import { spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AuthorizationV1Api,
  type KubernetesObject,
  PolicyV1Api,
  type V1Deployment,
  type V1Job,
  type V1PodTemplateSpec,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { EdgeNode } from "../../operator/api/v1alpha1.ts";
import {
  agentClusterRoleBinding,
  agentDaemonSet,
  agentServiceAccount,
} from "../../operator/edgenode/agent.ts";
import { ignoreNotFound, isNotFound, kubeClients, uniqueName, waitFor } from "../support/kube.ts";
import { repoRoot } from "../support/operator.ts";

const kubeconfig = inject("kubeconfig");
const kubectl = inject("kubectl");
const kube = kubeClients(kubeconfig);
const authz = kube.kc.makeApiClient(AuthorizationV1Api);
const policy = kube.kc.makeApiClient(PolicyV1Api);
const NS = "edgeshift-system";

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kubectlRun(args: string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectl, ["--kubeconfig", kubeconfig, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const r = await kubectlRun(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}):\n${r.stderr}`);
  return r.stdout;
}

const docs = (yaml: string) =>
  parseAllDocuments(yaml)
    .map((d) => d.toJS() as KubernetesObject)
    .filter(Boolean);
const id = (o: KubernetesObject) =>
  `${o.kind}/${o.metadata?.namespace ? `${o.metadata.namespace}/` : ""}${o.metadata?.name}`;

async function exists(o: KubernetesObject): Promise<boolean> {
  try {
    await kube.objects.read({
      apiVersion: o.apiVersion,
      kind: o.kind,
      metadata: { name: o.metadata?.name ?? "", namespace: o.metadata?.namespace },
    });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

let bundleYaml = "";
let bundle: KubernetesObject[] = [];
/** Objects this file created (they did not exist before); removed in afterAll. CRDs belong to the global setup. */
const created: KubernetesObject[] = [];
const scratchNamespaces: string[] = [];

beforeAll(async () => {
  bundleYaml = await kubectlOk(["kustomize", join(repoRoot, "manifests")]);
  bundle = docs(bundleYaml);
  for (const o of bundle) {
    if (o.kind !== "CustomResourceDefinition" && !(await exists(o))) created.push(o);
  }
});

afterAll(async () => {
  // Workload pods first, forcibly: no kubelet runs here to finish a graceful
  // delete, and a namespace waits for its pods.
  const workloads = created.filter((o) => o.kind === "Deployment");
  for (const o of [...created].reverse()) {
    await ignoreNotFound(
      kube.objects.delete(
        {
          apiVersion: o.apiVersion,
          kind: o.kind,
          metadata: { name: o.metadata?.name ?? "", namespace: o.metadata?.namespace },
        },
        undefined,
        undefined,
        0,
        undefined,
        "Background",
      ),
    );
  }
  for (const d of workloads) {
    const selector = `app.kubernetes.io/name=${d.metadata?.name}`;
    await waitFor(
      async () => {
        await kube.core.deleteCollectionNamespacedPod({
          namespace: NS,
          labelSelector: selector,
          gracePeriodSeconds: 0,
        });
        const left = await kube.core.listNamespacedPod({ namespace: NS, labelSelector: selector });
        return left.items.length === 0;
      },
      { timeoutMs: 30_000, intervalMs: 500, description: `pods of ${d.metadata?.name} gone` },
    );
  }
  for (const ns of [
    ...scratchNamespaces,
    ...created.filter((o) => o.kind === "Namespace").map((o) => o.metadata?.name ?? ""),
  ]) {
    await ignoreNotFound(kube.core.deleteNamespace({ name: ns }));
  }
  // The next test file may install the operator's namespace again: wait until it is gone.
  for (const o of created.filter((x) => x.kind === "Namespace")) {
    await waitFor(async () => !(await exists(o)), {
      timeoutMs: 60_000,
      intervalMs: 500,
      description: `${id(o)} deleted`,
    });
  }
});

describe("install bundle", () => {
  it("renders the namespace, CRDs, RBAC, operator and NATS", () => {
    expect(bundle.map(id).sort()).toEqual(
      [
        "ClusterRole/edgeshift-agent",
        "ClusterRole/edgeshift-operator",
        "ClusterRoleBinding/edgeshift-operator",
        "CustomResourceDefinition/edgenodes.edgeshift.dev",
        "ConfigMap/edgeshift-system/edgeshift-nats",
        "CustomResourceDefinition/migrations.edgeshift.dev",
        "Deployment/edgeshift-system/edgeshift-nats",
        "Deployment/edgeshift-system/edgeshift-operator",
        "Namespace/edgeshift-system",
        "PodDisruptionBudget/edgeshift-system/edgeshift-operator",
        "Role/edgeshift-system/edgeshift-operator-leader-election",
        "RoleBinding/edgeshift-system/edgeshift-operator-leader-election",
        "Service/edgeshift-system/edgeshift-nats",
        "Service/edgeshift-system/edgeshift-operator-metrics",
        "ServiceAccount/edgeshift-system/edgeshift-operator",
        "ValidatingAdmissionPolicy/edgeshift-agent-writes",
        "ValidatingAdmissionPolicyBinding/edgeshift-agent-writes",
      ].sort(),
    );
    // kustomize orders the Namespace before what lives in it, so one apply works on a fresh cluster.
    const order = bundle.map(id);
    expect(order.indexOf("Namespace/edgeshift-system")).toBeLessThan(
      order.indexOf("Deployment/edgeshift-system/edgeshift-operator"),
    );
  });

  it("passes a server-side dry run without creating anything, then applies for real", async () => {
    // A dry run of objects in a namespace that does not exist yet is refused
    // (NamespaceLifecycle admission), so the namespace goes first.
    const nsDoc = bundle.find((o) => o.kind === "Namespace");
    await kubectlOk(["apply", "--server-side", "-f", "-"], JSON.stringify(nsDoc));

    const dry = await kubectlOk(
      ["apply", "--server-side", "--dry-run=server", "-f", "-"],
      bundleYaml,
    );
    const lines = dry.trim().split("\n");
    expect(lines).toHaveLength(bundle.length);
    for (const l of lines) expect(l).toMatch(/serverside-applied \(server dry run\)$/);
    for (const o of created.filter((x) => x.kind !== "Namespace")) {
      expect(await exists(o), `${id(o)} after the dry run`).toBe(false);
    }

    const real = await kubectlOk(["apply", "--server-side", "-f", "-"], bundleYaml);
    expect(real.trim().split("\n")).toHaveLength(bundle.length);
    for (const o of bundle) expect(await exists(o), id(o)).toBe(true);
  });

  it("runs the operator with its ServiceAccount, and the PodDisruptionBudget covers both replicas", async () => {
    // Pods are created only if the ServiceAccount exists (admission); the
    // disruption controller counts the pods the PDB's selector matches.
    const pdb = await waitFor(
      async () => {
        const p = await policy.readNamespacedPodDisruptionBudget({
          name: "edgeshift-operator",
          namespace: NS,
        });
        return p.status?.expectedPods === 2 ? p : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, description: "PDB expecting 2 pods" },
    );
    expect(pdb.spec?.minAvailable).toBe(1);
    const pods = await kube.core.listNamespacedPod({
      namespace: NS,
      labelSelector: "app.kubernetes.io/name=edgeshift-operator",
    });
    expect(pods.items).toHaveLength(2);
    for (const p of pods.items) {
      expect(p.spec?.serviceAccountName).toBe("edgeshift-operator");
      expect(p.spec?.containers[0]?.args).toEqual(["operator"]);
    }
  });

  it("ships examples the API server accepts (server-side dry run)", async () => {
    const examples = await kubectlOk(["kustomize", join(repoRoot, "manifests/examples")]);
    expect(docs(examples).map(id).sort()).toEqual(
      [
        "EdgeNode/factory-floor",
        "Job/default/testcase-checkpoint-cpu-limit",
        "Job/default/testcase-checkpoint-policy",
        "Job/default/testcase-restart-policy",
        "Secret/edgeshift-system/edgeshift-registry",
      ].sort(),
    );
    const dry = await kubectlOk(
      ["apply", "--server-side", "--dry-run=server", "-f", "-"],
      examples,
    );
    expect(dry.trim().split("\n")).toHaveLength(5);
    const migration = await kubectlOk([
      "apply",
      "--server-side",
      "--dry-run=server",
      "-f",
      join(repoRoot, "manifests/examples/migration.yaml"),
    ]);
    expect(migration).toMatch(
      /migration\.edgeshift\.dev\/sensor-ingest-0-manual serverside-applied \(server dry run\)/,
    );
  });

  it("ships workloads that pass the restricted Pod Security Standard", async () => {
    const ns = uniqueName("psa-restricted");
    scratchNamespaces.push(ns);
    await kube.core.createNamespace({
      body: {
        metadata: {
          name: ns,
          labels: {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
          },
        },
      },
    });
    await waitFor(
      () => kube.core.readNamespacedServiceAccount({ name: "default", namespace: ns }),
      { timeoutMs: 20_000, description: `default ServiceAccount in ${ns}` },
    );
    const examples = docs(await kubectlOk(["kustomize", join(repoRoot, "manifests/examples")]));
    const templates: [string, V1PodTemplateSpec][] = [
      ...bundle
        .filter((o) => o.kind === "Deployment")
        .map((o) => [id(o), (o as V1Deployment).spec?.template] as [string, V1PodTemplateSpec]),
      ...examples
        .filter((o) => o.kind === "Job")
        .map((o) => [id(o), (o as V1Job).spec?.template] as [string, V1PodTemplateSpec]),
    ];
    expect(templates).toHaveLength(5);
    for (const [name, t] of templates) {
      const spec = {
        ...t.spec,
        serviceAccountName: undefined,
        containers: t.spec?.containers ?? [],
      };
      // Throws with the Pod Security violations if any.
      await kube.core
        .createNamespacedPod({
          namespace: ns,
          dryRun: "All",
          body: { metadata: { generateName: "psa-", labels: t.metadata?.labels }, spec },
        })
        .catch((err: { body?: string }) => {
          throw new Error(`${name} refused: ${err.body ?? err}`);
        });
    }
  });

  it("labels its namespace so the agent, which needs a hostPath and root, is admitted even where a stricter cluster default applies", async () => {
    const nsObj = bundle.find((o) => o.kind === "Namespace");
    expect(nsObj?.metadata?.labels?.["pod-security.kubernetes.io/enforce"]).toBe("privileged");
    const en = {
      apiVersion: "edgeshift.dev/v1alpha1",
      kind: "EdgeNode",
      metadata: { name: "psa-check", uid: "00000000-0000-0000-0000-000000000001" },
      spec: {
        nodeSelector: { matchLabels: { edge: "yes" } },
        cloud: { nodeSelector: { matchLabels: { cloud: "yes" } } },
        registry: { repository: "r.example/x", secretRef: { name: "s" } },
      },
    } as unknown as EdgeNode;
    const ds = agentDaemonSet(en, { namespace: NS, image: "ghcr.io/edgeshift/edgeshift:0.1.0" });
    const body = (namespace: string) => ({
      metadata: { generateName: "agent-psa-", namespace },
      spec: {
        ...ds.spec?.template.spec,
        serviceAccountName: undefined,
        containers: ds.spec?.template.spec?.containers ?? [],
      },
    });
    // The bundle's namespace admits it...
    await kube.core.createNamespacedPod({ namespace: NS, dryRun: "All", body: body(NS) });
    // ...which a namespace at the baseline level would not (hostPath, so not a no-op label).
    const strict = uniqueName("psa-baseline");
    scratchNamespaces.push(strict);
    await kube.core.createNamespace({
      body: {
        metadata: { name: strict, labels: { "pod-security.kubernetes.io/enforce": "baseline" } },
      },
    });
    await waitFor(
      () => kube.core.readNamespacedServiceAccount({ name: "default", namespace: strict }),
      { timeoutMs: 20_000, description: `default ServiceAccount in ${strict}` },
    );
    const refused = await kube.core
      .createNamespacedPod({ namespace: strict, dryRun: "All", body: body(strict) })
      .then(() => "")
      .catch((err: { body?: string }) => String(err.body ?? err));
    expect(refused).toMatch(/hostPath/);
  });

  it("lets one `kustomize edit set image` change the operator, monitor and agent image", async () => {
    const dir = await mkdtemp(join(tmpdir(), "edgeshift-kustomize-"));
    try {
      await cp(join(repoRoot, "manifests"), join(dir, "manifests"), { recursive: true });
      const k = join(dir, "manifests/kustomization.yaml");
      const text = await readFile(k, "utf8");
      await writeFile(
        k,
        text.replace(
          /- name: ghcr\.io\/edgeshift\/edgeshift\n(\s+)newTag: \S+/,
          "- name: ghcr.io/edgeshift/edgeshift\n$1newName: registry.example.com/edgeshift\n$1newTag: dev",
        ),
      );
      const out = docs(await kubectlOk(["kustomize", join(dir, "manifests")]));
      const d = out.find(
        (o) => id(o) === "Deployment/edgeshift-system/edgeshift-operator",
      ) as V1Deployment;
      const c = d.spec?.template.spec?.containers[0];
      expect(c?.image).toBe("registry.example.com/edgeshift:dev");
      expect(c?.env?.find((e) => e.name === "EDGESHIFT_MONITOR_IMAGE")?.value).toBe(
        "registry.example.com/edgeshift:dev",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// --- RBAC ---------------------------------------------------------------------

interface Attr {
  group: string;
  resource: string;
  subresource?: string;
  verb: string;
  namespace: string;
}

const VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
/** [group, resource(/subresource), namespaced] */
const RESOURCES: [string, string, boolean][] = [
  ["edgeshift.dev", "edgenodes", false],
  ["edgeshift.dev", "edgenodes/status", false],
  ["edgeshift.dev", "migrations", true],
  ["edgeshift.dev", "migrations/status", true],
  ["", "pods", true],
  ["", "pods/ephemeralcontainers", true],
  ["", "pods/exec", true],
  ["", "pods/attach", true],
  ["", "pods/portforward", true],
  ["", "pods/log", true],
  ["", "pods/status", true],
  ["", "pods/eviction", true],
  ["", "secrets", true],
  ["", "configmaps", true],
  ["", "serviceaccounts", true],
  ["", "serviceaccounts/token", true],
  ["", "events", true],
  ["events.k8s.io", "events", true],
  ["", "nodes", false],
  ["", "nodes/status", false],
  ["", "persistentvolumeclaims", true],
  ["", "persistentvolumes", false],
  ["", "nodes/proxy", false],
  ["", "nodes/checkpoint", false],
  ["", "namespaces", false],
  ["coordination.k8s.io", "leases", true],
  ["apps", "daemonsets", true],
  ["apps", "deployments", true],
  ["batch", "jobs", true],
  ["rbac.authorization.k8s.io", "clusterroles", false],
  ["rbac.authorization.k8s.io", "clusterrolebindings", false],
  ["rbac.authorization.k8s.io", "rolebindings", true],
  ["*", "*", true],
];
/** "" is cluster-wide (every namespace at once). */
const NAMESPACES = ["", NS, "default", "kube-system"];

const key = (a: Attr) =>
  `${a.verb} ${a.group || "core"}/${a.resource}${a.subresource ? `/${a.subresource}` : ""}${a.namespace ? ` in ${a.namespace}` : ""}`;

function matrix(): Attr[] {
  const out: Attr[] = [];
  for (const [group, full, namespaced] of RESOURCES) {
    const [resource = "", subresource] = full.split("/");
    for (const namespace of namespaced ? NAMESPACES : [""]) {
      for (const verb of [...VERBS, ...(group === "*" ? ["*"] : [])]) {
        out.push({ group, resource, subresource, verb, namespace });
      }
    }
  }
  return out;
}

/** Grants as "verbs group/resource[/sub]" with where: "*" (every namespace and cluster-wide) or a namespace. */
function expected(grants: [string[], string, string, "*" | string][]): Set<string> {
  const out = new Set<string>();
  for (const [verbs, group, full, where] of grants) {
    const [resource = "", subresource] = full.split("/");
    const namespaced = RESOURCES.find(([g, r]) => g === group && r === full)?.[2];
    const scopes = where === "*" ? (namespaced ? NAMESPACES : [""]) : [where];
    for (const verb of verbs) {
      for (const namespace of scopes)
        out.add(key({ group, resource, subresource, verb, namespace }));
    }
  }
  return out;
}

const reviews = new Map<string, Promise<Set<string>>>();
/** Memoised: two tests read the operator's answers. */
function allowedFor(serviceAccount: string): Promise<Set<string>> {
  let r = reviews.get(serviceAccount);
  if (!r) {
    r = review(serviceAccount);
    reviews.set(serviceAccount, r);
  }
  return r;
}

async function review(serviceAccount: string): Promise<Set<string>> {
  const user = `system:serviceaccount:${NS}:${serviceAccount}`;
  const groups = ["system:serviceaccounts", `system:serviceaccounts:${NS}`, "system:authenticated"];
  const attrs = matrix();
  const allowed = new Set<string>();
  for (let i = 0; i < attrs.length; i += 32) {
    await Promise.all(
      attrs.slice(i, i + 32).map(async (a) => {
        const r = await authz.createSubjectAccessReview({
          body: {
            spec: {
              user,
              groups,
              resourceAttributes: {
                group: a.group,
                resource: a.resource,
                subresource: a.subresource,
                verb: a.verb,
                namespace: a.namespace || undefined,
              },
            },
          },
        });
        if (r.status?.allowed) allowed.add(key(a));
      }),
    );
  }
  return allowed;
}

const sorted = (s: Set<string>) => [...s].sort();

describe("RBAC (SubjectAccessReview as each ServiceAccount)", () => {
  beforeAll(async () => {
    // Bound by the bundle applied above; applied again so this block also runs alone.
    await kubectlOk(["apply", "--server-side", "-f", "-"], bundleYaml);
  });

  it("gives the operator exactly what its controllers use", async () => {
    const allowed = await allowedFor("edgeshift-operator");
    const want = expected([
      [["list", "watch"], "edgeshift.dev", "edgenodes", "*"],
      [["patch"], "edgeshift.dev", "edgenodes/status", "*"],
      [["list", "watch", "create", "patch", "delete"], "edgeshift.dev", "migrations", "*"],
      [["patch"], "edgeshift.dev", "migrations/status", "*"],
      [["list", "watch"], "", "nodes", "*"],
      [["get", "list", "watch", "create", "patch", "delete"], "", "pods", "*"],
      [["patch"], "", "pods/ephemeralcontainers", "*"],
      [["get"], "", "persistentvolumeclaims", "*"],
      [["get"], "", "persistentvolumes", "*"],
      [["create"], "", "secrets", "*"],
      [["create"], "events.k8s.io", "events", "*"],
      [["get", "create", "update"], "coordination.k8s.io", "leases", NS],
      [["create", "patch", "delete"], "apps", "daemonsets", NS],
      // Each EdgeNode's agent identity.
      [["create", "patch"], "", "serviceaccounts", NS],
      [["create", "patch"], "rbac.authorization.k8s.io", "clusterrolebindings", "*"],
    ]);
    expect(sorted(allowed)).toEqual(sorted(want));
  });

  it("lets the operator bind the agent's ClusterRole and no other", async () => {
    const can = async (name: string) =>
      (
        await authz.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${NS}:edgeshift-operator`,
              groups: ["system:serviceaccounts", `system:serviceaccounts:${NS}`],
              resourceAttributes: {
                group: "rbac.authorization.k8s.io",
                resource: "clusterroles",
                verb: "bind",
                name,
              },
            },
          },
        })
      ).status?.allowed ?? false;
    expect(await can("edgeshift-agent")).toBe(true);
    for (const other of ["edgeshift-operator", "cluster-admin", "admin"])
      expect(await can(other), other).toBe(false);
  });

  it("denies the operator node proxy, exec, reading Secrets and anything outside its grants", async () => {
    const allowed = await allowedFor("edgeshift-operator");
    const denied = [
      "create core/nodes/proxy",
      "get core/nodes/proxy",
      "create core/pods/exec in default",
      "create core/pods/exec",
      "get core/secrets",
      "list core/secrets",
      "get core/secrets in default",
      "list core/secrets in edgeshift-system",
      "delete core/nodes",
      "get coordination.k8s.io/leases in default",
      "update coordination.k8s.io/leases in kube-system",
      "create apps/daemonsets in kube-system",
      "patch apps/daemonsets in default",
      "* */*",
      "* */* in edgeshift-system",
    ];
    for (const d of denied) expect(allowed.has(d), d).toBe(false);
    // The matrix did ask these (a typo would make this test vacuous).
    const asked = new Set(matrix().map(key));
    for (const d of denied) expect(asked.has(d), `${d} is in the matrix`).toBe(true);
  });

  it("gives an EdgeNode's agent, through the identity the operator makes for it, only checkpoints and its Migrations", async () => {
    // What the operator applies for an EdgeNode (without the owner reference,
    // which would need the EdgeNode to exist).
    const en = { metadata: { name: "rbac-edge" }, spec: {} } as unknown as EdgeNode;
    const sa = agentServiceAccount(en, { namespace: NS });
    const crb = agentClusterRoleBinding(en, { namespace: NS });
    for (const o of [sa, crb]) {
      delete o.metadata?.ownerReferences;
      if (!(await exists(o as KubernetesObject))) created.push(o as KubernetesObject);
    }
    await kubectlOk(["apply", "--server-side", "-f", "-"], JSON.stringify(sa));
    await kubectlOk(["apply", "--server-side", "-f", "-"], JSON.stringify(crb));
    const allowed = await allowedFor(sa.metadata?.name ?? "");
    // The identity exists only through the binding the operator makes.
    expect(sorted(await allowedFor("edgeshift-agent"))).toEqual([]);
    const want = expected([
      [["create"], "", "nodes/checkpoint", "*"],
      // patch: its finalizer, so checkpoint images leave the registry before the Migration goes.
      [["get", "list", "watch", "patch"], "edgeshift.dev", "migrations", "*"],
      [["update", "patch"], "edgeshift.dev", "migrations/status", "*"],
    ]);
    expect(sorted(allowed)).toEqual(sorted(want));
    for (const d of [
      "get core/pods",
      "list core/pods in default",
      "get core/secrets",
      "create core/nodes/proxy",
    ]) {
      expect(allowed.has(d), d).toBe(false);
    }
  });
});
