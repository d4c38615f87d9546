import { describe, expect, it } from "vitest";
import { withEdgeNodeDefaults, withMigrationDefaults } from "./defaults.ts";
import type { EdgeNodeSpec } from "./v1alpha1.ts";

const minimal: EdgeNodeSpec = {
  nodeSelector: { matchLabels: { "node-role.edgeshift.dev/edge": "" } },
  thresholds: { cpu: { triggerPercent: 80 } },
  cloud: { nodeSelector: { matchLabels: { "node-role.edgeshift.dev/cloud": "" } } },
  registry: { repository: "registry.example.com/edgeshift/checkpoints" },
};

describe("withEdgeNodeDefaults", () => {
  it("fills every absent field with the CRD default", () => {
    expect(withEdgeNodeDefaults(minimal)).toEqual({
      ...minimal,
      samplingIntervalSeconds: 1,
      sustainedWindowSeconds: 10,
      breachPercent: 80,
      cooldownSeconds: 300,
      maxConcurrentMigrations: 1,
      restorePolicy: "checkpoint",
      fallbackToRestart: true,
      handoff: "Freeze",
      freezeTimeoutSeconds: 120,
      registry: {
        repository: "registry.example.com/edgeshift/checkpoints",
        insecure: false,
        imageRetention: "Delete",
      },
    });
  });

  it("keeps values that are set, including falsy ones and explicit undefined", () => {
    const spec = withEdgeNodeDefaults({
      ...minimal,
      cooldownSeconds: 0,
      fallbackToRestart: false,
      sustainedWindowSeconds: undefined,
      restorePolicy: "restart",
      registry: undefined,
    });
    expect(spec.cooldownSeconds).toBe(0);
    expect(spec.fallbackToRestart).toBe(false);
    expect(spec.sustainedWindowSeconds).toBe(10);
    expect(spec.restorePolicy).toBe("restart");
    expect(spec).not.toHaveProperty("registry");
    expect(spec).not.toHaveProperty("returnToEdge");
    expect(
      withEdgeNodeDefaults({ ...minimal, returnToEdge: { cpuPercent: 20 } }).returnToEdge,
    ).toEqual({ cpuPercent: 20, windowSeconds: 60, cooldownSeconds: 600 });
    expect(minimal).not.toHaveProperty("cooldownSeconds");
  });
});

describe("withMigrationDefaults", () => {
  it("defaults reason to Manual", () => {
    expect(withMigrationDefaults({ podName: "p" })).toEqual({
      podName: "p",
      direction: "ToCloud",
      reason: { type: "Manual" },
    });
    expect(withMigrationDefaults({ podName: "p", direction: "ToEdge" }).direction).toBe("ToEdge");
    expect(withMigrationDefaults({ podName: "p", reason: {} }).reason.type).toBe("Manual");
  });

  it("keeps a ThresholdExceeded reason", () => {
    const reason = { type: "ThresholdExceeded", metric: "cpu", value: 97, threshold: 85 } as const;
    expect(withMigrationDefaults({ podName: "p", reason }).reason).toEqual(reason);
  });
});
