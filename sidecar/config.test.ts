import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactUrl } from "./config.ts";

const KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const valid = {
  EDGESHIFT_NATS_URL: "nats://nats.edgeshift-system:4222",
  EDGESHIFT_NODE: "edge-1.lab",
  EDGESHIFT_NAMESPACE: "shop",
  EDGESHIFT_POD: "web-0",
  EDGESHIFT_POD_UID: "0b7e1c7a-5d5e-4c1e-9d7e-2f0a1b2c3d4e",
  EDGESHIFT_CONTAINER: "app",
  EDGESHIFT_INTERVAL_SECONDS: "1",
  EDGESHIFT_CPU_LIMIT_CORES: "0.5",
  EDGESHIFT_MEMORY_LIMIT_BYTES: "536870912",
  EDGESHIFT_SIGNING_KEY: KEY_HEX,
};

function problems(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe("loadConfig", () => {
  it("reads a complete environment, with defaults for the optional settings", () => {
    const c = loadConfig(valid);
    expect(c).toMatchObject({
      natsServers: ["nats://nats.edgeshift-system:4222"],
      node: "edge-1.lab",
      namespace: "shop",
      pod: "web-0",
      container: "app",
      intervalMs: 1000,
      cpuLimitCores: 0.5,
      memoryLimitBytes: 536870912,
      procRoot: "/proc",
      cgroupRoot: "/sys/fs/cgroup",
      rootPid: undefined,
      logLevel: "info",
    });
    expect(c.signingKey).toEqual(Buffer.from(KEY_HEX, "hex"));
  });

  it("takes a base64 key, several servers, a root pid and a proc root", () => {
    const c = loadConfig({
      ...valid,
      EDGESHIFT_SIGNING_KEY: Buffer.from(KEY_HEX, "hex").toString("base64"),
      EDGESHIFT_NATS_URL: "nats://a:4222, nats://b:4222",
      EDGESHIFT_ROOT_PID: "4242",
      EDGESHIFT_PROC_ROOT: "/host/proc",
      EDGESHIFT_INTERVAL_SECONDS: "2.5",
    });
    expect(c.signingKey).toEqual(Buffer.from(KEY_HEX, "hex"));
    expect(c.natsServers).toEqual(["nats://a:4222", "nats://b:4222"]);
    expect(c.rootPid).toBe(4242);
    expect(c.procRoot).toBe("/host/proc");
    expect(c.intervalMs).toBe(2500);
  });

  it("reports every problem at once", () => {
    const got = problems({
      EDGESHIFT_NODE: "edge 1",
      EDGESHIFT_NAMESPACE: "shop",
      EDGESHIFT_CONTAINER: "app",
      EDGESHIFT_INTERVAL_SECONDS: "0",
      EDGESHIFT_CPU_LIMIT_CORES: "lots",
      EDGESHIFT_MEMORY_LIMIT_BYTES: "1.5",
      EDGESHIFT_SIGNING_KEY: "abcd",
      EDGESHIFT_ROOT_PID: "-3",
      EDGESHIFT_LOG_LEVEL: "loud",
    });
    expect(got).toEqual([
      "EDGESHIFT_NATS_URL is required",
      "EDGESHIFT_POD is required",
      'EDGESHIFT_NODE is not a valid Kubernetes name: "edge 1"',
      "EDGESHIFT_POD_UID is required",
      'EDGESHIFT_INTERVAL_SECONDS must be a positive number, got "0"',
      'EDGESHIFT_CPU_LIMIT_CORES must be a positive number, got "lots"',
      'EDGESHIFT_MEMORY_LIMIT_BYTES must be a positive integer, got "1.5"',
      "EDGESHIFT_SIGNING_KEY must be hex or base64 of at least 16 bytes",
      'EDGESHIFT_ROOT_PID must be a positive integer, got "-3"',
      'EDGESHIFT_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
    ]);
  });

  it("never puts the key or NATS credentials in its messages", () => {
    const secret = "not*a*key*but*a*secret*value";
    const err = (() => {
      try {
        loadConfig({
          ...valid,
          EDGESHIFT_SIGNING_KEY: secret,
          EDGESHIFT_NATS_URL: "nats://u:pw@ho st",
        });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error("expected a ConfigError");
    })();
    expect(err.message).not.toContain(secret);
    expect(err.message).not.toContain("pw");
    expect(err.problems).toHaveLength(2);
  });

  it.each([["0.05"], ["3601"], ["-1"], ["NaN"], ["1e400"]])("refuses interval %s", (v) => {
    expect(problems({ ...valid, EDGESHIFT_INTERVAL_SECONDS: v })).toHaveLength(1);
  });
});

describe("redactUrl", () => {
  it("removes user info only", () => {
    expect(redactUrl("nats://user:pass@nats:4222")).toBe("nats://<redacted>@nats:4222");
    expect(redactUrl("nats://nats:4222")).toBe("nats://nats:4222");
  });
});

describe("EDGESHIFT_APP_METRIC", () => {
  it("is optional, read as JSON, and its problems listed with the rest", () => {
    expect(loadConfig(valid).appMetric).toBeUndefined();
    const app = { port: 8080, metric: "http_requests_total", type: "Counter", per: "Minute" };
    expect(loadConfig({ ...valid, EDGESHIFT_APP_METRIC: JSON.stringify(app) }).appMetric).toEqual({
      ...app,
      path: "/metrics",
      matchers: [],
    });
    expect(
      problems({ ...valid, EDGESHIFT_INTERVAL_SECONDS: "0", EDGESHIFT_APP_METRIC: '{"port":0}' }),
    ).toHaveLength(4);
  });
});
