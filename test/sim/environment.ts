// One simulated cluster for a process of its own (the demo, the end-to-end
// benchmark): the local control plane with NATS and the registry, an edge and a
// cloud SimNode running real containers, an EdgeNode over them, the edge agent
// and the operator with its ServiceAccount. `stop()` tears down whatever came
// up, in an order that also works after Ctrl-C took etcd down with the group.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { type EdgeNodeSpec, GROUP, VERSION } from "../../operator/api/v1alpha1.ts";
import { type Cluster, type RegistryInfo, startCluster } from "../cluster/cluster.ts";
import { adminClients, type Clients, createNamespace } from "../support/objects.ts";
import {
  installOperatorRbac,
  OPERATOR_NAMESPACE,
  type RunningOperator,
  serviceAccountKubeconfig,
  startOperator,
} from "../support/operator.ts";
import { type SimAgent, startSimAgent } from "./agent.ts";
import { SimNode } from "./node.ts";
import { ensureSimTools } from "./setup.ts";

export interface SimEnvironmentOptions {
  /** Prefix of node, EdgeNode, repository and operator names, e.g. "demo". */
  name: string;
  namespace: string;
  /** Label key that tells the edge node ("edge") from the cloud node ("cloud"). */
  groupLabel: string;
  /** What decides: thresholds and window; the rest of the EdgeNode is fixed. */
  decision: Pick<EdgeNodeSpec, "thresholds" | "sustainedWindowSeconds" | "breachPercent">;
  log: (m: string) => void;
}

export class SimEnvironment {
  cluster: Cluster | undefined;
  clients: Clients | undefined;
  registry: RegistryInfo | undefined;
  edge: SimNode | undefined;
  cloud: SimNode | undefined;
  agent: SimAgent | undefined;
  operator: RunningOperator | undefined;
  readonly edgeName: string;
  readonly cloudName: string;
  private saKubeconfig: string | undefined;
  private stopped: Promise<string[]> | undefined;
  private readonly o: SimEnvironmentOptions;

  constructor(o: SimEnvironmentOptions) {
    this.o = o;
    this.edgeName = `${o.name}-edge`;
    this.cloudName = `${o.name}-cloud`;
  }

  async start(): Promise<void> {
    const { log, name, namespace: ns, groupLabel: g } = this.o;
    log("Starting the local control plane, NATS and the registry");
    const cluster = await startCluster({
      installCrds: true,
      nats: true,
      registry: true,
      log: (m) => log(`  ${m}`),
    });
    this.cluster = cluster;
    const reg = cluster.registry;
    if (!reg || !cluster.natsUrl) throw new Error("the cluster has no registry or NATS");
    this.registry = reg;
    const c = adminClients(cluster.kubeconfig);
    this.clients = c;
    log(`Kubernetes ${cluster.versions.kubernetes} ready (KUBECONFIG=${cluster.kubeconfig})`);

    log("Preparing runc, CRIU and the workload root filesystem");
    const tools = await ensureSimTools();
    await installOperatorRbac(cluster.kubectl, cluster.kubeconfig);
    await createNamespace(c, ns);
    const registries = {
      [reg.host]: { username: reg.username, password: reg.password, insecure: true },
    };
    const repository = `${reg.host}/edgeshift/${name}`;
    const common = { kubeconfig: cluster.kubeconfig, tools, registries, namespaces: [ns] };
    const edge = await SimNode.start({ ...common, name: this.edgeName, labels: { [g]: "edge" } });
    this.edge = edge;
    this.cloud = await SimNode.start({ ...common, name: this.cloudName, labels: { [g]: "cloud" } });
    log(`Simulated nodes registered: ${this.edgeName} (edge), ${this.cloudName} (cloud)`);

    await c.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: "edgenodes",
      body: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "EdgeNode",
        metadata: { name },
        spec: {
          nodeSelector: { matchLabels: { [g]: "edge" } },
          pods: { namespaces: [ns] },
          samplingIntervalSeconds: 1,
          cooldownSeconds: 0,
          cloud: { nodeSelector: { matchLabels: { [g]: "cloud" } } },
          restorePolicy: "checkpoint",
          fallbackToRestart: false,
          registry: { repository, insecure: true },
          ...this.o.decision,
        },
      },
    });
    this.agent = await startSimAgent({
      kubeconfig: cluster.kubeconfig,
      node: edge,
      edgeNode: name,
      repository,
      registry: reg,
    });
    log("Edge agent started");
    this.saKubeconfig = await serviceAccountKubeconfig(
      cluster.kubeconfig,
      OPERATOR_NAMESPACE,
      "edgeshift-operator",
    );
    this.operator = await startOperator({
      name: `${name}-operator`,
      kubeconfig: this.saKubeconfig,
      natsUrl: cluster.natsUrl,
    });
    log("Operator ready (leader, with its ServiceAccount's RBAC)");
  }

  /** Stops everything that was started; resolves with the problems met, once, however often called. */
  stop(): Promise<string[]> {
    this.stopped ??= (async () => {
      const problems: string[] = [];
      const attempt = async (f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (err) {
          problems.push(err instanceof Error ? err.message : String(err));
        }
      };
      const { operator, agent, cluster, edge, cloud, saKubeconfig } = this;
      if (operator) {
        await attempt(() => operator.kill());
        await attempt(() => operator.cleanup());
      }
      if (agent) await attempt(() => agent.stop());
      // The control plane goes first: after a Ctrl-C in the terminal etcd may already be
      // gone, and with the API server stopped no request of the nodes' pod loops can hang.
      // The nodes' runtimes then remove every container, mount, cgroup and file themselves.
      if (cluster) await attempt(() => cluster.stop());
      for (const n of [edge, cloud]) if (n) await attempt(() => n.close({ deleteNode: false }));
      if (saKubeconfig)
        await attempt(() => rm(dirname(saKubeconfig), { recursive: true, force: true }));
      return problems;
    })();
    return this.stopped;
  }
}
