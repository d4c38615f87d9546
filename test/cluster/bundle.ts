// The install bundle on the real-node cluster, as the README's install steps
// tell users: `kubectl apply --server-side -k manifests`, the signing-key and
// registry Secrets, node labels (the harness sets them), the example EdgeNode
// pointed at the cluster's registry. Nothing in manifests/ is changed.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { parse, stringify } from "yaml";
import type { EdgeNode, EdgeNodeSpec } from "../../operator/api/v1alpha1.ts";
import type { NodeCluster } from "./nodes.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
export const SYSTEM_NAMESPACE = "edgeshift-system";
export const REGISTRY_SECRET = "edgeshift-registry";

export interface BundleOptions {
  /** Namespaces whose pods may be restored: each gets the registry Secret. */
  appNamespaces?: string[];
  /** The EdgeNode's name and the spec fields that differ from manifests/examples/edgenode.yaml. */
  edgeNode?: { name?: string; spec?: Partial<EdgeNodeSpec> };
  log?: (m: string) => void;
}

export interface Bundle {
  edgeNode: string;
  repository: string;
  kubectlRun(args: string[], input?: string): Promise<string>;
}

/** kubectl with the cluster's kubeconfig; rejects with kubectl's own stderr. */
export function kubectlRunner(c: { kubectl: string; kubeconfig: string }) {
  return (args: string[], input?: string) =>
    new Promise<string>((res, rej) => {
      const child = execFile(
        c.kubectl,
        ["--kubeconfig", c.kubeconfig, ...args],
        { maxBuffer: 32 * 1024 * 1024 },
        (err, stdout, stderr) =>
          err ? rej(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`)) : res(stdout),
      );
      if (input !== undefined) child.stdin?.end(input);
    });
}

/** A kubernetes.io/dockerconfigjson for the cluster's checkpoint registry. */
function dockerConfig(host: string, username: string, password: string): string {
  const auth = Buffer.from(`${username}:${password}`).toString("base64");
  return JSON.stringify({ auths: { [host]: { username, password, auth } } });
}

export async function installBundle(nc: NodeCluster, opts: BundleOptions = {}): Promise<Bundle> {
  const log = opts.log ?? (() => {});
  const kubectl = kubectlRunner(nc);
  const reg = nc.control.registry;
  if (!reg) throw new Error("the cluster has no checkpoint registry");

  log("Applying the install bundle: kubectl apply --server-side -k manifests");
  await kubectl(["apply", "--server-side", "-k", join(repoRoot, "manifests")]);

  // Secrets through the API rather than `kubectl create secret --from-literal`,
  // so no key or password is ever on a command line.
  const kc = new KubeConfig();
  kc.loadFromFile(nc.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedSecret({
    namespace: SYSTEM_NAMESPACE,
    body: {
      metadata: { name: "edgeshift-signing-key" },
      stringData: { key: randomBytes(32).toString("hex") },
    },
  });
  for (const ns of [SYSTEM_NAMESPACE, ...(opts.appNamespaces ?? [])]) {
    if (ns !== SYSTEM_NAMESPACE) {
      await core
        .createNamespace({ body: { metadata: { name: ns } } })
        .catch((e: { code?: number }) => {
          if (e.code !== 409) throw e;
        });
    }
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: REGISTRY_SECRET },
        type: "kubernetes.io/dockerconfigjson",
        stringData: { ".dockerconfigjson": dockerConfig(reg.host, reg.username, reg.password) },
      },
    });
  }

  const example = parse(
    await readFile(join(repoRoot, "manifests/examples/edgenode.yaml"), "utf8"),
  ) as EdgeNode;
  const repository = `${reg.host}/edgeshift/checkpoints`;
  const name = opts.edgeNode?.name ?? example.metadata.name ?? "edge";
  const en: EdgeNode = {
    ...example,
    metadata: { name },
    spec: {
      ...example.spec,
      // The example also asks for zone labels these nodes do not have.
      nodeSelector: { matchLabels: example.spec.nodeSelector.matchLabels },
      registry: {
        ...example.spec.registry,
        repository,
        // The cluster's registry speaks plain HTTP on the cluster network.
        insecure: true,
        secretRef: { name: REGISTRY_SECRET, namespace: SYSTEM_NAMESPACE },
      },
      ...opts.edgeNode?.spec,
    },
  };
  await kubectl(["apply", "--server-side", "-f", "-"], stringify(en));

  log("Waiting for NATS, the operator and the edge agent");
  await kubectl([
    "-n",
    SYSTEM_NAMESPACE,
    "rollout",
    "status",
    "deploy/edgeshift-nats",
    "--timeout=180s",
  ]);
  await kubectl([
    "-n",
    SYSTEM_NAMESPACE,
    "rollout",
    "status",
    "deploy/edgeshift-operator",
    "--timeout=180s",
  ]);
  await kubectl(["wait", "--for=condition=Ready", `edgenode/${name}`, "--timeout=120s"]);
  await kubectl([
    "-n",
    SYSTEM_NAMESPACE,
    "rollout",
    "status",
    `daemonset/edgeshift-agent-${name}`,
    "--timeout=180s",
  ]);
  log(`Bundle installed; EdgeNode ${name} is Ready and its agent runs`);
  return { edgeNode: name, repository, kubectlRun: kubectl };
}
