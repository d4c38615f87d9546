// `npm run cluster`: a local cluster of real nodes (control plane, an edge and a
// cloud node each with a real kubelet + containerd, CoreDNS, kube-proxy, the
// image and checkpoint registries) for a person to poke at with kubectl or Lens.
//   npm run cluster                 the cluster
//   npm run cluster -- --bundle     the cluster with edgeshift installed from manifests/
//   npm run cluster -- --no-nodes   only the control plane with the CRDs, NATS and a registry
// Runs until Ctrl-C, then leaves nothing behind.
import { parseArgs } from "node:util";
import { installBundle } from "./bundle.ts";
import { type Cluster, startCluster } from "./cluster.ts";
import { type NodeCluster, startNodeCluster } from "./nodes.ts";

const { values } = parseArgs({
  options: { bundle: { type: "boolean" }, "no-nodes": { type: "boolean" } },
});
const log = (m: string) => console.log(m);
let stopper: { stop(): Promise<void> };

if (values["no-nodes"]) {
  const cluster: Cluster = await startCluster({
    installCrds: true,
    nats: true,
    registry: true,
    log,
  });
  stopper = cluster;
  console.log(`
Kubernetes ${cluster.versions.kubernetes} (etcd ${cluster.versions.etcd}) is running (no nodes).
  export KUBECONFIG=${cluster.kubeconfig}
  ${cluster.kubectl} get crd,en,mig
NATS:     ${cluster.natsUrl}
Registry: ${cluster.registry?.url} (user ${cluster.registry?.username}, password in ${cluster.dir}/registry.htpasswd as bcrypt only)
Press Ctrl-C to stop.`);
} else {
  const nc: NodeCluster = await startNodeCluster({ log });
  stopper = nc;
  if (values.bundle) await installBundle(nc, { log });
  const nodes = nc.nodes.map((n) => `${n.name} (${n.ip})`).join(", ");
  console.log(`
Kubernetes ${nc.versions.kubernetes} with real nodes ${nodes}, containerd ${nc.versions.containerd}.
  export KUBECONFIG=${nc.kubeconfig}
  ${nc.kubectl} get nodes -o wide
Images: ${nc.imageRegistry} mirrors docker.io, ghcr.io and registry.k8s.io for the nodes.
Checkpoint registry: ${nc.control.registry?.host} (user ${nc.control.registry?.username}; from the host: ${nc.control.registry?.hostUrl}).
Press Ctrl-C to stop.`);
}

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`\nReceived ${signal}; stopping the cluster`);
  await stopper.stop();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
// Keep the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
