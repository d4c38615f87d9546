import type { TestProject } from "vitest/node";
import { installBundle } from "../cluster/bundle.ts";
import {
  type NodeAddress,
  type NodeCluster,
  type RealNodeSpec,
  startNodeCluster,
} from "../cluster/nodes.ts";

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

/** Where the runtime tests' nodes get in nobody's way (see runtimes.test.ts). */
export const RUNTIME_TEST_TAINT = "edgeshift.dev/runtime-test";

// edge-1 and cloud-1 first (10.99.0.1, .2): the tests pin their pods to edge-1
// and expect cloud-1 as the target. edge-old runs containerd 1.7, which cannot
// checkpoint; cloud-norestore runs containerd 2.3.7 without restore via
// CreateContainer, so it carries no checkpoint-restore annotation and target
// choice never picks it for a checkpoint. Its taint keeps restart-policy
// migrations and the bundle's pods off it.
const NODES: RealNodeSpec[] = [
  { name: "edge-1", labels: { "node-role.edgeshift.dev/edge": "" } },
  { name: "cloud-1", labels: { "node-role.edgeshift.dev/cloud": "" } },
  { name: "edge-old", labels: { "node-role.edgeshift.dev/edge": "" }, containerd: "1.7" },
  {
    name: "cloud-norestore",
    labels: { "node-role.edgeshift.dev/cloud": "" },
    restoreViaCreate: false,
    taints: [`${RUNTIME_TEST_TAINT}=norestore:NoSchedule`],
  },
];

/** One cluster of real nodes with the install bundle applied, as users install it. */
export async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  const log = (m: string) => console.log(`[nodes] ${m}`);
  nc = await startNodeCluster({ log, nodes: NODES });
  log(`Cluster of real nodes ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const appNamespace = "workloads";
  const bundle = await installBundle(nc, {
    appNamespaces: [appNamespace],
    // The example EdgeNode, but a migration from a node (even a hand-written one)
    // does not hold back the decision engine's next one from that node: the
    // tests run one after another on the same edge node.
    edgeNode: { name: "edge", spec: { cooldownSeconds: 0 } },
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
