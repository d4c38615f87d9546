import { type AppMetricSpec, parseAppMetricSpec } from "./app-metric.ts";
import { subjectFor } from "./protocol.ts";

export interface MonitorConfig {
  natsServers: string[];
  node: string;
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  intervalMs: number;
  cpuLimitCores: number;
  memoryLimitBytes: number;
  /** Never logged. */
  signingKey: Buffer;
  procRoot: string;
  cgroupRoot: string;
  /** Measure only this process and its descendants (tests on a host); unset in a pod. */
  rootPid: number | undefined;
  logLevel: string;
  /** The application's own metric to scrape on localhost (EDGESHIFT_APP_METRIC, JSON); unset: none. */
  appMetric: AppMetricSpec | undefined;
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid monitor configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const MIN_KEY_BYTES = 16;

/** Reads and checks every setting, then throws one ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined>): MonitorConfig {
  const problems: string[] = [];
  const get = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  const required = (name: string): string => {
    const v = get(name);
    if (v === undefined) problems.push(`${name} is required`);
    return v ?? "";
  };
  const positive = (name: string, opts: { integer?: boolean; max?: number }): number => {
    const raw = required(name);
    if (!raw) return 0;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0 || (opts.integer && !Number.isSafeInteger(n))) {
      problems.push(
        `${name} must be a positive ${opts.integer ? "integer" : "number"}, got "${raw}"`,
      );
      return 0;
    }
    if (opts.max !== undefined && n > opts.max) {
      problems.push(`${name} must be at most ${opts.max}, got "${raw}"`);
    }
    return n;
  };

  const natsRaw = required("EDGESHIFT_NATS_URL");
  const natsServers = natsRaw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of natsServers) {
    if (/\s/.test(s) || (s.includes("://") && !URL.canParse(s))) {
      problems.push(`EDGESHIFT_NATS_URL contains an invalid server "${redactUrl(s)}"`);
    }
  }

  const names = {
    node: required("EDGESHIFT_NODE"),
    namespace: required("EDGESHIFT_NAMESPACE"),
    pod: required("EDGESHIFT_POD"),
    container: required("EDGESHIFT_CONTAINER"),
  };
  for (const [field, value] of Object.entries(names)) {
    if (!value) continue;
    try {
      subjectFor(value, "x", "x", "x");
    } catch {
      problems.push(`EDGESHIFT_${field.toUpperCase()} is not a valid Kubernetes name: "${value}"`);
    }
  }
  const podUid = required("EDGESHIFT_POD_UID");

  const intervalSeconds = positive("EDGESHIFT_INTERVAL_SECONDS", { max: 3600 });
  if (intervalSeconds > 0 && intervalSeconds < 0.1) {
    problems.push("EDGESHIFT_INTERVAL_SECONDS must be at least 0.1");
  }
  const cpuLimitCores = positive("EDGESHIFT_CPU_LIMIT_CORES", {});
  const memoryLimitBytes = positive("EDGESHIFT_MEMORY_LIMIT_BYTES", { integer: true });

  let signingKey: Buffer = Buffer.alloc(0);
  const keyRaw = required("EDGESHIFT_SIGNING_KEY");
  if (keyRaw) {
    signingKey = decodeKey(keyRaw);
    // The message names the variable, never the value.
    if (signingKey.length < MIN_KEY_BYTES) {
      problems.push(
        `EDGESHIFT_SIGNING_KEY must be hex or base64 of at least ${MIN_KEY_BYTES} bytes`,
      );
    }
  }

  let rootPid: number | undefined;
  const rootRaw = get("EDGESHIFT_ROOT_PID");
  if (rootRaw !== undefined) {
    rootPid = Number(rootRaw);
    if (!Number.isSafeInteger(rootPid) || rootPid <= 0) {
      problems.push(`EDGESHIFT_ROOT_PID must be a positive integer, got "${rootRaw}"`);
    }
  }

  const logLevel = get("EDGESHIFT_LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`EDGESHIFT_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  }

  let appMetric: AppMetricSpec | undefined;
  const appRaw = get("EDGESHIFT_APP_METRIC");
  if (appRaw !== undefined) {
    const parsed = parseAppMetricSpec(appRaw);
    if (Array.isArray(parsed)) problems.push(...parsed);
    else appMetric = parsed;
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    natsServers,
    ...names,
    podUid,
    intervalMs: Math.round(intervalSeconds * 1000),
    cpuLimitCores,
    memoryLimitBytes,
    signingKey,
    procRoot: get("EDGESHIFT_PROC_ROOT") ?? "/proc",
    cgroupRoot: get("EDGESHIFT_CGROUP_ROOT") ?? "/sys/fs/cgroup",
    rootPid,
    logLevel,
    appMetric,
  };
}

/** Hex when it can only be hex, else standard or URL-safe base64; empty when neither. */
function decodeKey(raw: string): Buffer {
  if (/^(?:[0-9a-fA-F]{2})+$/.test(raw)) return Buffer.from(raw, "hex");
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(raw)) return Buffer.from(raw, "base64");
  return Buffer.alloc(0);
}

/** For messages and logs: a server address without its user info. */
export function redactUrl(server: string): string {
  return server.replace(/\/\/[^@/]*@/, "//<redacted>@");
}
