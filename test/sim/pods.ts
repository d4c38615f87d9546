// Pods of the project's test workloads, as a simulated node runs them.
import type { V1Pod } from "@kubernetes/client-node";
import type { Clients } from "../support/objects.ts";
import type { SimNode } from "./node.ts";
import { type CounterProgress, readCounterProgress } from "./workloads.ts";

/** The base image every simulated node maps to the project's workload root filesystem. */
export const WORKLOAD_IMAGE = "edgeshift.local/workload:1";

/** A counter pod bound to `node`, publishing its progress into an emptyDir at /progress. */
export function counterPod(
  name: string,
  node: string,
  o: {
    labels?: Record<string, string>;
    memoryMb?: number;
    target?: number;
    cpuLimit?: string;
    image?: string;
  } = {},
): V1Pod {
  return {
    metadata: { name, labels: o.labels },
    spec: {
      nodeName: node,
      automountServiceAccountToken: false,
      restartPolicy: "Never",
      containers: [
        {
          name: "app",
          image: o.image ?? WORKLOAD_IMAGE,
          command: ["/usr/local/bin/node", "/app/counter.mjs"],
          env: [
            { name: "MEMORY_MB", value: String(o.memoryMb ?? 0) },
            { name: "TARGET", value: String(o.target ?? 0) },
            { name: "PROGRESS_INTERVAL_MS", value: "50" },
            { name: "PROGRESS_FILE", value: "/progress/value" },
          ],
          volumeMounts: [{ name: "progress", mountPath: "/progress" }],
          resources: o.cpuLimit ? { limits: { cpu: o.cpuLimit, memory: "512Mi" } } : undefined,
        },
      ],
      volumes: [{ name: "progress", emptyDir: {} }],
    },
  };
}

/** The counter's last publication in a pod on `node` (undefined before the first). */
export async function podProgress(
  c: Clients,
  node: SimNode,
  namespace: string,
  pod: string,
): Promise<CounterProgress | undefined> {
  const p = await c.core.readNamespacedPod({ namespace, name: pod });
  return readCounterProgress(node.volumeDir(p.metadata?.uid ?? "", "progress"));
}
