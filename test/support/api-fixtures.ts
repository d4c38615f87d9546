// Typed edgeshift objects for tests. The "full" ones set every field the schema
// has (test/unit/crds.test.ts checks that), so the API server accepting them
// with fieldValidation=Strict proves the TS types and the CRDs agree.
import {
  API_VERSION,
  EDGENODE_KIND,
  type EdgeNode,
  type EdgeNodeStatus,
  MIGRATION_KIND,
  type Migration,
  type MigrationStatus,
} from "../../operator/api/v1alpha1.ts";

/** An EdgeNode with only the required fields (and the registry checkpoint needs). */
export function minimalEdgeNode(name: string): EdgeNode {
  return {
    apiVersion: API_VERSION,
    kind: EDGENODE_KIND,
    metadata: { name },
    spec: {
      nodeSelector: { matchLabels: { "node-role.edgeshift.dev/edge": "" } },
      thresholds: { cpu: { triggerPercent: 80 } },
      cloud: { nodeSelector: { matchLabels: { "node-role.edgeshift.dev/cloud": "" } } },
      registry: { repository: "registry.example.com:5000/edgeshift/checkpoints" },
    },
  };
}

/** An EdgeNode with every spec field set, none to its default. */
export function fullEdgeNode(name: string): EdgeNode {
  return {
    apiVersion: API_VERSION,
    kind: EDGENODE_KIND,
    metadata: { name, labels: { "app.kubernetes.io/part-of": "edgeshift-tests" } },
    spec: {
      nodeSelector: {
        matchLabels: { "node-role.edgeshift.dev/edge": "" },
        matchExpressions: [
          { key: "topology.kubernetes.io/zone", operator: "In", values: ["plant-a", "plant-b"] },
          { key: "edgeshift.dev/maintenance", operator: "DoesNotExist" },
        ],
      },
      pods: {
        selector: {
          matchLabels: { "app.kubernetes.io/part-of": "sensors" },
          matchExpressions: [
            { key: "app.kubernetes.io/component", operator: "NotIn", values: ["database"] },
            { key: "app.kubernetes.io/name", operator: "Exists" },
          ],
        },
        namespaces: ["factory", "sensors"],
        excludeNamespaces: ["kube-system"],
      },
      thresholds: {
        cpu: { triggerPercent: 85, rearmPercent: 60 },
        memory: { triggerPercent: 90, rearmPercent: 75 },
        node: { cpuPercent: 95, memoryPercent: 92 },
        application: {
          port: 8080,
          path: "/internal/metrics",
          metric: "http_requests_total",
          matchers: [{ label: "code", operator: "!=", value: "500" }],
          type: "Counter",
          per: "Minute",
          triggerValue: 100,
          rearmValue: 60,
        },
      },
      samplingIntervalSeconds: 2,
      sustainedWindowSeconds: 20,
      breachPercent: 70,
      cooldownSeconds: 600,
      maxConcurrentMigrations: 3,
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
      handoff: "Fork",
      freezeTimeoutSeconds: 300,
      cloud: {
        nodeSelector: {
          matchLabels: { "node-role.edgeshift.dev/cloud": "" },
          matchExpressions: [
            { key: "kubernetes.io/arch", operator: "In", values: ["amd64", "arm64"] },
          ],
        },
      },
      returnToEdge: {
        cpuPercent: 20,
        memoryPercent: 40,
        applicationValue: 10,
        windowSeconds: 120,
        cooldownSeconds: 900,
      },
      registry: {
        repository: "registry.example.com:5000/edgeshift/checkpoints",
        secretRef: { name: "edgeshift-registry", namespace: "edgeshift-system" },
        insecure: true,
        imageRetention: "Retain",
      },
      kubeletTLS: {
        mode: "CABundle",
        caBundle: { configMapName: "kubelet-serving-ca", key: "ca.crt" },
      },
    },
  };
}

/** An EdgeNode status with every field set: 3 matched nodes, 2 of which can checkpoint. */
export function fullEdgeNodeStatus(generation = 1): EdgeNodeStatus {
  return {
    observedGeneration: generation,
    conditions: [
      {
        type: "Ready",
        status: "True",
        reason: "Reconciled",
        message: "Monitoring 5 pods on 3 nodes",
        observedGeneration: generation,
        lastTransitionTime: "2026-01-02T03:04:05Z",
      },
      {
        type: "CheckpointSupported",
        status: "False",
        reason: "SomeNodesUnsupported",
        message: "edge-3 runs containerd 1.7.27, which cannot checkpoint",
        observedGeneration: generation,
        lastTransitionTime: "2026-01-02T03:04:05Z",
      },
    ],
    matchedNodes: 3,
    monitoredPods: 5,
    cloudMonitoredPods: 2,
    staleMonitors: 1,
    applicationMetric: { reading: 3, scrapeFailed: 1, absent: 1, pending: 0 },
    activeMigrations: 1,
    checkpointCapableNodes: 2,
    runtimeSupport: "2/3 nodes",
    nodes: [
      {
        name: "edge-1",
        containerRuntime: "cri-o://1.33.2",
        checkpoint: true,
        restore: true,
        restoreTargets: 1,
        message: "",
      },
      {
        name: "edge-2",
        containerRuntime: "containerd://2.1.4",
        checkpoint: true,
        restore: true,
        message: "",
      },
      {
        name: "edge-3",
        containerRuntime: "containerd://1.7.27",
        checkpoint: false,
        restore: false,
        message: "containerd < 2.0 cannot checkpoint containers",
      },
    ],
    cloudNodes: [
      {
        name: "cloud-1",
        containerRuntime: "cri-o://1.33.2",
        checkpoint: true,
        restore: true,
        message: "CRI-O checkpoints; CRI-O restores from a checkpoint image",
      },
    ],
  };
}

export function minimalMigration(name: string, namespace: string): Migration {
  return {
    apiVersion: API_VERSION,
    kind: MIGRATION_KIND,
    metadata: { name, namespace },
    spec: { podName: "sensor-ingest-0" },
  };
}

/** A Migration with every spec field set, as the decision engine writes one. */
export function fullMigration(name: string, namespace: string): Migration {
  return {
    apiVersion: API_VERSION,
    kind: MIGRATION_KIND,
    metadata: { name, namespace, labels: { "app.kubernetes.io/part-of": "edgeshift-tests" } },
    spec: {
      podName: "sensor-ingest-0",
      direction: "ToCloud",
      containers: ["ingest", "buffer"],
      targetNode: "cloud-1",
      restorePolicy: "checkpoint",
      fallbackToRestart: false,
      handoff: "Freeze",
      reason: {
        type: "ThresholdExceeded",
        metric: "application",
        value: 140.5,
        threshold: 100,
        series: 'http_requests_total{code!="500"} rate per minute',
        windowSeconds: 10,
        sampledAt: "2026-01-02T03:04:05.123Z",
      },
    },
  };
}

/**
 * A finished, successful Migration status with every field set; failureReason
 * too, only to cover the field (a Succeeded migration has none).
 */
export function fullMigrationStatus(generation = 1): MigrationStatus {
  const condition = (type: string, reason: string, message: string) => ({
    type,
    status: "True" as const,
    reason,
    message,
    observedGeneration: generation,
    lastTransitionTime: "2026-01-02T03:04:09Z",
  });
  return {
    observedGeneration: generation,
    phase: "Succeeded",
    conditions: [
      condition("Checkpointed", "CheckpointCreated", "Checkpointed 2 containers"),
      condition("ImagePushed", "ImagePushed", "Pushed 2 checkpoint images"),
      condition("Restored", "PodReady", "sensor-ingest-0-x7k2p is Ready on cloud-1"),
      condition("Succeeded", "CutOver", "Removed the original pod"),
    ],
    edgeNode: "factory-floor",
    agentIdentity: "system:serviceaccount:edgeshift-system:edgeshift-agent-factory-floor",
    policy: "checkpoint",
    handoff: "Freeze",
    sourceNode: "edge-1",
    sourcePodUID: "5f0c2f6e-9a57-4d3c-9a1f-2b6d0d7f3a10",
    targetNode: "cloud-1",
    containers: [
      {
        name: "ingest",
        containerID: `containerd://${"1".repeat(64)}`,
        archivePath:
          "/var/lib/kubelet/checkpoints/checkpoint-sensor-ingest-0_factory-ingest-2026-01-02T03:04:06Z.tar",
        archiveSizeBytes: 52_428_800,
        freezeGapMilliseconds: 0,
        image:
          "registry.example.com:5000/edgeshift/checkpoints:factory-sensor-ingest-0-ingest-1a2b3c",
        digest: `sha256:${"a".repeat(64)}`,
        imageSizeBytes: 31_457_280,
      },
      {
        name: "buffer",
        archivePath:
          "/var/lib/kubelet/checkpoints/checkpoint-sensor-ingest-0_factory-buffer-2026-01-02T03:04:06Z.tar",
        archiveSizeBytes: 8_388_608,
        image:
          "registry.example.com:5000/edgeshift/checkpoints:factory-sensor-ingest-0-buffer-1a2b3c",
        digest: `sha256:${"b".repeat(64)}`,
        imageSizeBytes: 4_194_304,
      },
    ],
    restoredPod: "sensor-ingest-0-x7k2p",
    reveal: {
      ownerKind: "ReplicaSet",
      ownerName: "sensor-ingest-6d5f7c9b8",
      ownerUID: "0b7e4c1a-3f2d-4e5b-8c9a-1d2e3f4a5b6c",
      labels: { app: "sensor-ingest", "pod-template-hash": "6d5f7c9b8" },
    },
    failureReason: "RestoreTimeout",
    message: "Migrated sensor-ingest-0 from edge-1 to cloud-1 in 4.2s",
    timestamps: {
      created: "2026-01-02T03:04:05Z",
      checkpointStarted: "2026-01-02T03:04:05.300Z",
      checkpointed: "2026-01-02T03:04:06.100Z",
      imagePushed: "2026-01-02T03:04:07.000Z",
      restoreStarted: "2026-01-02T03:04:07.100Z",
      restored: "2026-01-02T03:04:09.000Z",
      frozen: "2026-01-02T03:04:05.290Z",
      thawed: "2026-01-02T03:04:09.300Z",
      released: "2026-01-02T03:04:09.200Z",
      revealed: "2026-01-02T03:04:09.050Z",
      cutOver: "2026-01-02T03:04:09.150Z",
      finished: "2026-01-02T03:04:09.200Z",
    },
    downtimeSeconds: 3.76,
    divergenceSeconds: 3.05,
    durationSeconds: 4.2,
    duration: "4.2s",
  };
}
