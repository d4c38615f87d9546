// `npm run cluster`: a local control plane (etcd, kube-apiserver, controller
// manager, scheduler) with the edgeshift CRDs, NATS and a registry, for a person
// to poke at with kubectl or Lens. Runs until Ctrl-C, then leaves nothing behind.
import { startCluster } from "./cluster.ts";

const cluster = await startCluster({
  installCrds: true,
  nats: true,
  registry: true,
  log: (m) => console.log(m),
});
console.log(`
Kubernetes ${cluster.versions.kubernetes} (etcd ${cluster.versions.etcd}) is running.
  export KUBECONFIG=${cluster.kubeconfig}
  ${cluster.kubectl} get crd,en,mig
NATS:     ${cluster.natsUrl}
Registry: ${cluster.registry?.url} (user ${cluster.registry?.username}, password in ${cluster.dir}/registry.htpasswd as bcrypt only)
Press Ctrl-C to stop.`);

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`\nReceived ${signal}; stopping the cluster`);
  await cluster.stop();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
// Keep the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
