import type { CoordinationV1Api, V1Pod } from "@kubernetes/client-node";
import { CoordinationV1Api as Coordination, V1MicroTime } from "@kubernetes/client-node";
import { mergePatch } from "../../operator/kube/patch.ts";
import { type Clients, setNodeStatus, setPodRunning } from "./objects.ts";

/**
 * A STAND-IN for the kubelets of nodes that have none here (no machine of
 * this kind runs a kubelet with CRI-O): it only plays the pod lifecycle the
 * API server sees. Pods bound to its nodes become Running and Ready; pods
 * marked for deletion are removed, as a kubelet does once their containers
 * stop; node leases and Ready status are renewed so the node lifecycle
 * controller does not taint the nodes. No container runs.
 */
export class PodLifecycleStandIn {
  private readonly c: Clients;
  private readonly nodes: string[];
  private readonly runtimes: Record<string, string>;
  private readonly coordination: CoordinationV1Api;
  /** Pods (by name) it leaves Pending, to model a pod that never starts. */
  readonly hold = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(c: Clients, runtimes: Record<string, string>) {
    this.c = c;
    this.runtimes = runtimes;
    this.nodes = Object.keys(runtimes);
    this.coordination = c.kc.makeApiClient(Coordination);
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 200);
    this.beat = setInterval(() => void this.heartbeat(), 10_000);
    void this.heartbeat();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.beat) clearInterval(this.beat);
  }

  private async heartbeat(): Promise<void> {
    for (const node of this.nodes) {
      await setNodeStatus(this.c, node, this.runtimes[node] ?? "cri-o://1.30.4").catch(() => {});
      const body = {
        metadata: { name: node, namespace: "kube-node-lease" },
        spec: { holderIdentity: node, leaseDurationSeconds: 40, renewTime: new V1MicroTime() },
      };
      await this.coordination
        .replaceNamespacedLease({ name: node, namespace: "kube-node-lease", body })
        .catch(() =>
          this.coordination.createNamespacedLease({ namespace: "kube-node-lease", body }),
        )
        .catch(() => {});
    }
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const node of this.nodes) {
        const pods = await this.c.core.listPodForAllNamespaces({
          fieldSelector: `spec.nodeName=${node}`,
        });
        for (const p of pods.items) await this.step(p);
      }
    } catch {
      // The next tick tries again.
    } finally {
      this.busy = false;
    }
  }

  private async step(p: V1Pod): Promise<void> {
    const ns = p.metadata?.namespace ?? "";
    const name = p.metadata?.name ?? "";
    if (p.metadata?.deletionTimestamp) {
      await this.c.core
        .deleteNamespacedPod({ namespace: ns, name, gracePeriodSeconds: 0 })
        .catch(() => {});
      return;
    }
    if (this.hold.has(name)) return;
    if (p.status?.phase === "Pending" || !p.status?.phase) await setPodRunning(this.c, ns, name);
  }

  /** Ends a pod's containers with exit code 0, as when a Job's work is done. */
  async succeed(namespace: string, name: string): Promise<void> {
    const pod = await this.c.core.readNamespacedPod({ namespace, name });
    const now = new Date().toISOString();
    await this.c.core.patchNamespacedPodStatus(
      {
        namespace,
        name,
        body: {
          status: {
            phase: "Succeeded",
            conditions: [
              { type: "Ready", status: "False", reason: "PodCompleted", lastTransitionTime: now },
            ],
            containerStatuses: (pod.spec?.containers ?? []).map((ct) => ({
              name: ct.name,
              image: ct.image ?? "",
              imageID: "",
              ready: false,
              restartCount: 0,
              state: {
                terminated: { exitCode: 0, reason: "Completed", startedAt: now, finishedAt: now },
              },
            })),
          },
        },
      },
      mergePatch,
    );
  }
}
