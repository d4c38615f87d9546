import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { Migration } from "../api/v1alpha1.ts";
import { AGENT_GRACE_MS, agentCheckDue, agentUnavailable } from "./agent-availability.ts";

const T0 = Date.parse("2030-01-01T00:00:00Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

/** A checkpoint Migration the operator validated at T0 and handed to the agent. */
function migration(status: Partial<NonNullable<Migration["status"]>> = {}): Migration {
  return {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "Migration",
    metadata: { name: "m", namespace: "apps", creationTimestamp: new Date(T0 - 60_000) },
    spec: { podName: "web" },
    status: {
      phase: "Checkpointing",
      sourceNode: "edge-1",
      timestamps: { created: at(-60_000) },
      conditions: [
        {
          type: "Succeeded",
          status: "Unknown",
          reason: "InProgress",
          message: "moving",
          lastTransitionTime: at(0),
        },
      ],
      ...status,
    },
  } as Migration;
}

describe("agentCheckDue", () => {
  it("is due once the agent has had the grace period since validation and reported nothing", () => {
    expect(agentCheckDue(migration(), T0 + AGENT_GRACE_MS - 1)).toBe(false);
    expect(agentCheckDue(migration(), T0 + AGENT_GRACE_MS)).toBe(true);
  });

  it("counts from validation, not from the Migration's creation (an operator that was down)", () => {
    // Created a minute before validation: still within the grace right after it.
    expect(agentCheckDue(migration(), T0 + 1000)).toBe(false);
  });

  it("counts from creation when validation's time is not in status", () => {
    const m = migration({ conditions: [] });
    expect(agentCheckDue(m, T0 - 60_000 + AGENT_GRACE_MS)).toBe(true);
  });

  it("is never due once the agent reported anything: CheckpointTimeout covers a slow agent", () => {
    const late = T0 + 10 * AGENT_GRACE_MS;
    const cond = (type: string, status: string) => ({
      type,
      status,
      reason: "InProgress",
      message: "",
      lastTransitionTime: at(1),
    });
    for (const reported of [
      { timestamps: { created: at(-60_000), checkpointStarted: at(1) } },
      { conditions: [cond("Checkpointed", "Unknown")] },
      { conditions: [cond("ImagePushed", "Unknown")] },
      { containers: [{ name: "app", archivePath: "/var/lib/kubelet/checkpoints/x.tar" }] },
      { containers: [{ name: "app", digest: `sha256:${"a".repeat(64)}` }] },
    ]) {
      expect(agentCheckDue(migration(reported as never), late)).toBe(false);
    }
  });
});

function agentPod(
  name: string,
  ready: "True" | "False" | undefined,
  opts: { since?: number; created?: number; phase?: string; waiting?: string } = {},
): V1Pod {
  return {
    metadata: {
      name,
      namespace: "edgeshift-system",
      creationTimestamp: new Date(opts.created ?? T0 - 3_600_000),
    },
    spec: { nodeName: "edge-1", containers: [{ name: "agent" }] },
    status: {
      phase: opts.phase ?? (ready === "True" ? "Running" : "Pending"),
      conditions: ready
        ? [
            {
              type: "Ready",
              status: ready,
              lastTransitionTime: new Date(opts.since ?? T0 - 3_600_000),
            },
          ]
        : [],
      containerStatuses: opts.waiting
        ? [
            {
              name: "agent",
              ready: false,
              restartCount: 3,
              image: "i",
              imageID: "",
              state: { waiting: { reason: opts.waiting, message: "back-off 40s" } },
            },
          ]
        : [],
    },
  };
}

const check = (pods: V1Pod[], now = T0 + AGENT_GRACE_MS) =>
  agentUnavailable({
    pods,
    node: "edge-1",
    daemonSet: "edgeshift-system/edgeshift-agent-en",
    now,
    graceMs: AGENT_GRACE_MS,
  });

describe("agentUnavailable", () => {
  it("is fine with a Ready agent pod on the node", () => {
    expect(check([agentPod("a-1", "True")])).toBeUndefined();
    // One Ready among others (a rollout's old and new pod).
    expect(check([agentPod("a-0", "False"), agentPod("a-1", "True")])).toBeUndefined();
  });

  it("says so when no agent pod runs on the node, naming the node and the DaemonSet", () => {
    expect(check([])).toBe(
      "no edge agent pod of DaemonSet edgeshift-system/edgeshift-agent-en runs on edge-1",
    );
  });

  it("says why the agent pod is not Ready when it has not been Ready for the grace period", () => {
    expect(
      check([agentPod("a-1", "False", { phase: "Running", waiting: "CrashLoopBackOff" })]),
    ).toBe(
      "the edge agent pod edgeshift-system/a-1 on edge-1 is not Ready: agent: CrashLoopBackOff: back-off 40s",
    );
    // Never scheduled or never started: no container status yet.
    expect(check([agentPod("a-1", undefined)])).toBe(
      "the edge agent pod edgeshift-system/a-1 on edge-1 is not Ready: Pending",
    );
  });

  it("waits for an agent pod that turned unready or was created within the grace period (a restart, a rollout)", () => {
    const now = T0 + AGENT_GRACE_MS;
    expect(check([agentPod("a-1", "False", { since: now - 1000 })], now)).toBeUndefined();
    expect(check([agentPod("a-1", undefined, { created: now - 1000 })], now)).toBeUndefined();
    expect(check([agentPod("a-1", "False", { since: now - AGENT_GRACE_MS })], now)).toMatch(
      /is not Ready/,
    );
  });

  it("counts a terminating agent pod as unavailable, after the grace period like any other", () => {
    const leaving = (since: number) => {
      const p = agentPod("a-0", "True");
      p.metadata = { ...p.metadata, deletionTimestamp: new Date(since) };
      return p;
    };
    const now = T0 + AGENT_GRACE_MS;
    expect(check([leaving(now - 1000)], now)).toBeUndefined();
    expect(check([leaving(now - AGENT_GRACE_MS)], now)).toBe(
      "the edge agent pod edgeshift-system/a-0 on edge-1 is not Ready: terminating",
    );
  });
});
