import type { TestProject } from "vitest/node";
import { installBundle } from "../cluster/bundle.ts";
import { type NodeAddress, type NodeCluster, startNodeCluster } from "../cluster/nodes.ts";

export type ProvidedNode = NodeAddress;

declare module "vitest" {
  export interface ProvidedContext {
    nodeCluster: {
      kubeconfig: string;
      kubectl: string;
      nodes: ProvidedNode[];
      edgeNode: string;
      appNamespace: string;
      versions: { kubernetes: string; etcd: string; containerd: string };
      registry: {
        host: string;
        hostUrl: string;
        username: string;
        password: string;
        storage: string;
      };
    };
  }
}

let nc: NodeCluster | undefined;

/** One cluster of real nodes with the install bundle applied, as users install it. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  const log = (m: string) => console.log(`[nodes] ${m}`);
  nc = await startNodeCluster({ log });
  log(`Cluster of real nodes ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const appNamespace = "workloads";
  const bundle = await installBundle(nc, {
    appNamespaces: [appNamespace],
    edgeNode: { name: "edge" },
    log,
  });
  log(`Bundle installed ${((Date.now() - started) / 1000).toFixed(1)} s after the start`);
  const reg = nc.control.registry;
  if (!reg) throw new Error("no checkpoint registry");
  project.provide("nodeCluster", {
    kubeconfig: nc.kubeconfig,
    kubectl: nc.kubectl,
    nodes: nc.nodes.map((n) => n.address),
    edgeNode: bundle.edgeNode,
    appNamespace,
    versions: nc.versions,
    registry: {
      host: reg.host,
      hostUrl: reg.hostUrl,
      username: reg.username,
      password: reg.password,
      storage: reg.storage,
    },
  });
}

export async function teardown(): Promise<void> {
  await nc?.stop();
  nc = undefined;
}
