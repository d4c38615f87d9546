import type { KubeletTLSMode } from "../kubelet/client.ts";
import type { Compression } from "../oci/image.ts";

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface AgentConfig {
  node: string;
  edgeNode: string;
  kubeletHost: string;
  kubeletPort: number;
  /** CA of the kubelet's serving certificate (ClusterCA, CABundle). */
  kubeletCaFile: string;
  /** ClusterCA (default), CABundle, or NodeSelfSigned (pinned on first connect). */
  kubeletTlsMode: KubeletTLSMode;
  /** Re-read on every call: projected tokens rotate. */
  tokenFile: string;
  checkpointDir: string;
  checkpointTimeoutSeconds: number;
  /** The host's /sys/fs/cgroup as mounted into the agent: where source containers are frozen. */
  cgroupRoot: string;
  /**
   * Handoff Freeze: how long a frozen original may wait for its image to be
   * reported before the agent thaws it and abandons the migration.
   */
  fenceTimeoutMs: number;
  registryRepository: string;
  registryInsecure: boolean;
  /** A mounted .dockerconfigjson; empty means anonymous. */
  registryAuthFile: string;
  registryCaFile: string;
  compression: Compression;
  /** Delete: the agent removes a Migration's checkpoint images once it ends. */
  imageRetention: "Delete" | "Retain";
  archiveMaxAgeMs: number;
  sweepIntervalMs: number;
  /** Empty means in-cluster. */
  kubeconfig: string;
  httpPort: number;
  logLevel: string;
}

export class AgentConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid agent configuration:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}

/** Every setting validated at once; all problems reported together. */
export function loadAgentConfig(env: NodeJS.ProcessEnv): AgentConfig {
  const problems: string[] = [];
  const str = (k: string, def?: string) => {
    const v = env[k];
    if (v === undefined || v === "") {
      if (def === undefined) problems.push(`${k} is required`);
      return def ?? "";
    }
    return v;
  };
  const int = (k: string, def: number, min: number, max: number) => {
    const raw = str(k, String(def));
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${k} must be an integer from ${min} to ${max}, got "${raw}"`);
      return def;
    }
    return n;
  };
  const compression = str("EDGESHIFT_COMPRESSION", "zstd");
  if (!["none", "zstd", "gzip"].includes(compression)) {
    problems.push(`EDGESHIFT_COMPRESSION must be none, zstd or gzip, got "${compression}"`);
  }
  const retention = str("EDGESHIFT_IMAGE_RETENTION", "Delete");
  if (retention !== "Delete" && retention !== "Retain") {
    problems.push(`EDGESHIFT_IMAGE_RETENTION must be Delete or Retain, got "${retention}"`);
  }
  const insecure = str("EDGESHIFT_REGISTRY_INSECURE", "false");
  if (insecure !== "true" && insecure !== "false") {
    problems.push(`EDGESHIFT_REGISTRY_INSECURE must be "true" or "false", got "${insecure}"`);
  }
  const tlsMode = str("EDGESHIFT_KUBELET_TLS_MODE", "ClusterCA");
  if (!["ClusterCA", "CABundle", "NodeSelfSigned"].includes(tlsMode)) {
    problems.push(
      `EDGESHIFT_KUBELET_TLS_MODE must be ClusterCA, CABundle or NodeSelfSigned, got "${tlsMode}"`,
    );
  }
  const cfg: AgentConfig = {
    node: str("EDGESHIFT_NODE_NAME"),
    edgeNode: str("EDGESHIFT_EDGENODE"),
    kubeletHost: str("EDGESHIFT_KUBELET_HOST"),
    kubeletPort: int("EDGESHIFT_KUBELET_PORT", 10250, 1, 65535),
    kubeletCaFile: str("EDGESHIFT_KUBELET_CA_FILE", `${SA_DIR}/ca.crt`),
    kubeletTlsMode: tlsMode as KubeletTLSMode,
    tokenFile: str("EDGESHIFT_TOKEN_FILE", `${SA_DIR}/token`),
    checkpointDir: str("EDGESHIFT_CHECKPOINT_DIR", "/var/lib/kubelet/checkpoints"),
    checkpointTimeoutSeconds: int("EDGESHIFT_CHECKPOINT_TIMEOUT_SECONDS", 60, 1, 600),
    cgroupRoot: str("EDGESHIFT_CGROUP_ROOT", "/sys/fs/cgroup"),
    fenceTimeoutMs: int("EDGESHIFT_FENCE_TIMEOUT_SECONDS", 120, 5, 3600) * 1000,
    registryRepository: str("EDGESHIFT_REGISTRY_REPOSITORY"),
    registryInsecure: insecure === "true",
    registryAuthFile: str("EDGESHIFT_REGISTRY_AUTH_FILE", ""),
    registryCaFile: str("EDGESHIFT_REGISTRY_CA_FILE", ""),
    compression: compression as Compression,
    imageRetention: retention as "Delete" | "Retain",
    archiveMaxAgeMs: int("EDGESHIFT_ARCHIVE_MAX_AGE_SECONDS", 3600, 60, 7 * 86400) * 1000,
    sweepIntervalMs: int("EDGESHIFT_SWEEP_INTERVAL_SECONDS", 300, 1, 86400) * 1000,
    kubeconfig: str("KUBECONFIG", ""),
    httpPort: int("EDGESHIFT_HTTP_PORT", 8081, 0, 65535),
    logLevel: str("EDGESHIFT_LOG_LEVEL", "info"),
  };
  if (problems.length) throw new AgentConfigError(problems);
  return cfg;
}
