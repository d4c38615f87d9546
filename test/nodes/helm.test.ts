// The Helm chart installed as a user installs it, on a cluster of real nodes of
// its own (an edge and a cloud node, beside the project's shared cluster):
// the README's commands run through a shell with only KUBECONFIG set, Secrets
// from stdin and a file (never on a command line), an EdgeNode, one real
// checkpoint migration, `helm upgrade` with a changed value, then
// `helm uninstall`, after which nothing of the release is left but what the
// chart documents it keeps (the CRDs and the namespace).
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1Deployment,
  type V1Pod,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { migrationFinished } from "../../operator/api/status.ts";
import {
  type EdgeNode,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { ensureHelm } from "../cluster/helm.ts";
import { type NodeCluster, startNodeCluster } from "../cluster/nodes.ts";
import { waitUntil } from "../cluster/process.ts";
import { busyboxPod } from "./support.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
const NS = "edgeshift-system";
const APPS = "helm-apps";
const EDGE = "helm-edge-1";
const CLOUD = "helm-cloud-1";

// What the README's "Install with Helm" section tells users to run, verbatim.
const README = {
  install: "helm install edgeshift charts/edgeshift -n edgeshift-system --create-namespace",
  signingKey:
    "openssl rand -hex 32 | kubectl -n edgeshift-system create secret generic edgeshift-signing-key --from-file=key=/dev/stdin",
  registrySecret: (ns: string) =>
    `kubectl -n ${ns} create secret generic edgeshift-registry --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=registry-auth.json`,
  rollout: "kubectl -n edgeshift-system rollout status deploy/edgeshift-operator --timeout=180s",
  upgrade:
    "helm upgrade edgeshift charts/edgeshift -n edgeshift-system --reuse-values --set operator.replicas=3 --set operator.resources.requests.cpu=50m",
  crdUpgrade: "kubectl apply --server-side --force-conflicts -f charts/edgeshift/crds/",
  migrations: "kubectl get migrations -A",
  pluginList: "kubectl edgeshift list -A",
  pluginStatus: "kubectl edgeshift status",
  deleteMigrations: "kubectl delete migrations --all -A",
  deleteEdgeNodes: "kubectl delete edgenodes --all",
  uninstall: "helm uninstall edgeshift -n edgeshift-system",
};

let nc: NodeCluster | undefined;
let work = "";
let sh: (command: string, cwd?: string) => Promise<string>;
let core: CoreV1Api;
let custom: CustomObjectsApi;

const log = (m: string) => console.log(`[helm] ${m}`);
const podReady = (p: V1Pod) =>
  p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

beforeAll(async () => {
  const helm = await ensureHelm();
  nc = await startNodeCluster({
    log,
    installCrds: false,
    nodes: [
      { name: EDGE, labels: { "node-role.edgeshift.dev/edge": "" } },
      { name: CLOUD, labels: { "node-role.edgeshift.dev/cloud": "" } },
    ],
  });
  work = await mkdtemp(join(tmpdir(), "edgeshift-helm-user-"));
  const env = {
    // The plugin as the README installs it from a clone: its launcher on PATH.
    PATH: [dirname(helm), dirname(nc.kubectl), join(repoRoot, "plugin"), "/usr/bin", "/bin"].join(
      ":",
    ),
    HOME: work,
    KUBECONFIG: nc.kubeconfig,
  };
  // A user's shell: the command as typed, from a clone's root unless told otherwise.
  sh = (command, cwd = repoRoot) =>
    new Promise((res, rej) => {
      execFile(
        "bash",
        ["-o", "pipefail", "-c", command],
        { cwd, env, maxBuffer: 32 * 1024 * 1024 },
        (err, stdout, stderr) =>
          err ? rej(new Error(`${command}: ${stderr || err.message}`)) : res(stdout),
      );
    });
  const kc = new KubeConfig();
  kc.loadFromFile(nc.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
}, 600_000);

afterAll(async () => {
  await nc?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function systemPods(): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: NS })).items;
}

/** Every pod in edgeshift-system Ready, none terminating, and as many as expected. */
function allReady(count: number) {
  return waitUntil(
    `${count} edgeshift pods Ready`,
    async () => {
      const pods = await systemPods();
      const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
      return pods.length === count && live.every(podReady) ? live : undefined;
    },
    { timeoutMs: 240_000, intervalMs: 1000 },
  );
}

/** Names of objects of every listable resource with the label selector (namespaced or not). */
async function labelled(selector: string, namespaced: boolean): Promise<string[]> {
  const kinds = (await sh(`kubectl api-resources --verbs=list --namespaced=${namespaced} -o name`))
    .trim()
    .split("\n")
    // Events carry no labels of ours and churn; metrics are not objects.
    .filter((r) => r && !r.startsWith("events") && !r.includes("metrics.k8s.io"));
  const out = await sh(
    `kubectl get ${kinds.join(",")} ${namespaced ? "-A" : ""} -l ${selector} -o name`,
  );
  return out.trim().split("\n").filter(Boolean).sort();
}

describe("Helm chart on real nodes", () => {
  it("installs, migrates a pod, upgrades and uninstalls as the README says", async () => {
    const cluster = nc as NodeCluster;
    const reg = cluster.control.registry;
    if (!reg) throw new Error("the cluster has no checkpoint registry");

    log(`$ ${README.install}`);
    const installed = await sh(README.install);
    expect(installed).toMatch(/STATUS: deployed/);
    expect(installed).toMatch(/NOTES:/);
    expect(installed).toContain(README.signingKey);
    expect(installed).toContain(README.registrySecret(NS));
    expect(installed).toContain(README.crdUpgrade);
    const ns = await core.readNamespace({ name: NS });
    expect(ns.metadata?.labels).toMatchObject({
      "pod-security.kubernetes.io/enforce": "privileged",
      "pod-security.kubernetes.io/warn": "restricted",
      "pod-security.kubernetes.io/audit": "restricted",
    });
    const crds = await sh("kubectl get crd -o name");
    expect(crds).toContain("customresourcedefinition.apiextensions.k8s.io/edgenodes.edgeshift.dev");
    expect(crds).toContain(
      "customresourcedefinition.apiextensions.k8s.io/migrations.edgeshift.dev",
    );

    // The Secrets, as NOTES say: the key from stdin, the registry login from a
    // Docker config file that only this user can read.
    await sh(README.signingKey);
    const auth = Buffer.from(`${reg.username}:${reg.password}`).toString("base64");
    const authFile = join(work, "registry-auth.json");
    await writeFile(
      authFile,
      JSON.stringify({
        auths: { [reg.host]: { username: reg.username, password: reg.password, auth } },
      }),
      { mode: 0o600 },
    );
    await chmod(authFile, 0o600);
    await sh(`kubectl create namespace ${APPS}`);
    for (const n of [NS, APPS]) await sh(README.registrySecret(n), work);

    log("Waiting for every edgeshift pod Ready");
    await sh(README.rollout);
    const pods = await allReady(3);
    expect(pods.map((p) => p.metadata?.labels?.["app.kubernetes.io/name"]).sort()).toEqual([
      "edgeshift-nats",
      "edgeshift-operator",
      "edgeshift-operator",
    ]);
    // Helm's record of what it made: the release's labels and annotations.
    const dep = JSON.parse(
      await sh("kubectl -n edgeshift-system get deploy edgeshift-operator -o json"),
    ) as V1Deployment;
    expect(dep.metadata?.labels?.["app.kubernetes.io/managed-by"]).toBe("Helm");
    expect(dep.metadata?.annotations?.["meta.helm.sh/release-name"]).toBe("edgeshift");

    // The example EdgeNode, adjusted as test/cluster/bundle.ts adjusts it.
    const example = parse(
      await readFile(join(repoRoot, "manifests/examples/edgenode.yaml"), "utf8"),
    ) as EdgeNode;
    const en: EdgeNode = {
      ...example,
      spec: {
        ...example.spec,
        nodeSelector: { matchLabels: example.spec.nodeSelector.matchLabels },
        registry: {
          ...example.spec.registry,
          repository: `${reg.host}/edgeshift/checkpoints`,
          insecure: true,
          secretRef: { name: "edgeshift-registry", namespace: NS },
        },
      },
    };
    const edgeNode = en.metadata.name ?? "";
    await writeFile(join(work, "edgenode.yaml"), stringify(en));
    await sh("kubectl apply --server-side -f edgenode.yaml", work);
    await sh(`kubectl wait --for=condition=Ready edgenode/${edgeNode} --timeout=180s`);
    await sh(
      `kubectl -n edgeshift-system rollout status daemonset/edgeshift-agent-${edgeNode} --timeout=180s`,
    );

    // One real migration: a busybox counter, checkpointed on the edge node,
    // restored on the cloud node.
    await writeFile(
      join(work, "pod.yaml"),
      stringify(
        busyboxPod(
          APPS,
          "counter",
          EDGE,
          'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.5; done',
        ),
      ),
    );
    await sh("kubectl apply --server-side -f pod.yaml", work);
    await waitUntil(
      "the counter to run",
      async () => {
        const p = await core.readNamespacedPod({ namespace: APPS, name: "counter" });
        return podReady(p) ? p : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: APPS,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "Migration",
        metadata: { name: "counter-helm" },
        spec: { podName: "counter", targetNode: CLOUD },
      },
    });
    const m = await waitUntil(
      "the Migration to finish",
      async () => {
        const x = (await custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          namespace: APPS,
          name: "counter-helm",
        })) as Migration;
        return migrationFinished(x) ? x : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 500 },
    );
    expect(m.status?.phase, JSON.stringify(m.status)).toBe("Succeeded");
    expect(m.status?.policy).toBe("checkpoint");
    expect(m.status?.sourceNode).toBe(EDGE);
    expect(m.status?.targetNode).toBe(CLOUD);
    const restored = await waitUntil(
      "the restored pod Ready on the cloud node",
      async () => {
        const p = await core.readNamespacedPod({
          namespace: APPS,
          name: m.status?.restoredPod ?? "",
        });
        return podReady(p) ? p : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    expect(restored.spec?.nodeName).toBe(CLOUD);
    log(`Migration Succeeded: ${m.status?.restoredPod} runs on ${CLOUD}`);
    // What NOTES say to watch it with.
    expect(await sh(README.migrations)).toMatch(/counter-helm\s+.*Succeeded/);
    expect(await sh(README.pluginList)).toMatch(/counter-helm\s+counter\s+ToCloud\s+Succeeded/);
    expect(await sh(README.pluginStatus)).toContain(edgeNode);

    // An upgrade with changed values rolls the operator and keeps it Ready.
    log(`$ ${README.upgrade}`);
    expect(await sh(README.upgrade)).toMatch(/STATUS: deployed[\s\S]*REVISION: 2/);
    await sh(README.rollout);
    const upgraded = JSON.parse(
      await sh("kubectl -n edgeshift-system get deploy edgeshift-operator -o json"),
    ) as V1Deployment;
    expect(upgraded.spec?.replicas).toBe(3);
    expect(upgraded.spec?.template.spec?.containers[0]?.resources?.requests?.cpu).toBe("50m");
    expect(upgraded.status?.updatedReplicas).toBe(3);
    // Three operators, NATS and the EdgeNode's agent on the edge node.
    const after = await allReady(5);
    const operators = after.filter(
      (p) => p.metadata?.labels?.["app.kubernetes.io/name"] === "edgeshift-operator",
    );
    expect(operators).toHaveLength(3);
    expect(
      after.filter((p) => p.metadata?.labels?.["app.kubernetes.io/name"] === "edgeshift-agent"),
    ).toHaveLength(1);
    for (const p of operators) expect(p.spec?.containers[0]?.resources?.requests?.cpu).toBe("50m");
    // --reuse-values kept the first install's values: the same Secret names, NATS.
    const values = parse(await sh("helm get values edgeshift -n edgeshift-system -o yaml")) as {
      operator: { replicas: number };
    };
    expect(values.operator.replicas).toBe(3);
    // The upgraded operator still runs the EdgeNode.
    await sh(`kubectl wait --for=condition=Ready edgenode/${edgeNode} --timeout=120s`);
    // CRDs are upgraded with kubectl, as NOTES say, over what Helm's install
    // wrote: here an older chart's CRD, written as Helm writes it (field manager
    // "helm"), whose fields a plain server-side apply would conflict on.
    const crdFile = join(repoRoot, "charts/edgeshift/crds/edgenodes.edgeshift.dev.yaml");
    const current = await readFile(crdFile, "utf8");
    const older = current.replace(/description: >-?\n(\s+)/, "description: >-\n$1Older chart. ");
    expect(older).not.toBe(current);
    await writeFile(join(work, "older-crd.yaml"), older);
    await sh(
      "kubectl apply --server-side --field-manager=helm --force-conflicts -f older-crd.yaml",
      work,
    );
    const description = async () =>
      sh(
        "kubectl get crd edgenodes.edgeshift.dev -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema.description}'",
      );
    expect(await description()).toMatch(/^Older chart\. /);
    expect(await sh(README.crdUpgrade)).toMatch(/edgenodes\.edgeshift\.dev serverside-applied/);
    expect(await description()).not.toMatch(/Older chart/);

    // Uninstall as NOTES say: Migrations first (the agent deletes their
    // images), EdgeNodes (their agents go with them), then the release.
    await sh(README.deleteMigrations);
    await sh(`kubectl -n ${APPS} delete pod --all --wait=true --timeout=120s`);
    await sh(README.deleteEdgeNodes);
    await waitUntil(
      "the agent DaemonSet to be gone",
      async () =>
        (await sh("kubectl -n edgeshift-system get daemonset -o name")).trim() === ""
          ? true
          : undefined,
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    log(`$ ${README.uninstall}`);
    expect(await sh(README.uninstall)).toMatch(/release "edgeshift" uninstalled/);
    await waitUntil(
      "every edgeshift pod to be gone",
      async () => ((await systemPods()).length === 0 ? true : undefined),
      { timeoutMs: 180_000, intervalMs: 1000 },
    );

    expect((await sh("helm list -A -q")).trim()).toBe("");
    // No namespaced object of the release, nor any carrying edgeshift's label.
    expect(await labelled("app.kubernetes.io/managed-by=Helm", true)).toEqual([]);
    expect(await labelled("owner=helm", true)).toEqual([]);
    expect(await labelled("app.kubernetes.io/part-of=edgeshift", true)).toEqual([]);
    // Cluster-wide: only the namespace, which the chart keeps on purpose.
    expect(await labelled("app.kubernetes.io/managed-by=Helm", false)).toEqual([`namespace/${NS}`]);
    const clusterWide = await sh(
      "kubectl get clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings,validatingwebhookconfigurations,mutatingwebhookconfigurations -o name",
    );
    expect(clusterWide.split("\n").filter((n) => n.includes("edgeshift"))).toEqual([]);
    // Kept by the chart's documented policy: the CRDs (and with them any
    // EdgeNodes and Migrations, none here) and the namespace with the
    // Secrets the user made.
    expect(await sh("kubectl get crd -o name")).toContain("edgenodes.edgeshift.dev");
    expect(await sh("kubectl get crd -o name")).toContain("migrations.edgeshift.dev");
    const kept = await core.readNamespace({ name: NS });
    expect(kept.metadata?.annotations?.["helm.sh/resource-policy"]).toBe("keep");
    const secrets = (await core.listNamespacedSecret({ namespace: NS })).items
      .map((s) => s.metadata?.name)
      .sort();
    expect(secrets).toEqual(["edgeshift-registry", "edgeshift-signing-key"]);
    const left = (await sh("kubectl -n edgeshift-system get all,cm,sa,lease -o name"))
      .trim()
      .split("\n")
      .filter(Boolean)
      .sort();
    // Besides them only what Kubernetes puts in every namespace, and the Lease
    // the operator elected its leader with (the operator's, not the chart's).
    expect(left).toEqual([
      "configmap/kube-root-ca.crt",
      "lease.coordination.k8s.io/edgeshift-operator",
      "serviceaccount/default",
    ]);
    // A second install finds nothing in its way (Helm's server-side check of
    // what it would create).
    expect(
      await sh("helm install edgeshift charts/edgeshift -n edgeshift-system --dry-run=server"),
    ).toMatch(/Dry run complete/);
  }, 1_200_000);
});
