import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { V1Node, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { parseAppMetricSpec } from "../../sidecar/app-metric.ts";
import {
  eligibility,
  MONITOR_UID,
  missingMonitors,
  monitoredContainers,
  monitorName,
} from "./inject.ts";

const node: V1Node = { status: { allocatable: { cpu: "4", memory: "8Gi" } } };
const settings = { image: "img:1", natsUrl: "nats://n:4222", intervalSeconds: 2 };

function pod(over: Partial<V1Pod> = {}, meta: Partial<NonNullable<V1Pod["metadata"]>> = {}): V1Pod {
  return {
    metadata: { name: "web", namespace: "apps", uid: "u-1", labels: { app: "web" }, ...meta },
    spec: {
      nodeName: "edge-1",
      containers: [
        { name: "app", resources: { limits: { cpu: "500m", memory: "256Mi" } } },
        { name: "sidecar" },
      ],
    },
    status: { phase: "Running" },
    ...over,
  };
}

describe("eligibility", () => {
  it.each([
    ["running pod", pod(), undefined, true],
    ["pending pod", pod({ status: { phase: "Pending" } }), undefined, false],
    ["opted out", pod({}, { annotations: { "edgeshift.dev/migrate": "false" } }), undefined, false],
    [
      "mirror pod",
      pod({}, { annotations: { "kubernetes.io/config.mirror": "x" } }),
      undefined,
      false,
    ],
    [
      "DaemonSet pod",
      pod(
        {},
        { ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "d", uid: "x" }] },
      ),
      undefined,
      false,
    ],
    ["operator namespace", pod({}, { namespace: "edgeshift-system" }), undefined, false],
    [
      "edgeshift's own",
      pod({}, { labels: { "app.kubernetes.io/part-of": "edgeshift" } }),
      undefined,
      false,
    ],
    ["namespace not selected", pod(), { namespaces: ["other"] }, false],
    ["namespace excluded", pod(), { excludeNamespaces: ["apps"] }, false],
    ["labels not selected", pod(), { selector: { matchLabels: { app: "db" } } }, false],
    [
      "labels selected",
      pod(),
      { selector: { matchLabels: { app: "web" } }, namespaces: ["apps"] },
      true,
    ],
    ["terminating", pod({}, { deletionTimestamp: new Date() }), undefined, false],
  ])("%s", (_name, p, selection, eligible) => {
    expect(eligibility(p, selection, "edgeshift-system").eligible).toBe(eligible);
  });
});

describe("missingMonitors", () => {
  it("adds one monitor per app container with its limit, or the node's allocatable", () => {
    const m = missingMonitors(pod(), node, settings);
    expect(m.map((c) => [c.name, c.targetContainerName])).toEqual([
      ["edgeshift-mon-app", "app"],
      ["edgeshift-mon-sidecar", "sidecar"],
    ]);
    const env = (i: number, k: string) => m[i]?.env?.find((e) => e.name === k);
    expect(env(0, "EDGESHIFT_CPU_LIMIT_CORES")?.value).toBe("0.5");
    expect(env(0, "EDGESHIFT_MEMORY_LIMIT_BYTES")?.value).toBe(String(256 * 2 ** 20));
    expect(env(1, "EDGESHIFT_CPU_LIMIT_CORES")?.value).toBe("4");
    expect(env(0, "EDGESHIFT_INTERVAL_SECONDS")?.value).toBe("2");
    expect(env(0, "EDGESHIFT_SIGNING_KEY")?.valueFrom?.secretKeyRef).toEqual({
      name: "edgeshift-monitor-u-1",
      key: "app",
    });
    expect(env(0, "EDGESHIFT_SIGNING_KEY")?.value).toBeUndefined();
  });

  it("gives the application's metric to the monitor of the container that declares its port, with defaults", () => {
    const p = pod();
    const sidecar = p.spec?.containers[1];
    if (sidecar) sidecar.ports = [{ containerPort: 9090 }];
    const application = {
      port: 9090,
      metric: "http_requests_total",
      matchers: [{ label: "code", value: "200" }],
      type: "Counter" as const,
      triggerValue: 100,
    };
    const m = missingMonitors(p, node, { ...settings, application });
    const app = (i: number) => m[i]?.env?.find((e) => e.name === "EDGESHIFT_APP_METRIC")?.value;
    expect(app(0)).toBeUndefined();
    expect(JSON.parse(app(1) ?? "{}")).toEqual({
      port: 9090,
      path: "/metrics",
      metric: "http_requests_total",
      matchers: [{ label: "code", operator: "=", value: "200" }],
      type: "Counter",
      per: "Second",
    });
    // What the monitor reads back, exactly (sidecar/app-metric.ts).
    expect(parseAppMetricSpec(app(1) ?? "")).toEqual(JSON.parse(app(1) ?? "{}"));
    // No container declares it: the first container's monitor reads it.
    const first = missingMonitors(pod(), node, { ...settings, application });
    expect(first.map((c) => c.env?.some((e) => e.name === "EDGESHIFT_APP_METRIC"))).toEqual([
      true,
      false,
    ]);
  });

  it("carries every field Pod Security restricted checks, as the image's own non-root user", () => {
    // A pod running as root must not hand its user to the monitor.
    const p = pod({
      spec: {
        ...pod().spec,
        containers: pod().spec?.containers ?? [],
        securityContext: { runAsUser: 0 },
      },
    });
    for (const m of missingMonitors(p, node, settings)) {
      expect(m.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: MONITOR_UID,
        runAsGroup: MONITOR_UID,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
      });
    }
    // The kubelet checks runAsNonRoot against this user, which the image must also run as.
    const dockerfile = readFileSync(resolve(import.meta.dirname, "../../Dockerfile"), "utf8");
    expect(dockerfile).toMatch(new RegExp(`^USER ${MONITOR_UID}:${MONITOR_UID}$`, "m"));
  });

  it("adds nothing for containers that already have their monitor", () => {
    const p = pod();
    if (p.spec) p.spec.ephemeralContainers = [{ name: "edgeshift-mon-app" }];
    expect(missingMonitors(p, node, settings).map((c) => c.targetContainerName)).toEqual([
      "sidecar",
    ]);
    expect(monitoredContainers(p)).toBe(1);
  });

  it("waits when neither the container nor the node gives a limit", () => {
    expect(missingMonitors(pod(), undefined, settings).map((c) => c.targetContainerName)).toEqual([
      "app",
    ]);
  });

  it("keeps long container names valid DNS labels and distinct", () => {
    const long = "a".repeat(63);
    const other = `${"a".repeat(62)}b`;
    expect(monitorName(long)).toHaveLength(63);
    expect(monitorName(long)).not.toBe(monitorName(other));
    expect(monitorName(long)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  });
});
