import type { TestProject } from "vitest/node";
import { type Cluster, startCluster } from "./cluster.ts";
import { ensureHelm } from "./helm.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    kubeServer: string;
    kubectl: string;
    /** The helm binary (test/cluster/build-helm.sh). */
    helm: string;
    kubeVersion: string;
    natsUrl: string;
    registry: { host: string; url: string; username: string; password: string };
  }
}

let cluster: Cluster | undefined;

/** One real control plane, NATS and registry shared by every integration test file. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  cluster = await startCluster({
    installCrds: true,
    nats: true,
    registry: true,
    log: (m) => console.log(`[cluster] ${m}`),
  });
  console.log(
    `[cluster] Integration tests run against kube-apiserver ${cluster.versions.kubernetes}, etcd ${cluster.versions.etcd} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  project.provide("kubeconfig", cluster.kubeconfig);
  project.provide("kubeServer", cluster.server);
  project.provide("kubectl", cluster.kubectl);
  project.provide("helm", await ensureHelm());
  project.provide("kubeVersion", cluster.versions.kubernetes);
  project.provide("natsUrl", cluster.natsUrl ?? "");
  if (cluster.registry) project.provide("registry", cluster.registry);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
  cluster = undefined;
}
