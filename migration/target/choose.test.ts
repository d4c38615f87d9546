import type { V1Node, V1Pod, V1Taint, V1Toleration } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { LabelSelector } from "../../operator/api/v1alpha1.ts";
import {
  type ChooseTargetInput,
  chooseTarget,
  MAX_MESSAGE_LENGTH,
  nodeArchitecture,
  podAdmitsNode,
  podRequests,
  toleratesTaint,
} from "./choose.ts";

const Mi = 2 ** 20;
const Gi = 2 ** 30;
const cloud: LabelSelector = { matchLabels: { tier: "cloud" } };

interface NodeOpts {
  labels?: Record<string, string>;
  ready?: boolean;
  unschedulable?: boolean;
  taints?: V1Taint[];
  cpu?: string;
  memory?: string;
  pods?: string;
  nodeInfoArch?: string;
  deleting?: boolean;
}

function node(name: string, o: NodeOpts = {}): V1Node {
  return {
    metadata: {
      name,
      labels: o.labels ?? { tier: "cloud", "kubernetes.io/arch": "amd64" },
      ...(o.deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { unschedulable: o.unschedulable, taints: o.taints },
    status: {
      conditions: [
        { type: "MemoryPressure", status: "False" },
        { type: "Ready", status: o.ready === false ? "False" : "True" },
      ],
      allocatable: { cpu: o.cpu ?? "4", memory: o.memory ?? "8Gi", pods: o.pods ?? "110" },
      ...(o.nodeInfoArch
        ? {
            nodeInfo: {
              architecture: o.nodeInfoArch,
              bootID: "",
              containerRuntimeVersion: "",
              kernelVersion: "",
              kubeProxyVersion: "",
              kubeletVersion: "",
              machineID: "",
              operatingSystem: "linux",
              osImage: "",
              systemUUID: "",
            },
          }
        : {}),
    },
  };
}

function pod(
  cpu: string | undefined,
  memory: string | undefined,
  extra: Partial<NonNullable<V1Pod["spec"]>> = {},
  phase = "Running",
  uid = "other",
): V1Pod {
  const requests: Record<string, string> = {};
  if (cpu) requests.cpu = cpu;
  if (memory) requests.memory = memory;
  return {
    metadata: { name: `p-${uid}`, namespace: "apps", uid },
    spec: { containers: [{ name: "app", resources: { requests } }], ...extra },
    status: { phase },
  };
}

const source = node("edge-1", { labels: { "kubernetes.io/arch": "amd64", tier: "edge" } });
const workload = (extra: Partial<NonNullable<V1Pod["spec"]>> = {}) =>
  pod("500m", "512Mi", extra, "Running", "self");

function input(over: Partial<ChooseTargetInput> = {}): ChooseTargetInput {
  return {
    pod: workload(),
    sourceNode: source,
    candidates: [node("cloud-a")],
    podsByNode: new Map(),
    cloudSelector: cloud,
    ...over,
  };
}

describe("podRequests", () => {
  it.each<[string, NonNullable<V1Pod["spec"]>, { cpu: number; memory: number }]>([
    [
      "requests of one container",
      { containers: [{ name: "a", resources: { requests: { cpu: "250m", memory: "64Mi" } } }] },
      { cpu: 250, memory: 64 * Mi },
    ],
    [
      "limit stands in for a missing request",
      { containers: [{ name: "a", resources: { limits: { cpu: "1", memory: "1Gi" } } }] },
      { cpu: 1000, memory: Gi },
    ],
    [
      "request wins over limit",
      {
        containers: [
          {
            name: "a",
            resources: { requests: { cpu: "100m" }, limits: { cpu: "2", memory: "128Mi" } },
          },
        ],
      },
      { cpu: 100, memory: 128 * Mi },
    ],
    [
      "app containers add up without float noise",
      {
        containers: [
          { name: "a", resources: { requests: { cpu: "100m", memory: "100Mi" } } },
          { name: "b", resources: { requests: { cpu: "200m", memory: "1.5Gi" } } },
        ],
      },
      { cpu: 300, memory: 100 * Mi + 1.5 * Gi },
    ],
    [
      "largest init container wins per resource over the app sum",
      {
        initContainers: [
          { name: "i1", resources: { requests: { cpu: "2", memory: "10Mi" } } },
          { name: "i2", resources: { requests: { cpu: "1", memory: "20Mi" } } },
        ],
        containers: [{ name: "a", resources: { requests: { cpu: "500m", memory: "1Gi" } } }],
      },
      { cpu: 2000, memory: Gi },
    ],
    [
      "sidecar init containers add to the app containers",
      {
        initContainers: [
          {
            name: "s",
            restartPolicy: "Always",
            resources: { requests: { cpu: "100m", memory: "16Mi" } },
          },
        ],
        containers: [{ name: "a", resources: { requests: { cpu: "500m", memory: "64Mi" } } }],
      },
      { cpu: 600, memory: 80 * Mi },
    ],
    [
      "an init container after a sidecar runs beside it",
      {
        initContainers: [
          {
            name: "s",
            restartPolicy: "Always",
            resources: { requests: { cpu: "500m", memory: "16Mi" } },
          },
          { name: "i", resources: { requests: { cpu: "1", memory: "16Mi" } } },
        ],
        containers: [{ name: "a", resources: { requests: { cpu: "100m", memory: "16Mi" } } }],
      },
      { cpu: 1500, memory: 32 * Mi },
    ],
    [
      "pod overhead is added",
      {
        overhead: { cpu: "250m", memory: "120Mi" },
        containers: [{ name: "a", resources: { requests: { cpu: "1", memory: "1Gi" } } }],
      },
      { cpu: 1250, memory: Gi + 120 * Mi },
    ],
    ["no resources", { containers: [{ name: "a" }] }, { cpu: 0, memory: 0 }],
    [
      "malformed quantity counts as zero",
      { containers: [{ name: "a", resources: { requests: { cpu: "lots", memory: "1Gi" } } }] },
      { cpu: 0, memory: Gi },
    ],
    [
      "fractional millicores round up like Quantity.MilliValue",
      { containers: [{ name: "a", resources: { requests: { cpu: "0.0001" } } }] },
      { cpu: 1, memory: 0 },
    ],
  ])("%s", (_name, spec, expected) => {
    expect(podRequests({ spec })).toEqual(expected);
  });
});

describe("toleratesTaint", () => {
  const taint: V1Taint = { key: "dedicated", value: "gpu", effect: "NoSchedule" };
  it.each<[string, V1Toleration, V1Taint, boolean]>([
    ["empty key with Exists tolerates everything", { operator: "Exists" }, taint, true],
    [
      "empty key with Exists tolerates NoExecute too",
      { operator: "Exists" },
      { key: "x", effect: "NoExecute" },
      true,
    ],
    ["Exists on the key, any value", { key: "dedicated", operator: "Exists" }, taint, true],
    ["Exists on another key", { key: "other", operator: "Exists" }, taint, false],
    [
      "Equal with the same value",
      { key: "dedicated", operator: "Equal", value: "gpu" },
      taint,
      true,
    ],
    [
      "Equal with another value",
      { key: "dedicated", operator: "Equal", value: "cpu" },
      taint,
      false,
    ],
    ["operator defaults to Equal", { key: "dedicated", value: "gpu" }, taint, true],
    ["operator defaults to Equal (mismatch)", { key: "dedicated", value: "x" }, taint, false],
    [
      "Equal without value matches a taint without value",
      { key: "k", operator: "Equal" },
      { key: "k", effect: "NoSchedule" },
      true,
    ],
    [
      "matching effect",
      { key: "dedicated", operator: "Exists", effect: "NoSchedule" },
      taint,
      true,
    ],
    ["other effect", { key: "dedicated", operator: "Exists", effect: "NoExecute" }, taint, false],
    [
      "empty effect matches every effect",
      { key: "dedicated", operator: "Exists", effect: "" },
      { ...taint, effect: "NoExecute" },
      true,
    ],
    ["unknown operator", { key: "dedicated", operator: "Gt", value: "gpu" }, taint, false],
  ])("%s", (_name, toleration, t, expected) => {
    expect(toleratesTaint(toleration, t)).toBe(expected);
  });
});

describe("nodeArchitecture", () => {
  it("prefers the label and falls back to nodeInfo", () => {
    expect(nodeArchitecture(node("n", { labels: { "kubernetes.io/arch": "arm64" } }))).toBe(
      "arm64",
    );
    expect(nodeArchitecture(node("n", { labels: {}, nodeInfoArch: "s390x" }))).toBe("s390x");
    expect(nodeArchitecture(node("n", { labels: {} }))).toBeUndefined();
  });
});

describe("podAdmitsNode", () => {
  const n = node("cloud-a", {
    labels: { tier: "cloud", zone: "z1", gen: "5", "kubernetes.io/arch": "amd64" },
  });
  const req = (terms: object[]) => ({
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms },
      },
    },
  });
  it.each<[string, Partial<NonNullable<V1Pod["spec"]>>, boolean]>([
    ["no rules", {}, true],
    ["nodeSelector matches", { nodeSelector: { tier: "cloud" } }, true],
    ["nodeSelector pins to edge", { nodeSelector: { tier: "edge" } }, false],
    [
      "In matches",
      req([{ matchExpressions: [{ key: "zone", operator: "In", values: ["z1"] }] }]),
      true,
    ],
    [
      "In misses",
      req([{ matchExpressions: [{ key: "zone", operator: "In", values: ["z2"] }] }]),
      false,
    ],
    [
      "NotIn on absent key",
      req([{ matchExpressions: [{ key: "x", operator: "NotIn", values: ["a"] }] }]),
      true,
    ],
    [
      "DoesNotExist on present key",
      req([{ matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }]),
      false,
    ],
    [
      "Gt numeric",
      req([{ matchExpressions: [{ key: "gen", operator: "Gt", values: ["4"] }] }]),
      true,
    ],
    [
      "Lt numeric",
      req([{ matchExpressions: [{ key: "gen", operator: "Lt", values: ["5"] }] }]),
      false,
    ],
    [
      "Gt on non-integer",
      req([{ matchExpressions: [{ key: "zone", operator: "Gt", values: ["1"] }] }]),
      false,
    ],
    [
      "terms are ORed",
      req([
        { matchExpressions: [{ key: "zone", operator: "In", values: ["z9"] }] },
        { matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-a"] }] },
      ]),
      true,
    ],
    [
      "expressions in a term are ANDed",
      req([
        {
          matchExpressions: [{ key: "zone", operator: "In", values: ["z1"] }],
          matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-b"] }],
        },
      ]),
      false,
    ],
    ["empty term matches nothing", req([{}]), false],
    [
      "unknown field",
      req([{ matchFields: [{ key: "spec.x", operator: "In", values: ["cloud-a"] }] }]),
      false,
    ],
  ])("%s", (_name, spec, expected) => {
    expect(podAdmitsNode({ spec: { containers: [], ...spec } }, n)).toBe(expected);
  });
});

describe("chooseTarget rejects a node", () => {
  const full = new Map([["cloud-a", [pod("3800m", "1Gi")]]]);
  const memFull = new Map([["cloud-a", [pod("100m", "7.8Gi")]]]);
  const manyPods = new Map([
    ["cloud-a", [pod("1m", "1Mi"), pod("1m", "1Mi", {}, "Running", "o2")]],
  ]);
  it.each<[string, Partial<ChooseTargetInput>, string]>([
    [
      "outside the cloud selector",
      {
        candidates: [node("cloud-a", { labels: { tier: "edge", "kubernetes.io/arch": "amd64" } })],
      },
      "does not match the cloud node selector",
    ],
    ["not Ready", { candidates: [node("cloud-a", { ready: false })] }, "not Ready"],
    [
      "without a Ready condition",
      {
        candidates: [{ ...node("cloud-a"), status: { ...node("cloud-a").status, conditions: [] } }],
      },
      "not Ready",
    ],
    ["cordoned", { candidates: [node("cloud-a", { unschedulable: true })] }, "unschedulable"],
    [
      "with a NoSchedule taint the pod does not tolerate",
      {
        candidates: [
          node("cloud-a", { taints: [{ key: "gpu", value: "yes", effect: "NoSchedule" }] }),
        ],
      },
      "untolerated taint gpu=yes:NoSchedule",
    ],
    [
      "with a NoExecute taint the pod does not tolerate",
      { candidates: [node("cloud-a", { taints: [{ key: "maint", effect: "NoExecute" }] })] },
      "untolerated taint maint:NoExecute",
    ],
    [
      "whose taint value the toleration does not equal",
      {
        pod: workload({ tolerations: [{ key: "gpu", operator: "Equal", value: "no" }] }),
        candidates: [
          node("cloud-a", { taints: [{ key: "gpu", value: "yes", effect: "NoSchedule" }] }),
        ],
      },
      "untolerated taint gpu=yes:NoSchedule",
    ],
    [
      "of another architecture",
      {
        candidates: [node("cloud-a", { labels: { tier: "cloud", "kubernetes.io/arch": "arm64" } })],
      },
      "architecture arm64, source is amd64",
    ],
    [
      "of another architecture per nodeInfo",
      { candidates: [node("cloud-a", { labels: { tier: "cloud" }, nodeInfoArch: "arm64" })] },
      "architecture arm64, source is amd64",
    ],
    [
      "of unknown architecture",
      { candidates: [node("cloud-a", { labels: { tier: "cloud" } })] },
      "architecture unknown, source is amd64",
    ],
    [
      "when the source architecture is unknown",
      { sourceNode: node("edge-1", { labels: {} }) },
      "source node architecture unknown",
    ],
    ["without cpu room", { podsByNode: full }, "insufficient cpu (requests 500m, free 200m of 4)"],
    [
      "without memory room",
      { podsByNode: memFull },
      "insufficient memory (requests 512Mi, free 204.8Mi of 8Gi)",
    ],
    [
      "without cpu allocatable",
      {
        candidates: [
          {
            ...node("cloud-a"),
            status: { ...node("cloud-a").status, allocatable: { memory: "8Gi", pods: "10" } },
          },
        ],
      },
      "insufficient cpu",
    ],
    [
      "at its pod limit",
      { candidates: [node("cloud-a", { pods: "2" })], podsByNode: manyPods },
      "too many pods (2 of 2)",
    ],
    [
      "the pod's nodeSelector excludes",
      { pod: workload({ nodeSelector: { tier: "edge" } }) },
      "pod's nodeSelector/required node affinity does not match",
    ],
    [
      "that is the source node",
      {
        candidates: [node("edge-1", { labels: { tier: "cloud", "kubernetes.io/arch": "amd64" } })],
      },
      "is the source node",
    ],
    ["being deleted", { candidates: [node("cloud-a", { deleting: true })] }, "is being deleted"],
  ])("%s", (_name, over, fragment) => {
    const auto = chooseTarget(input(over));
    expect(auto.ok).toBe(false);
    if (auto.ok) return;
    expect(auto.reason).toBe("NoTarget");
    expect(auto.message).toContain(fragment);

    const name = (over.candidates ?? [node("cloud-a")])[0]?.metadata?.name ?? "";
    const explicit = chooseTarget(input({ ...over, targetNode: name }));
    expect(explicit.ok).toBe(false);
    if (explicit.ok) return;
    expect(explicit.reason).toBe("TargetNotSuitable");
    expect(explicit.message).toContain(`Target node ${name}: `);
    expect(explicit.message).toContain(fragment);
  });
});

describe("chooseTarget accepts a node", () => {
  it.each<[string, Partial<ChooseTargetInput>]>([
    ["plain", {}],
    [
      "whose PreferNoSchedule taint is not a filter",
      { candidates: [node("cloud-a", { taints: [{ key: "soft", effect: "PreferNoSchedule" }] })] },
    ],
    [
      "whose taint the pod tolerates",
      {
        pod: workload({ tolerations: [{ key: "gpu", operator: "Exists", effect: "NoSchedule" }] }),
        candidates: [
          node("cloud-a", { taints: [{ key: "gpu", value: "yes", effect: "NoSchedule" }] }),
        ],
      },
    ],
    [
      "whose taints a tolerate-everything toleration covers",
      {
        pod: workload({ tolerations: [{ operator: "Exists" }] }),
        candidates: [
          node("cloud-a", {
            taints: [
              { key: "a", effect: "NoSchedule" },
              { key: "b", value: "c", effect: "NoExecute" },
            ],
          }),
        ],
      },
    ],
    [
      "whose architecture only nodeInfo reports",
      { candidates: [node("cloud-a", { labels: { tier: "cloud" }, nodeInfoArch: "amd64" })] },
    ],
    [
      "with finished pods that do not hold resources",
      {
        podsByNode: new Map([
          [
            "cloud-a",
            [pod("4", "8Gi", {}, "Succeeded", "s1"), pod("4", "8Gi", {}, "Failed", "f1")],
          ],
        ]),
      },
    ],
    [
      "where the cache already shows the pod itself",
      { podsByNode: new Map([["cloud-a", [pod("3800m", "1Gi", {}, "Running", "self")]]]) },
    ],
    ["with exactly enough room", { podsByNode: new Map([["cloud-a", [pod("3500m", "7.5Gi")]]]) }],
    [
      "overcommitted (pods bound past the scheduler), for a pod that requests nothing",
      {
        pod: pod(undefined, undefined, {}, "Running", "self"),
        podsByNode: new Map([["cloud-a", [pod("5", "9Gi")]]]),
      },
    ],
    [
      "matching the pod's own required affinity",
      {
        pod: workload({
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [
                  { matchExpressions: [{ key: "tier", operator: "In", values: ["cloud"] }] },
                ],
              },
            },
          },
        }),
      },
    ],
  ])("%s", (_name, over) => {
    expect(chooseTarget(input(over))).toMatchObject({ ok: true, node: "cloud-a" });
    expect(chooseTarget(input({ ...over, targetNode: "cloud-a" }))).toMatchObject({
      ok: true,
      node: "cloud-a",
    });
  });
});

describe("chooseTarget ranking", () => {
  it.each<[string, V1Node[], Map<string, V1Pod[]>, string]>([
    [
      "the node with less requested cpu",
      [node("cloud-a"), node("cloud-b")],
      new Map([
        ["cloud-a", [pod("2", "1Gi")]],
        ["cloud-b", [pod("1", "1Gi")]],
      ]),
      "cloud-b",
    ],
    [
      "the larger node at equal absolute use (shares, not amounts)",
      [node("cloud-a"), node("cloud-b", { cpu: "16", memory: "32Gi" })],
      new Map([
        ["cloud-a", [pod("1", "1Gi")]],
        ["cloud-b", [pod("1", "1Gi")]],
      ]),
      "cloud-b",
    ],
    [
      "the lower of max(cpu, memory) share after placement",
      // After placement a: cpu 62.5%, memory 12.5%; b: cpu 25%, memory 68.75%;
      // c: cpu 50%, memory 31.25%. A sum of shares would pick a; the max picks c.
      [node("cloud-a"), node("cloud-b"), node("cloud-c")],
      new Map([
        ["cloud-a", [pod("2", "512Mi")]],
        ["cloud-b", [pod("500m", "5Gi")]],
        ["cloud-c", [pod("1500m", "2Gi")]],
      ]),
      "cloud-c",
    ],
    ["ties by name", [node("cloud-b"), node("cloud-a")], new Map(), "cloud-a"],
    [
      "a suitable node over a less loaded unsuitable one",
      [node("cloud-a", { ready: false }), node("cloud-b")],
      new Map([["cloud-b", [pod("3", "6Gi")]]]),
      "cloud-b",
    ],
  ])("picks %s", (_name, candidates, podsByNode, expected) => {
    const r = chooseTarget(input({ candidates, podsByNode }));
    expect(r).toMatchObject({ ok: true, node: expected });
  });

  it("says why it picked the node", () => {
    const r = chooseTarget(input({ candidates: [node("cloud-a"), node("cloud-b")] }));
    expect(r).toEqual({
      ok: true,
      node: "cloud-a",
      reason: "Least loaded of 2 suitable cloud nodes (cpu 13%, memory 6% after placement)",
    });
  });

  it("honours a suitable explicit target over a less loaded node", () => {
    const r = chooseTarget(
      input({
        candidates: [node("cloud-a"), node("cloud-b")],
        podsByNode: new Map([["cloud-b", [pod("3", "6Gi")]]]),
        targetNode: "cloud-b",
      }),
    );
    expect(r).toMatchObject({ ok: true, node: "cloud-b" });
    if (r.ok) expect(r.reason).toContain("Requested target cloud-b");
  });

  it("does not fall back to another node when the explicit target fails", () => {
    const r = chooseTarget(
      input({
        candidates: [node("cloud-a"), node("cloud-b", { ready: false })],
        targetNode: "cloud-b",
      }),
    );
    expect(r).toEqual({
      ok: false,
      reason: "TargetNotSuitable",
      message: "Target node cloud-b: not Ready",
    });
  });

  it("names every failed check of the explicit target", () => {
    const r = chooseTarget(
      input({
        candidates: [node("cloud-a", { ready: false, unschedulable: true })],
        targetNode: "cloud-a",
      }),
    );
    expect(r).toEqual({
      ok: false,
      reason: "TargetNotSuitable",
      message: "Target node cloud-a: not Ready; unschedulable (cordoned)",
    });
  });

  it("refuses an explicit target that is not a candidate", () => {
    expect(chooseTarget(input({ targetNode: "ghost" }))).toEqual({
      ok: false,
      reason: "TargetNotSuitable",
      message: "Target node ghost not found",
    });
  });
});

describe("chooseTarget NoTarget message", () => {
  it("lists each rejected candidate by name and counts nodes outside the selector", () => {
    const r = chooseTarget(
      input({
        candidates: [
          node("cloud-b", { unschedulable: true }),
          node("cloud-a", { ready: false }),
          node("edge-2", { labels: { tier: "edge", "kubernetes.io/arch": "amd64" } }),
          node("edge-3", { labels: { tier: "edge", "kubernetes.io/arch": "amd64" } }),
        ],
      }),
    );
    expect(r).toEqual({
      ok: false,
      reason: "NoTarget",
      message:
        "No cloud node fits the pod: cloud-a: not Ready; cloud-b: unschedulable (cordoned); 2 nodes do not match the cloud node selector",
    });
  });

  it("says so when there are no candidates", () => {
    const r = chooseTarget(input({ candidates: [] }));
    expect(r).toMatchObject({ ok: false, reason: "NoTarget" });
    if (!r.ok) expect(r.message).toContain("no candidate nodes");
  });

  it("stays bounded with thousands of rejected nodes", () => {
    const candidates = Array.from({ length: 2000 }, (_, i) =>
      node(`cloud-${String(i).padStart(4, "0")}`, { ready: false }),
    );
    const r = chooseTarget(input({ candidates }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
    expect(r.message).toMatch(/^No cloud node fits the pod: cloud-0000: not Ready; /);
    const listed = r.message.match(/cloud-\d{4}: not Ready/g)?.length ?? 0;
    expect(r.message).toMatch(new RegExp(`; and ${2000 - listed} more$`));
  });

  it("cuts one overlong reason", () => {
    const taints = Array.from({ length: 200 }, (_, i) => ({
      key: `taint-${i}`,
      effect: "NoSchedule",
    }));
    const r = chooseTarget(
      input({ candidates: [node("cloud-a", { taints })], targetNode: "cloud-a" }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
    expect(r.message).toMatch(
      /^Target node cloud-a: untolerated taint taint-0:NoSchedule, .*\.\.\.$/,
    );
  });
});

describe("chooseTarget for a checkpoint restore (runtime family and restore support)", () => {
  const withRuntime = (n: V1Node, rt: string, restore?: "enabled" | "disabled"): V1Node => ({
    ...n,
    metadata: {
      ...n.metadata,
      annotations: restore ? { "edgeshift.dev/checkpoint-restore": restore } : undefined,
    },
    status: {
      ...n.status,
      nodeInfo: { ...(n.status?.nodeInfo as object), containerRuntimeVersion: rt } as never,
    },
  });
  const ctdSource = withRuntime(source, "containerd://2.3.7", "enabled");
  const crioSource = withRuntime(source, "cri-o://1.36.3");
  const ctd = withRuntime(node("cloud-ctd", { cpu: "2" }), "containerd://2.3.7", "enabled");
  const crio = withRuntime(node("cloud-crio", { cpu: "16" }), "cri-o://1.36.3");
  const unconfirmed = withRuntime(node("cloud-norestore", { cpu: "16" }), "containerd://2.3.7");

  it("picks a node of the source's runtime family even when another is less loaded", () => {
    const r = chooseTarget(
      input({ sourceNode: ctdSource, candidates: [crio, ctd, unconfirmed], checkpoint: true }),
    );
    expect(r).toMatchObject({ ok: true, node: "cloud-ctd" });
    const back = chooseTarget(
      input({ sourceNode: crioSource, candidates: [crio, ctd, unconfirmed], checkpoint: true }),
    );
    expect(back).toMatchObject({ ok: true, node: "cloud-crio" });
  });

  it("ignores the runtime for the restart policy", () => {
    const r = chooseTarget(input({ sourceNode: ctdSource, candidates: [crio, ctd, unconfirmed] }));
    expect(r).toMatchObject({ ok: true, node: "cloud-crio" });
  });

  it("says why each cloud node cannot restore when none can", () => {
    const r = chooseTarget(
      input({ sourceNode: ctdSource, candidates: [crio, unconfirmed], checkpoint: true }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe("NoTarget");
    expect(r.message).toBe(
      "No cloud node fits the pod: cloud-crio: runtime cri-o://1.36.3 cannot restore a checkpoint taken by containerd://2.3.7 (a checkpoint restores only on the runtime family that wrote it); " +
        "cloud-norestore: restore unconfirmed: containerd://2.3.7 restores checkpoints only with enable_experimental_restore_via_create = true, and the node has no annotation edgeshift.dev/checkpoint-restore=enabled",
    );
  });

  it("refuses a requested target that cannot restore, with the reason", () => {
    const r = chooseTarget(
      input({
        sourceNode: ctdSource,
        candidates: [ctd, unconfirmed],
        targetNode: "cloud-norestore",
        checkpoint: true,
      }),
    );
    expect(r).toMatchObject({ ok: false, reason: "TargetNotSuitable" });
    if (r.ok) return;
    expect(r.message).toMatch(/^Target node cloud-norestore: restore unconfirmed: /);
    expect(r.message.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
    expect(r.message).not.toContain("...");
  });

  it("refuses a node the admin marked disabled, and a runtime that cannot restore at all", () => {
    const off = withRuntime(node("cloud-off"), "containerd://2.1.0", "disabled");
    const old = withRuntime(node("cloud-old"), "containerd://1.7.35", "enabled");
    const r = chooseTarget(
      input({ sourceNode: ctdSource, candidates: [off, old], checkpoint: true }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain(
      "cloud-off: restore disabled by the annotation edgeshift.dev/checkpoint-restore=disabled",
    );
    expect(r.message).toContain("cloud-old: containerd://1.7.35 cannot restore checkpoints");
  });

  it("refuses every target when the source's runtime is unknown", () => {
    const r = chooseTarget(input({ candidates: [ctd], checkpoint: true }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain("cloud-ctd: the source node's runtime is unknown");
  });
});

describe("chooseTarget for a return to the edge (side edge)", () => {
  const rt = (n: V1Node, version: string): V1Node => ({
    ...n,
    metadata: { ...n.metadata, annotations: { "edgeshift.dev/checkpoint-restore": "enabled" } },
    status: {
      ...n.status,
      nodeInfo: { ...(n.status?.nodeInfo as object), containerRuntimeVersion: version } as never,
    },
  });
  const edgeLabels = { tier: "edge", "kubernetes.io/arch": "amd64" };
  const fromCloud = rt(node("cloud-a"), "containerd://2.3.7");
  const edge1 = rt(node("edge-1", { labels: edgeLabels, cpu: "2" }), "containerd://2.3.7");
  const edgeOld = rt(node("edge-old", { labels: edgeLabels, cpu: "16" }), "containerd://1.7.35");
  const back = (over: Partial<ChooseTargetInput> = {}) =>
    chooseTarget(
      input({
        sourceNode: fromCloud,
        candidates: [edgeOld, edge1],
        cloudSelector: { matchLabels: { tier: "edge" } },
        side: "edge",
        targetMustCheckpoint: true,
        checkpoint: true,
        ...over,
      }),
    );

  it("picks an edge node that can checkpoint and restore, and says so", () => {
    const r = back();
    expect(r).toMatchObject({ ok: true, node: "edge-1" });
    if (r.ok) expect(r.reason).toMatch(/^Least loaded of 1 suitable edge node /);
  });

  it("does not hold a restored pod to the pin of its move to the cloud", () => {
    const restored = workload({
      nodeName: "cloud-a",
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-a"] }] },
            ],
          },
        },
      },
    });
    expect(back({ pod: restored }).ok).toBe(false);
    restored.metadata = { ...restored.metadata, labels: { "edgeshift.dev/migration": "web-1" } };
    expect(back({ pod: restored })).toMatchObject({ ok: true, node: "edge-1" });
  });

  it("keeps the pod in the cloud when every edge node is full, cordoned or cannot checkpoint", () => {
    const busy = new Map([["edge-1", [pod("1900m", "1Gi")]]]);
    const full = back({ podsByNode: busy });
    expect(full.ok).toBe(false);
    if (full.ok) return;
    expect(full.message).toMatch(/^No edge node fits the pod: /);
    expect(full.message).toContain("edge-1: insufficient cpu (requests 500m, free 100m of 2)");
    expect(full.message).toContain("edge-old: containerd://1.7.35 cannot restore checkpoints");
    expect(full.message).toContain("cannot checkpoint");
    const cordoned = rt(
      node("edge-1", { labels: edgeLabels, unschedulable: true }),
      "containerd://2.3.7",
    );
    const r = back({ candidates: [cordoned] });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain("edge-1: unschedulable (cordoned)");
    const outside = back({ candidates: [node("cloud-b")] });
    if (!outside.ok) expect(outside.message).toContain("does not match the edge node selector");
  });
});
