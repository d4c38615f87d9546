import { hostname } from "node:os";

export interface OperatorConfig {
  namespace: string;
  identity: string;
  /** Path to a kubeconfig; empty means in-cluster. */
  kubeconfig: string;
  httpHost: string;
  httpPort: number;
  leaderElection: boolean;
  leaseName: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  monitorImage: string;
  /** NATS URL the operator subscribes on. */
  natsUrl: string;
  /** NATS URL injected into monitors (defaults to natsUrl). */
  monitorNatsUrl: string;
  /** Master key; per-monitor keys are derived from it (see operator/monitor/keys.ts). */
  signingKey: Buffer;
  logLevel: string;
  shutdownTimeoutMs: number;
  workers: number;
  restoreTimeoutMs: number;
  /** How long the owner may take to settle to one copy at cutover (operator/migration/controller.ts). */
  cutoverTimeoutMs: number;
  /** How long a waiting migration step sleeps without a pod or Migration event (a missed one). */
  migrationResyncMs: number;
  checkpointTimeoutMs: number;
  /** Finished Migrations kept per namespace whatever their age (operator/migration/history.ts). */
  migrationHistoryLimit: number;
  /** Beyond those, finished Migrations are deleted this long after they finished. */
  migrationTtlMs: number;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}

/** "15s", "500ms", "2m", or a bare number of seconds. */
export function parseDuration(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  const factor = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}

export function decodeKey(v: string): Buffer | undefined {
  const s = v.trim();
  if (/^[0-9a-fA-F]+$/.test(s) && s.length % 2 === 0) return Buffer.from(s, "hex");
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) return Buffer.from(s, "base64");
  return undefined;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"];

/** Validates every setting at once and reports all problems together. */
export function loadConfig(env: NodeJS.ProcessEnv): OperatorConfig {
  const problems: string[] = [];
  const str = (k: string, def?: string): string => {
    const v = env[k];
    if (v === undefined || v === "") {
      if (def === undefined) problems.push(`${k} is required`);
      return def ?? "";
    }
    return v;
  };
  const dur = (k: string, def: string): number => {
    const v = parseDuration(str(k, def));
    if (v === undefined || v <= 0) {
      problems.push(`${k} must be a positive duration like "15s" or "500ms", got "${env[k]}"`);
      return 0;
    }
    return v;
  };
  const int = (k: string, def: number, min: number, max: number): number => {
    const raw = str(k, String(def));
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min || v > max) {
      problems.push(`${k} must be an integer from ${min} to ${max}, got "${raw}"`);
      return def;
    }
    return v;
  };
  const bool = (k: string, def: boolean): boolean => {
    const raw = str(k, String(def)).toLowerCase();
    if (raw !== "true" && raw !== "false") {
      problems.push(`${k} must be "true" or "false", got "${env[k]}"`);
      return def;
    }
    return raw === "true";
  };
  const url = (k: string, def?: string): string => {
    const v = str(k, def);
    if (v && !/^(nats|tls|wss?):\/\/[^\s]+$/.test(v))
      problems.push(`${k} must be a nats:// URL, got "${v}"`);
    return v;
  };

  const namespace = str("EDGESHIFT_NAMESPACE", "edgeshift-system");
  const identity = str("EDGESHIFT_POD_NAME", hostname());
  const kubeconfig = str("KUBECONFIG", "");
  const httpHost = str("EDGESHIFT_HTTP_HOST", "0.0.0.0");
  const httpPort = int("EDGESHIFT_HTTP_PORT", 8080, 0, 65535);
  const leaderElection = bool("EDGESHIFT_LEADER_ELECTION", true);
  const leaseName = str("EDGESHIFT_LEASE_NAME", "edgeshift-operator");
  const leaseDurationMs = dur("EDGESHIFT_LEASE_DURATION", "15s");
  const renewDeadlineMs = dur("EDGESHIFT_RENEW_DEADLINE", "10s");
  const retryPeriodMs = dur("EDGESHIFT_RETRY_PERIOD", "2s");
  if (leaseDurationMs && renewDeadlineMs && renewDeadlineMs >= leaseDurationMs) {
    problems.push("EDGESHIFT_RENEW_DEADLINE must be shorter than EDGESHIFT_LEASE_DURATION");
  }
  if (retryPeriodMs && renewDeadlineMs && retryPeriodMs >= renewDeadlineMs) {
    problems.push("EDGESHIFT_RETRY_PERIOD must be shorter than EDGESHIFT_RENEW_DEADLINE");
  }
  const monitorImage = str("EDGESHIFT_MONITOR_IMAGE");
  const natsUrl = url("EDGESHIFT_NATS_URL");
  const monitorNatsUrl = env.EDGESHIFT_MONITOR_NATS_URL
    ? url("EDGESHIFT_MONITOR_NATS_URL")
    : natsUrl;
  const rawKey = str("EDGESHIFT_SIGNING_KEY");
  let signingKey: Buffer = Buffer.alloc(0);
  if (rawKey) {
    const k = decodeKey(rawKey);
    if (!k || k.length < 32)
      problems.push("EDGESHIFT_SIGNING_KEY must be at least 32 bytes, hex or base64");
    else signingKey = k;
  }
  const logLevel = str("EDGESHIFT_LOG_LEVEL", "info");
  if (!LOG_LEVELS.includes(logLevel))
    problems.push(`EDGESHIFT_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}`);
  const shutdownTimeoutMs = dur("EDGESHIFT_SHUTDOWN_TIMEOUT", "10s");
  const workers = int("EDGESHIFT_WORKERS", 4, 1, 64);
  const restoreTimeoutMs = dur("EDGESHIFT_RESTORE_TIMEOUT", "120s");
  const cutoverTimeoutMs = dur("EDGESHIFT_CUTOVER_TIMEOUT", "30s");
  const checkpointTimeoutMs = dur("EDGESHIFT_CHECKPOINT_TIMEOUT", "300s");
  const migrationResyncMs = dur("EDGESHIFT_MIGRATION_RESYNC", "10s");
  const migrationHistoryLimit = int("EDGESHIFT_MIGRATION_HISTORY_LIMIT", 10, 0, 10_000);
  const migrationTtlMs = dur("EDGESHIFT_MIGRATION_TTL", "24h");

  if (problems.length) throw new ConfigError(problems);
  return {
    namespace,
    identity,
    kubeconfig,
    httpHost,
    httpPort,
    leaderElection,
    leaseName,
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    monitorImage,
    natsUrl,
    monitorNatsUrl,
    signingKey,
    logLevel,
    shutdownTimeoutMs,
    workers,
    restoreTimeoutMs,
    cutoverTimeoutMs,
    migrationResyncMs,
    checkpointTimeoutMs,
    migrationHistoryLimit,
    migrationTtlMs,
  };
}
