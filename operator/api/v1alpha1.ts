// TypeScript view of the edgeshift.dev/v1alpha1 API. The CRDs in crds/ are the
// source of truth; these types mirror their schemas field for field, and
// operator/api/crds.test.ts checks the constants below against them.
// Fields the API server defaults are optional here (a writer may leave them
// out) and always present on objects read back from the server.
import type { V1ObjectMeta } from "@kubernetes/client-node";

export const GROUP = "edgeshift.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = "edgeshift.dev/v1alpha1";
export const EDGENODE_KIND = "EdgeNode";
export const EDGENODE_PLURAL = "edgenodes";
export const MIGRATION_KIND = "Migration";
export const MIGRATION_PLURAL = "migrations";
export const CATEGORY = "edgeshift";

/** Pod annotation; the value "false" keeps a pod from being monitored or migrated. */
export const MIGRATE_ANNOTATION = "edgeshift.dev/migrate";
/** On a Migration: the edge node its pod runs on; the node's agent selects by it. */
export const SOURCE_NODE_LABEL = "edgeshift.dev/source-node";
/** On a Migration: the EdgeNode that owns its source node. */
export const EDGENODE_LABEL = "edgeshift.dev/edgenode";

// --- shared shapes -----------------------------------------------------------

export const LabelSelectorOperator = {
  In: "In",
  NotIn: "NotIn",
  Exists: "Exists",
  DoesNotExist: "DoesNotExist",
} as const;
export type LabelSelectorOperator =
  (typeof LabelSelectorOperator)[keyof typeof LabelSelectorOperator];

export interface LabelSelectorRequirement {
  key: string;
  operator: LabelSelectorOperator;
  /** Non-empty for In and NotIn, empty or absent for Exists and DoesNotExist. */
  values?: string[];
}

/** metav1.LabelSelector: matchLabels and matchExpressions are ANDed; empty matches everything. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export const ConditionStatus = { True: "True", False: "False", Unknown: "Unknown" } as const;
export type ConditionStatus = (typeof ConditionStatus)[keyof typeof ConditionStatus];

/** metav1.Condition. Timestamps are RFC 3339 strings, as on the wire. */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** How a checkpoint migration hands over: Freeze (a move) or Fork (the original runs on until cutover). */
export const Handoff = {
  Freeze: "Freeze",
  Fork: "Fork",
} as const;
export type Handoff = (typeof Handoff)[keyof typeof Handoff];

export const RestorePolicy = { Checkpoint: "checkpoint", Restart: "restart" } as const;
export type RestorePolicy = (typeof RestorePolicy)[keyof typeof RestorePolicy];

// --- EdgeNode ----------------------------------------------------------------

export interface PodSelection {
  /** Absent or empty matches every pod. */
  selector?: LabelSelector;
  /** Absent or empty means every namespace (minus excludeNamespaces). */
  namespaces?: string[];
  excludeNamespaces?: string[];
}

export interface ResourceThreshold {
  /** 1-100: percent of the container limit (or node allocatable without a limit). */
  triggerPercent: number;
  /** 1-100, below triggerPercent: usage must drop below it before a new breach counts. */
  rearmPercent?: number;
}

export interface NodeThreshold {
  cpuPercent?: number;
  memoryPercent?: number;
}

export const AppMetricType = { Gauge: "Gauge", Counter: "Counter" } as const;
export type AppMetricType = (typeof AppMetricType)[keyof typeof AppMetricType];
export const RatePer = { Second: "Second", Minute: "Minute" } as const;
export type RatePer = (typeof RatePer)[keyof typeof RatePer];

/** One label matcher of the series: equal or not equal (an absent label is ""). */
export interface SeriesMatcher {
  label: string;
  /** Default "=". */
  operator?: "=" | "!=";
  value: string;
}

/**
 * A metric the application itself exposes (Prometheus text format), read by
 * the monitor on localhost each sampling interval: a gauge's value or a
 * counter's rate, summed over the series the matchers select.
 */
export interface ApplicationThreshold {
  /** 1-65535: the container port it serves on. */
  port: number;
  /** Default /metrics. */
  path?: string;
  /** The series' metric name. */
  metric: string;
  matchers?: SeriesMatcher[];
  type: AppMetricType;
  /** Counter only; default Second. */
  per?: RatePer;
  /** A sample breaches at or above this value (or rate). */
  triggerValue: number;
  /** Below triggerValue: after a trigger, it must fall below this before a new breach counts. Default 0.9 x triggerValue. */
  rearmValue?: number;
}

/** At least one of cpu, memory and application is set. */
export interface Thresholds {
  cpu?: ResourceThreshold;
  memory?: ResourceThreshold;
  node?: NodeThreshold;
  application?: ApplicationThreshold;
}

/**
 * The way back to the edge (absent: migrated pods stay in the cloud). A pod
 * edgeshift moved to a cloud node returns when it has stayed below every level
 * set here for windowSeconds, to an edge node of its EdgeNode that can take it.
 */
export interface ReturnToEdge {
  /** Below thresholds.cpu.triggerPercent. */
  cpuPercent?: number;
  /** Below thresholds.memory.triggerPercent. */
  memoryPercent?: number;
  /** Below thresholds.application.triggerValue. */
  applicationValue?: number;
  /** 1-3600, >= samplingIntervalSeconds, default 60. */
  windowSeconds?: number;
  /** 0-86400, default 600: a moved pod moves again (either way) no sooner than this after it arrived. */
  cooldownSeconds?: number;
}

export interface CloudTarget {
  nodeSelector: LabelSelector;
}

export interface SecretReference {
  name: string;
  /** Absent means the operator's namespace. */
  namespace?: string;
}

export const ImageRetention = { Delete: "Delete", Retain: "Retain" } as const;
export type ImageRetention = (typeof ImageRetention)[keyof typeof ImageRetention];

export interface RegistrySpec {
  /** host[:port]/path, no tag or digest. */
  repository: string;
  /** A kubernetes.io/dockerconfigjson Secret; absent means anonymous. */
  secretRef?: SecretReference;
  /** Default false. */
  insecure?: boolean;
  /** Default Delete. */
  imageRetention?: ImageRetention;
}

export const KubeletTLSMode = {
  ClusterCA: "ClusterCA",
  CABundle: "CABundle",
  NodeSelfSigned: "NodeSelfSigned",
} as const;
export type KubeletTLSMode = (typeof KubeletTLSMode)[keyof typeof KubeletTLSMode];

/** How the edge agent trusts its own node's kubelet serving certificate. */
export interface KubeletTLSSpec {
  /** Default ClusterCA. */
  mode: KubeletTLSMode;
  /** Required with mode CABundle: a ConfigMap in the operator's namespace. */
  caBundle?: {
    configMapName: string;
    /** Default ca.crt. */
    key?: string;
  };
}

export interface EdgeNodeSpec {
  /** Non-empty. */
  nodeSelector: LabelSelector;
  pods?: PodSelection;
  thresholds: Thresholds;
  /** 1-3600, default 1. */
  samplingIntervalSeconds?: number;
  /** 1-3600, >= samplingIntervalSeconds, default 10. */
  sustainedWindowSeconds?: number;
  /** 1-100, default 80: share of samples in the window that must breach. */
  breachPercent?: number;
  /** 0-86400, default 300. */
  cooldownSeconds?: number;
  /** 1-100, default 1. */
  maxConcurrentMigrations?: number;
  /** Default checkpoint. */
  restorePolicy?: RestorePolicy;
  /** Default true. */
  fallbackToRestart?: boolean;
  /** Default Freeze. */
  handoff?: Handoff;
  /** 5-3600, default 120: the agent's fence deadline after the hold (handoff Freeze). */
  freezeTimeoutSeconds?: number;
  cloud: CloudTarget;
  /** Absent: a migrated pod stays in the cloud. */
  returnToEdge?: ReturnToEdge;
  /** Required when restorePolicy is checkpoint. */
  registry?: RegistrySpec;
  /** Default mode ClusterCA. */
  kubeletTLS?: KubeletTLSSpec;
}

export interface NodeRuntimeStatus {
  name: string;
  /** As the kubelet reports it, e.g. "containerd://2.1.4". */
  containerRuntime?: string;
  checkpoint?: boolean;
  restore?: boolean;
  /** Edge nodes: how many cloud nodes can restore this node's checkpoints. */
  restoreTargets?: number;
  message?: string;
}

/** Monitors by their latest reading of the application's metric (fresh monitors only). */
export interface ApplicationMetricStatus {
  /** A value (or rate). */
  reading: number;
  /** The endpoint did not answer 200 in time, or not in Prometheus text. */
  scrapeFailed: number;
  /** No series matched. */
  absent: number;
  /** No value yet, or the counter was reset. */
  pending: number;
}

export interface EdgeNodeStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  matchedNodes?: number;
  monitoredPods?: number;
  /** returnToEdge: pods this EdgeNode moved to the cloud that may return, with their monitors. */
  cloudMonitoredPods?: number;
  staleMonitors?: number;
  /** thresholds.application: how the monitors' latest readings of it went. */
  applicationMetric?: ApplicationMetricStatus;
  activeMigrations?: number;
  checkpointCapableNodes?: number;
  /** e.g. "2/3 nodes". */
  runtimeSupport?: string;
  nodes?: NodeRuntimeStatus[];
  /** Preflight of the cloud nodes (spec.cloud.nodeSelector): which can restore checkpoints. */
  cloudNodes?: NodeRuntimeStatus[];
}

export interface EdgeNode {
  apiVersion: typeof API_VERSION;
  kind: typeof EDGENODE_KIND;
  metadata: V1ObjectMeta;
  spec: EdgeNodeSpec;
  status?: EdgeNodeStatus;
}

export interface EdgeNodeList {
  apiVersion: typeof API_VERSION;
  kind: "EdgeNodeList";
  metadata: { resourceVersion?: string; continue?: string };
  items: EdgeNode[];
}

export const EdgeNodeConditionType = {
  Ready: "Ready",
  CheckpointSupported: "CheckpointSupported",
} as const;
export type EdgeNodeConditionType =
  (typeof EdgeNodeConditionType)[keyof typeof EdgeNodeConditionType];

export const EdgeNodeConditionReason = {
  /** Ready True: nodes matched, monitors injected. */
  Reconciled: "Reconciled",
  /** Ready False: the nodeSelector matches no node. */
  NoMatchingNodes: "NoMatchingNodes",
  /** Ready False: the per-node pod watchers have not synced yet. */
  WatchersStarting: "WatchersStarting",
  /** Ready False: spec.registry.secretRef names a Secret that does not exist. */
  RegistrySecretNotFound: "RegistrySecretNotFound",
  /** Ready False: a spec problem the schema cannot express (e.g. overlapping EdgeNodes). */
  InvalidSpec: "InvalidSpec",
  /** CheckpointSupported True. */
  AllNodesSupported: "AllNodesSupported",
  /** CheckpointSupported False: some matched nodes cannot checkpoint. */
  SomeNodesUnsupported: "SomeNodesUnsupported",
  /** CheckpointSupported False: no matched node can checkpoint. */
  NoNodesSupported: "NoNodesSupported",
  /** CheckpointSupported True: restorePolicy is restart, so no checkpoint is needed. */
  NotRequired: "NotRequired",
} as const;
export type EdgeNodeConditionReason =
  (typeof EdgeNodeConditionReason)[keyof typeof EdgeNodeConditionReason];

// --- Migration ---------------------------------------------------------------

export const MigrationReasonType = {
  ThresholdExceeded: "ThresholdExceeded",
  /** A pod in the cloud stayed below the EdgeNode's returnToEdge levels (direction ToEdge). */
  BelowReturnLevel: "BelowReturnLevel",
  Manual: "Manual",
} as const;
export type MigrationReasonType = (typeof MigrationReasonType)[keyof typeof MigrationReasonType];

export const Metric = {
  Cpu: "cpu",
  Memory: "memory",
  NodeCpu: "nodeCpu",
  NodeMemory: "nodeMemory",
  Application: "application",
} as const;
export type Metric = (typeof Metric)[keyof typeof Metric];

/** Which way a Migration moves its pod. */
export const Direction = { ToCloud: "ToCloud", ToEdge: "ToEdge" } as const;
export type Direction = (typeof Direction)[keyof typeof Direction];

/** Why a migration started. ThresholdExceeded and BelowReturnLevel require metric, value and threshold. */
export interface MigrationReason {
  /** Default Manual. */
  type?: MigrationReasonType;
  metric?: Metric;
  /** Observed usage in percent; for application, the metric's value (or rate). */
  value?: number;
  /** Trigger percentage that was exceeded (BelowReturnLevel: the return level); for application, the value. */
  threshold?: number;
  /** Metric application: the series, e.g. http_requests_total{code!="500"} per minute. */
  series?: string;
  windowSeconds?: number;
  /** RFC 3339. */
  sampledAt?: string;
}

/** Immutable after creation. */
export interface MigrationSpec {
  podName: string;
  /**
   * Default ToCloud: from an edge node to a cloud node. ToEdge: a pod edgeshift
   * moved to the cloud goes back to an edge node of its EdgeNode (returnToEdge set).
   */
  direction?: Direction;
  /** Absent or empty means every app container. */
  containers?: string[];
  /** Absent means the operator picks a node (a cloud node, or ToEdge an edge node). */
  targetNode?: string;
  /** Absent means the EdgeNode's. */
  restorePolicy?: RestorePolicy;
  /** Absent means the EdgeNode's. */
  fallbackToRestart?: boolean;
  /** Absent means the EdgeNode's. */
  handoff?: Handoff;
  /** Default {type: Manual}. */
  reason?: MigrationReason;
}

export interface ContainerCheckpointStatus {
  name: string;
  /** runtime://id as the kubelet reported it at validation (the operator's): what the agent freezes. */
  containerID?: string;
  archivePath?: string;
  archiveSizeBytes?: number;
  /**
   * Handoff Freeze (the agent's): how long the container ran after its dump
   * before it was held frozen; 0 when held before the runtime resumed it.
   */
  freezeGapMilliseconds?: number;
  image?: string;
  digest?: string;
  imageSizeBytes?: number;
}

/** RFC 3339 strings. */
export interface MigrationTimestamps {
  created?: string;
  checkpointStarted?: string;
  checkpointed?: string;
  imagePushed?: string;
  restoreStarted?: string;
  restored?: string;
  /** Handoff Freeze: the agent froze the source container. */
  frozen?: string;
  /** Handoff Freeze: the agent released it again (thawed, or found no longer held): failure, deletion, fence deadline. */
  thawed?: string;
  /**
   * Handoff Freeze, rolled back (the operator's): the restored pod is gone, its
   * containers stopped by its kubelet, or was never created; the agent thaws
   * the original only from then on.
   */
  released?: string;
  revealed?: string;
  cutOver?: string;
  finished?: string;
}

export const MigrationPhase = {
  Pending: "Pending",
  Checkpointing: "Checkpointing",
  Pushing: "Pushing",
  Restoring: "Restoring",
  CuttingOver: "CuttingOver",
  Succeeded: "Succeeded",
  Failed: "Failed",
} as const;
export type MigrationPhase = (typeof MigrationPhase)[keyof typeof MigrationPhase];

/** The original's controller and the labels the hidden restored pod gets back at cutover. */
export interface RevealRecord {
  ownerKind: "Job" | "ReplicaSet";
  ownerName: string;
  ownerUID: string;
  labels?: Record<string, string>;
}

export interface MigrationStatus {
  observedGeneration?: number;
  /** Printer-column summary of the conditions, not the truth. */
  phase?: MigrationPhase;
  conditions?: Condition[];
  edgeNode?: string;
  /** The one agent identity (ServiceAccount username) admission lets write the agent's part. */
  agentIdentity?: string;
  policy?: RestorePolicy;
  /** In effect for a checkpoint migration. */
  handoff?: Handoff;
  sourceNode?: string;
  /** The pod validated for the move; a pod re-created under the same name is not it. */
  sourcePodUID?: string;
  targetNode?: string;
  containers?: ContainerCheckpointStatus[];
  restoredPod?: string;
  /** What hands the restored pod to the original's owner, recorded when it is created. */
  reveal?: RevealRecord;
  failureReason?: string;
  message?: string;
  timestamps?: MigrationTimestamps;
  /** Freeze: frozen to restored. */
  downtimeSeconds?: number;
  /** Fork: checkpointed to cutOver. */
  divergenceSeconds?: number;
  durationSeconds?: number;
  /** durationSeconds for display, e.g. "4.2s". */
  duration?: string;
}

export interface Migration {
  apiVersion: typeof API_VERSION;
  kind: typeof MIGRATION_KIND;
  metadata: V1ObjectMeta;
  spec: MigrationSpec;
  status?: MigrationStatus;
}

export interface MigrationList {
  apiVersion: typeof API_VERSION;
  kind: "MigrationList";
  metadata: { resourceVersion?: string; continue?: string };
  items: Migration[];
}

export const MigrationConditionType = {
  Checkpointed: "Checkpointed",
  ImagePushed: "ImagePushed",
  Restored: "Restored",
  Succeeded: "Succeeded",
} as const;
export type MigrationConditionType =
  (typeof MigrationConditionType)[keyof typeof MigrationConditionType];

/** Condition reasons of a Migration; the failure ones double as status.failureReason. */
export const MigrationConditionReason = {
  /** Any condition, Unknown: the step has not started. */
  Pending: "Pending",
  /** Any condition, Unknown or False: the step is running. */
  InProgress: "InProgress",
  /** Checkpointed True. */
  CheckpointCreated: "CheckpointCreated",
  /** ImagePushed True. */
  ImagePushed: "ImagePushed",
  /** Checkpointed/ImagePushed False under the restart policy: nothing to checkpoint. */
  NotRequired: "NotRequired",
  /** Restored True: the restored pod is Ready. */
  PodReady: "PodReady",
  /** Succeeded True: the original pod was removed. */
  CutOver: "CutOver",
  /** Checkpoint or restore failed and fallbackToRestart restarted the pod instead. */
  FellBackToRestart: "FellBackToRestart",
  // Failures (Succeeded False, status.failureReason).
  PodNotFound: "PodNotFound",
  /** The pod has no container of a name in spec.containers. */
  ContainerNotFound: "ContainerNotFound",
  /** StatefulSet, DaemonSet or another owner whose pods cannot be moved safely. */
  UnsupportedOwner: "UnsupportedOwner",
  /** No cloud node qualifies (selector, Ready, taints, architecture, room), or spec.targetNode does not. */
  NoTarget: "NoTarget",
  /** The target node cannot give the restored pod the original's volumes (claims, access modes, node affinity). */
  VolumeUnavailable: "VolumeUnavailable",
  /** The agent did not report on the checkpoint in time. */
  CheckpointTimeout: "CheckpointTimeout",
  NotOnEdgeNode: "NotOnEdgeNode",
  /** ToEdge: the pod was not moved to a cloud node by edgeshift, or its EdgeNode has no returnToEdge. */
  NotReturnable: "NotReturnable",
  RuntimeUnsupported: "RuntimeUnsupported",
  CheckpointFailed: "CheckpointFailed",
  /** Handoff Freeze: the agent could not freeze the source container (it was thawed again). */
  FreezeFailed: "FreezeFailed",
  /** Handoff Freeze: the image was not reported within the agent's fence timeout; the original was thawed. */
  FenceExpired: "FenceExpired",
  ArchiveInvalid: "ArchiveInvalid",
  PushFailed: "PushFailed",
  /** ImagePushed False: the registry did not answer (down, unreachable, 5xx). */
  RegistryUnavailable: "RegistryUnavailable",
  TargetUnschedulable: "TargetUnschedulable",
  /** The target node's kubelet cannot pull the checkpoint's base image. */
  BaseImageUnavailable: "BaseImageUnavailable",
  RestoreFailed: "RestoreFailed",
  RestoreTimeout: "RestoreTimeout",
  CutOverFailed: "CutOverFailed",
  SourcePodGone: "SourcePodGone",
  /** A pod of the original's name but another UID: not the pod validated, left alone. */
  SourcePodReplaced: "SourcePodReplaced",
  /** The original ended by itself (Succeeded/Failed) during the migration: nothing to move. */
  SourcePodFinished: "SourcePodFinished",
  /** The pod is annotated edgeshift.dev/migrate: "false". */
  OptedOut: "OptedOut",
  /** The pod is outside its EdgeNode's spec.pods. */
  NotSelected: "NotSelected",
  /** No Ready edge agent on the source node to take the checkpoint. */
  AgentUnavailable: "AgentUnavailable",
  /** An error that is no API answer (a broken invariant) before cutover: retrying would repeat it. */
  InternalError: "InternalError",
} as const;
export type MigrationConditionReason =
  (typeof MigrationConditionReason)[keyof typeof MigrationConditionReason];

// --- defaults ------------------------------------------------------------------

/** The CRD's defaults for EdgeNode spec fields; crds.test.ts keeps them in step. */
export const EDGENODE_SPEC_DEFAULTS = {
  samplingIntervalSeconds: 1,
  sustainedWindowSeconds: 10,
  breachPercent: 80,
  cooldownSeconds: 300,
  maxConcurrentMigrations: 1,
  restorePolicy: RestorePolicy.Checkpoint,
  fallbackToRestart: true,
  handoff: Handoff.Freeze,
  freezeTimeoutSeconds: 120,
} as const satisfies Partial<EdgeNodeSpec>;

/** The CRD's defaults for returnToEdge fields. */
export const RETURN_DEFAULTS = {
  windowSeconds: 60,
  cooldownSeconds: 600,
} as const satisfies Partial<ReturnToEdge>;

export const REGISTRY_DEFAULTS = {
  insecure: false,
  imageRetention: ImageRetention.Delete,
} as const satisfies Partial<RegistrySpec>;

export const MIGRATION_REASON_DEFAULT = {
  type: MigrationReasonType.Manual,
} as const satisfies MigrationReason;
