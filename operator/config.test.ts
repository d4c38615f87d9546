import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseDuration } from "./config.ts";

const valid = {
  EDGESHIFT_MONITOR_IMAGE: "ghcr.io/edgeshift/edgeshift:0.1.0",
  EDGESHIFT_NATS_URL: "nats://nats.edgeshift-system:4222",
  EDGESHIFT_SIGNING_KEY: "a".repeat(64),
};

describe("loadConfig", () => {
  it("fills defaults", () => {
    const c = loadConfig(valid);
    expect(c).toMatchObject({
      namespace: "edgeshift-system",
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      monitorNatsUrl: valid.EDGESHIFT_NATS_URL,
      leaderElection: true,
    });
    expect(c.signingKey).toHaveLength(32);
  });

  it("reports every problem at once", () => {
    let err: unknown;
    try {
      loadConfig({
        EDGESHIFT_NATS_URL: "http://x",
        EDGESHIFT_SIGNING_KEY: "abcd",
        EDGESHIFT_LEASE_DURATION: "soon",
        EDGESHIFT_HTTP_PORT: "70000",
        EDGESHIFT_LEADER_ELECTION: "maybe",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join("\n");
    expect(problems).toContain("EDGESHIFT_MONITOR_IMAGE is required");
    expect(problems).toContain("EDGESHIFT_NATS_URL must be a nats:// URL");
    expect(problems).toContain("EDGESHIFT_SIGNING_KEY must be at least 32 bytes");
    expect(problems).toContain("EDGESHIFT_LEASE_DURATION must be a positive duration");
    expect(problems).toContain("EDGESHIFT_HTTP_PORT must be an integer from 0 to 65535");
    expect(problems).toContain('EDGESHIFT_LEADER_ELECTION must be "true" or "false"');
    expect((err as ConfigError).problems).toHaveLength(6);
  });

  it("rejects a renew deadline not shorter than the lease", () => {
    expect(() => loadConfig({ ...valid, EDGESHIFT_RENEW_DEADLINE: "20s" })).toThrow(
      /RENEW_DEADLINE must be shorter/,
    );
  });

  it.each([
    ["15s", 15_000],
    ["500ms", 500],
    ["2m", 120_000],
    ["3", 3_000],
    ["1.5s", 1_500],
    ["x", undefined],
    ["-1s", undefined],
  ])("parseDuration(%s) = %s", (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });
});
