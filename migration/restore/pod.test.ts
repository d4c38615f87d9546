import { createHash } from "node:crypto";
import type { V1Node, V1OwnerReference, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { labelValueError, matchesLabelSelector } from "../../operator/api/labels.ts";
import { EDGENODE_LABEL, type LabelSelector, type Migration } from "../../operator/api/v1alpha1.ts";
import { podAdmitsNode } from "../target/choose.ts";
import {
  BASE_IMAGES_ANNOTATION,
  baseImages,
  buildRestorePod,
  HIDDEN_VALUE,
  HOME_NODE_LABEL,
  isManagedAnnotation,
  JOB_TRACKING_FINALIZER,
  MIGRATION_POD_LABEL,
  migratedContainers,
  ownerKind,
  type RestorePodInput,
  type RevealPatch,
  restorePodName,
  revealRecord,
  revealToOwner,
  toLabelValue,
  unpinned,
} from "./pod.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const sha8 = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 8);

const rsRef: V1OwnerReference = {
  apiVersion: "apps/v1",
  kind: "ReplicaSet",
  name: "web-7d9f8",
  uid: "rs-uid",
  controller: true,
  blockOwnerDeletion: true,
};
const jobRef: V1OwnerReference = {
  apiVersion: "batch/v1",
  kind: "Job",
  name: "crunch",
  uid: "job-uid",
  controller: true,
  blockOwnerDeletion: true,
};
const plainRef: V1OwnerReference = {
  apiVersion: "example.com/v1",
  kind: "Thing",
  name: "t",
  uid: "t-uid",
};

function original(): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "web-7d9f8-abcde",
      generateName: "web-7d9f8-",
      namespace: "shop",
      uid: "pod-uid",
      resourceVersion: "4711",
      creationTimestamp: new Date("2024-05-01T10:00:00Z"),
      managedFields: [{ manager: "kube-controller-manager", operation: "Update" }],
      labels: { app: "web", tier: "frontend", "pod-template-hash": "7d9f8" },
      annotations: {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "controller.kubernetes.io/pod-deletion-cost": "-100",
        "kubernetes.io/config.seen": "2024-05-01T10:00:00Z",
        "kubernetes.io/config.source": "api",
        "kubectl.kubernetes.io/default-container": "app",
        "prometheus.io/scrape": "true",
      },
      ownerReferences: [rsRef, plainRef],
      finalizers: ["example.com/protect"],
    },
    spec: {
      nodeName: "edge-1",
      priorityClassName: "high",
      priority: 1000,
      preemptionPolicy: "PreemptLowerPriority",
      imagePullSecrets: [{ name: "regcred" }],
      nodeSelector: { "kubernetes.io/os": "linux" },
      tolerations: [{ key: "edge", operator: "Exists", effect: "NoSchedule" }],
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: "zone", operator: "In", values: ["z1"] }] },
              { matchExpressions: [{ key: "zone", operator: "In", values: ["z2"] }] },
            ],
          },
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 10,
              preference: { matchExpressions: [{ key: "ssd", operator: "Exists" }] },
            },
          ],
        },
        podAntiAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [
            {
              topologyKey: "kubernetes.io/hostname",
              labelSelector: { matchLabels: { app: "db" } },
            },
          ],
        },
      },
      volumes: [
        { name: "data", hostPath: { path: "/srv/data" } },
        { name: "cfg", configMap: { name: "web-cfg" } },
        {
          name: "kube-api-access-x1",
          projected: { sources: [{ serviceAccountToken: { path: "token" } }] },
        },
      ],
      containers: [
        {
          name: "app",
          image: "registry.local/web:1",
          imagePullPolicy: "IfNotPresent",
          volumeMounts: [
            { name: "data", mountPath: "/data" },
            { name: "cfg", mountPath: "/etc/web", readOnly: true },
            {
              name: "kube-api-access-x1",
              mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
              readOnly: true,
            },
          ],
          resources: { requests: { cpu: "500m", memory: "256Mi" } },
        },
        {
          name: "logger",
          image: "registry.local/logger:2",
          imagePullPolicy: "IfNotPresent",
          volumeMounts: [{ name: "data", mountPath: "/data", readOnly: true }],
        },
      ],
      ephemeralContainers: [
        { name: "edgeshift-mon-app", image: "edgeshift/monitor:1", targetContainerName: "app" },
      ],
    },
    status: { phase: "Running", podIP: "10.0.0.7", hostIP: "192.168.1.10" },
  };
}

function migration(over: Partial<Migration["spec"]> = {}, uid = "mig-uid-1"): Migration {
  return {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "Migration",
    metadata: { name: "web-7d9f8-abcde", namespace: "shop", uid },
    spec: { podName: "web-7d9f8-abcde", containers: ["app"], ...over },
    status: { sourceNode: "edge-1" },
  };
}

const CKPT = "registry.cloud/edgeshift/checkpoints:web-app-1";

function build(over: Partial<RestorePodInput> = {}): V1Pod {
  return buildRestorePod({
    pod: original(),
    migration: migration(),
    targetNode: "cloud-a",
    policy: "checkpoint",
    images: { app: CKPT },
    pullSecret: "edgeshift-registry",
    hideFromOwner: false,
    ...over,
  });
}

function withOwner(ref: V1OwnerReference | undefined, labels: Record<string, string>): V1Pod {
  const p = original();
  if (p.metadata) {
    p.metadata.ownerReferences = ref ? [ref] : undefined;
    p.metadata.labels = labels;
  }
  return p;
}

/** RFC 7386 merge of a labels patch, as the API server applies it. */
function applyPatch(pod: V1Pod, patch: RevealPatch | undefined): Record<string, string> {
  const labels = { ...(pod.metadata?.labels ?? {}) };
  for (const [k, v] of Object.entries(patch?.metadata.labels ?? {})) {
    if (v === null) delete labels[k];
    else labels[k] = v;
  }
  return labels;
}

function cloudNode(name: string, labels: Record<string, string> = {}): V1Node {
  return {
    metadata: { name, labels: { "kubernetes.io/os": "linux", zone: "z1", ...labels } },
  };
}

describe("ownerKind", () => {
  it.each<[string, V1OwnerReference[] | undefined, ReturnType<typeof ownerKind>["kind"], string?]>([
    ["bare pod", undefined, "None"],
    ["only a non-controller owner", [plainRef], "None"],
    ["ReplicaSet", [plainRef, rsRef], "ReplicaSet"],
    ["Job", [jobRef], "Job"],
    [
      "StatefulSet",
      [{ apiVersion: "apps/v1", kind: "StatefulSet", name: "s", uid: "u", controller: true }],
      "Unsupported",
      "StatefulSet",
    ],
    [
      "DaemonSet",
      [{ apiVersion: "apps/v1", kind: "DaemonSet", name: "d", uid: "u", controller: true }],
      "Unsupported",
      "DaemonSet",
    ],
    [
      "ReplicationController",
      [{ apiVersion: "v1", kind: "ReplicationController", name: "r", uid: "u", controller: true }],
      "Unsupported",
      "ReplicationController",
    ],
    [
      "a custom resource called Job",
      [{ apiVersion: "example.com/v1", kind: "Job", name: "j", uid: "u", controller: true }],
      "Unsupported",
      "Job.example.com",
    ],
    [
      "a Node (static pod mirror)",
      [{ apiVersion: "v1", kind: "Node", name: "edge-1", uid: "u", controller: true }],
      "Unsupported",
      "Node",
    ],
  ])("%s", (_name, refs, kind, unsupportedKind) => {
    const owner = ownerKind({ metadata: { ownerReferences: refs } });
    expect(owner.kind).toBe(kind);
    if (owner.kind === "Unsupported") expect(owner.ownerKind).toBe(unsupportedKind);
    if (owner.kind === "Job" || owner.kind === "ReplicaSet")
      expect(owner.ref.controller).toBe(true);
  });
});

describe("restorePodName", () => {
  it.each<[string, string, string]>([
    ["short name", "web-abc", `web-abc-${sha8("mig-uid-1")}`],
    ["uppercase and dots", "Web.Shop_1", `web-shop-1-${sha8("mig-uid-1")}`],
    ["long name is cut to a DNS label", "a".repeat(80), `${"a".repeat(54)}-${sha8("mig-uid-1")}`],
    [
      "cut does not leave a trailing dash",
      `${"b".repeat(53)}-xyz`,
      `${"b".repeat(53)}-${sha8("mig-uid-1")}`,
    ],
    ["nothing usable", "...", `pod-${sha8("mig-uid-1")}`],
  ])("%s", (_name, podName, expected) => {
    const name = restorePodName(podName, "mig-uid-1");
    expect(name).toBe(expected);
    expect(name).toMatch(DNS_LABEL);
  });

  it("depends on the migration uid and nothing else", () => {
    expect(restorePodName("web", "u1")).toBe(restorePodName("web", "u1"));
    expect(restorePodName("web", "u1")).not.toBe(restorePodName("web", "u2"));
    expect(() => restorePodName("web", "")).toThrow(/uid/);
  });
});

describe("toLabelValue", () => {
  it.each(["web", "web-7d9f8-abcde", "a.b_c", "x".repeat(63), ""])("keeps valid %j", (v) => {
    expect(toLabelValue(v)).toBe(v);
  });

  it.each(["n".repeat(64), `${"node.example.com.".repeat(10)}x`, "-leading", "has space"])(
    "makes %j valid and distinct",
    (v) => {
      const out = toLabelValue(v);
      expect(labelValueError(out)).toBeUndefined();
      expect(out.endsWith(sha8(v))).toBe(true);
      expect(toLabelValue(`${v}2`)).not.toBe(out);
    },
  );
});

describe("isManagedAnnotation", () => {
  it.each<[string, boolean]>([
    ["kubectl.kubernetes.io/last-applied-configuration", true],
    ["controller.kubernetes.io/pod-deletion-cost", true],
    ["kubernetes.io/config.seen", true],
    ["kubernetes.io/config.hash", true],
    ["kubernetes.io/config.mirror", true],
    ["kubernetes.io/limit-ranger", true],
    ["cni.projectcalico.org/podIP", true],
    ["kubectl.kubernetes.io/default-container", false],
    ["kubectl.kubernetes.io/restartedAt", false],
    ["kubernetes.io/egress-bandwidth", false],
    ["batch.kubernetes.io/job-completion-index", false],
    ["prometheus.io/scrape", false],
  ])("%s -> %s", (key, managed) => {
    expect(isManagedAnnotation(key)).toBe(managed);
  });
});

describe("buildRestorePod (checkpoint policy)", () => {
  const src = original();
  const p = build();

  it("is named after the pod and the migration, in the pod's namespace", () => {
    expect(p.metadata?.name).toBe(`web-7d9f8-abcde-${sha8("mig-uid-1")}`);
    expect(p.metadata?.namespace).toBe("shop");
    expect(p.apiVersion).toBe("v1");
    expect(p.kind).toBe("Pod");
  });

  it("keeps the labels and links the pod to its migration and home node", () => {
    expect(p.metadata?.labels).toEqual({
      ...src.metadata?.labels,
      [MIGRATION_POD_LABEL]: "web-7d9f8-abcde",
      [HOME_NODE_LABEL]: "edge-1",
    });
  });

  it("drops controller-managed annotations and keeps the rest", () => {
    expect(p.metadata?.annotations).toEqual({
      "kubectl.kubernetes.io/default-container": "app",
      "prometheus.io/scrape": "true",
      // The workload image behind the checkpoint image, for the pod's next move.
      [BASE_IMAGES_ANNOTATION]: JSON.stringify({ app: "registry.local/web:1" }),
    });
  });

  it("drops server-set metadata, status and the original's finalizers", () => {
    for (const k of [
      "uid",
      "resourceVersion",
      "creationTimestamp",
      "managedFields",
      "generateName",
      "finalizers",
    ]) {
      expect(p.metadata).not.toHaveProperty(k);
    }
    expect(p).not.toHaveProperty("status");
  });

  it("keeps the owner references", () => {
    expect(p.metadata?.ownerReferences).toEqual([rsRef, plainRef]);
  });

  it("keeps every volume and volume mount", () => {
    expect(p.spec?.volumes).toEqual(src.spec?.volumes);
    expect(p.spec?.containers.map((c) => c.volumeMounts)).toEqual(
      src.spec?.containers.map((c) => c.volumeMounts),
    );
  });

  it("swaps the migrated container's image for its checkpoint and always pulls one named by a tag", () => {
    const [app, logger] = p.spec?.containers ?? [];
    expect(app).toEqual({ ...src.spec?.containers[0], image: CKPT, imagePullPolicy: "Always" });
    expect(logger).toEqual(src.spec?.containers[1]);
  });

  it("removes the ephemeral containers, nodeName and copied priority values", () => {
    expect(p.spec).not.toHaveProperty("ephemeralContainers");
    expect(p.spec).not.toHaveProperty("nodeName");
    expect(p.spec).not.toHaveProperty("priority");
    expect(p.spec).not.toHaveProperty("preemptionPolicy");
    expect(p.spec?.priorityClassName).toBe("high");
    expect(p.spec?.nodeSelector).toEqual(src.spec?.nodeSelector);
    expect(p.spec?.tolerations).toEqual(src.spec?.tolerations);
  });

  it("ANDs the target pin into every required node selector term and keeps the rest", () => {
    const pin = { key: "metadata.name", operator: "In", values: ["cloud-a"] };
    expect(p.spec?.affinity).toEqual({
      ...src.spec?.affinity,
      nodeAffinity: {
        ...src.spec?.affinity?.nodeAffinity,
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            {
              matchExpressions: [{ key: "zone", operator: "In", values: ["z1"] }],
              matchFields: [pin],
            },
            {
              matchExpressions: [{ key: "zone", operator: "In", values: ["z2"] }],
              matchFields: [pin],
            },
          ],
        },
      },
    });
  });

  it("schedules only onto the target, and only if the pod's own rules allow it", () => {
    expect(podAdmitsNode(p, cloudNode("cloud-a"))).toBe(true);
    expect(podAdmitsNode(p, cloudNode("cloud-b"))).toBe(false);
    expect(podAdmitsNode(p, cloudNode("cloud-a", { zone: "z3" }))).toBe(false);
    expect(podAdmitsNode(p, cloudNode("edge-1"))).toBe(false);
  });

  it("adds the registry pull secret once", () => {
    expect(p.spec?.imagePullSecrets).toEqual([{ name: "regcred" }, { name: "edgeshift-registry" }]);
    expect(build({ pullSecret: "regcred" }).spec?.imagePullSecrets).toEqual([{ name: "regcred" }]);
    expect(build({ pullSecret: undefined }).spec?.imagePullSecrets).toEqual([{ name: "regcred" }]);
  });

  it("is deterministic and leaves the original untouched", () => {
    const pod = original();
    const a = build({ pod });
    expect(pod).toEqual(original());
    expect(build({ pod })).toEqual(a);
  });

  it("pins with a new term when the pod has no required node affinity", () => {
    const pod = original();
    if (pod.spec) pod.spec.affinity = undefined;
    expect(build({ pod }).spec?.affinity).toEqual({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-a"] }] },
          ],
        },
      },
    });
  });

  it("pinning a pinned pod again changes nothing", () => {
    const once = build();
    const twice = build({ pod: { ...once, spec: { ...once.spec, nodeName: "edge-1" } } as V1Pod });
    expect(twice.spec?.affinity).toEqual(once.spec?.affinity);
  });

  it("uses the pod's node when the migration has no source node yet", () => {
    const m = migration();
    m.status = undefined;
    const pod = original();
    if (pod.spec) pod.spec.nodeName = "edge-9";
    expect(build({ pod, migration: m }).metadata?.labels?.[HOME_NODE_LABEL]).toBe("edge-9");
  });

  it("names the EdgeNode it came from (a return finds its way by it); a pod back on the edge carries neither label", () => {
    const m = migration();
    if (m.status) m.status.edgeNode = "floor";
    const inCloud = build({ migration: m });
    expect(inCloud.metadata?.labels).toMatchObject({
      [HOME_NODE_LABEL]: "edge-1",
      [EDGENODE_LABEL]: "floor",
    });
    // The return: the cloud pod (with both labels) is the original.
    const back = migration({ direction: "ToEdge" }, "mig-uid-2");
    back.metadata.name = "web-back";
    if (back.status) back.status = { sourceNode: "cloud-a", edgeNode: "floor" };
    const home = buildRestorePod({
      pod: { ...inCloud, spec: { ...inCloud.spec, nodeName: "cloud-a" } } as V1Pod,
      migration: back,
      targetNode: "edge-1",
      policy: "checkpoint",
      images: { app: CKPT },
      hideFromOwner: true,
    });
    const labels = home.metadata?.labels ?? {};
    expect(labels[MIGRATION_POD_LABEL]).toBe("web-back");
    expect(labels).not.toHaveProperty(HOME_NODE_LABEL);
    expect(labels).not.toHaveProperty(EDGENODE_LABEL);
    // Revealed to its owner, the labels that are ours are not touched.
    const reveal = revealToOwner(home, inCloud);
    expect(reveal?.metadata.labels ?? {}).not.toHaveProperty(EDGENODE_LABEL);
    expect(reveal?.metadata.labels ?? {}).not.toHaveProperty(HOME_NODE_LABEL);
  });

  it("moves a restored pod on by its own rules, not the pin of its last move (unpinned)", () => {
    const pod = original();
    if (pod.spec)
      pod.spec.affinity = {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] },
            ],
          },
        },
      };
    const inCloud = {
      ...build({ pod }),
      spec: { ...build({ pod }).spec, nodeName: "cloud-a" },
    } as V1Pod;
    const terms = (p: V1Pod) =>
      p.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms;
    expect(terms(inCloud)).toEqual([
      {
        matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }],
        matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-a"] }],
      },
    ]);
    expect(terms(unpinned(inCloud))).toEqual([
      { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] },
    ]);
    const back = migration({ direction: "ToEdge" }, "mig-uid-2");
    back.status = { sourceNode: "cloud-a" };
    const home = buildRestorePod({
      pod: inCloud,
      migration: back,
      targetNode: "edge-1",
      policy: "checkpoint",
      images: { app: CKPT },
      hideFromOwner: false,
    });
    expect(terms(home)).toEqual([
      {
        matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }],
        matchFields: [{ key: "metadata.name", operator: "In", values: ["edge-1"] }],
      },
    ]);
    // Only a pin alone: the required node affinity goes with it, the rest stays.
    const plain = original();
    if (plain.spec?.affinity) delete plain.spec.affinity.nodeAffinity;
    const pinned = build({ pod: plain });
    const bare = { ...pinned, spec: { ...pinned.spec, nodeName: "cloud-a" } } as V1Pod;
    expect(terms(bare)).toEqual([
      { matchFields: [{ key: "metadata.name", operator: "In", values: ["cloud-a"] }] },
    ]);
    expect(terms(unpinned(bare))).toBeUndefined();
    expect(unpinned(bare).spec?.affinity?.podAntiAffinity).toEqual(
      bare.spec?.affinity?.podAntiAffinity,
    );
    // A pod no migration made keeps a pin of its own.
    const own = structuredClone(bare);
    delete own.metadata?.labels?.[MIGRATION_POD_LABEL];
    expect(unpinned(own)).toBe(own);
  });

  it("records the workload images behind its checkpoint images, through every move (baseImages)", () => {
    expect(baseImages(original())).toEqual({
      app: "registry.local/web:1",
      logger: "registry.local/logger:2",
    });
    const inCloud = build();
    expect(inCloud.spec?.containers[0]?.image).toBe(CKPT);
    expect(baseImages(inCloud)).toEqual({
      app: "registry.local/web:1",
      logger: "registry.local/logger:2",
    });
    // Moved again (back): still the workload's image, not the first checkpoint image.
    const again = buildRestorePod({
      pod: { ...inCloud, spec: { ...inCloud.spec, nodeName: "cloud-a" } } as V1Pod,
      migration: migration({ direction: "ToEdge" }, "mig-uid-2"),
      targetNode: "edge-1",
      policy: "checkpoint",
      images: { app: "registry.cloud/edgeshift/checkpoints:web-app-2" },
      hideFromOwner: false,
    });
    expect(again.metadata?.annotations?.[BASE_IMAGES_ANNOTATION]).toBe(
      JSON.stringify({ app: "registry.local/web:1" }),
    );
    // Only on a pod a migration made, and only as written.
    const forged = original();
    forged.metadata = {
      ...forged.metadata,
      annotations: { [BASE_IMAGES_ANNOTATION]: '{"app":"x"}' },
    };
    expect(baseImages(forged).app).toBe("registry.local/web:1");
    const garbled = structuredClone(inCloud);
    if (garbled.metadata?.annotations) garbled.metadata.annotations[BASE_IMAGES_ANNOTATION] = "{";
    expect(baseImages(garbled).app).toBe(CKPT);
    // The restart policy runs the workload's images: nothing to record.
    expect(build({ policy: "restart", images: {} }).metadata?.annotations).not.toHaveProperty(
      BASE_IMAGES_ANNOTATION,
    );
  });

  it("turns long migration and node names into valid label values", () => {
    const m = migration();
    m.metadata.name = `${"m".repeat(100)}.x`;
    if (m.status) m.status.sourceNode = `${"edge.example.com.".repeat(5)}n1`;
    const labels = build({ migration: m }).metadata?.labels ?? {};
    expect(labelValueError(labels[MIGRATION_POD_LABEL] ?? "x!")).toBeUndefined();
    expect(labelValueError(labels[HOME_NODE_LABEL] ?? "x!")).toBeUndefined();
  });
});

describe("buildRestorePod (restart policy)", () => {
  it("keeps every image and pull policy", () => {
    const p = build({ policy: "restart", images: {} });
    expect(p.spec?.containers).toEqual(original().spec?.containers);
  });

  it("ignores checkpoint images", () => {
    const p = build({ policy: "restart", images: { app: CKPT } });
    expect(p.spec?.containers[0]?.image).toBe("registry.local/web:1");
  });
});

describe("migratedContainers", () => {
  it("takes the named containers, or every app container", () => {
    expect(migratedContainers(original(), migration())).toEqual(["app"]);
    expect(migratedContainers(original(), migration({ containers: [] }))).toEqual([
      "app",
      "logger",
    ]);
    expect(migratedContainers(original(), migration({ containers: undefined }))).toEqual([
      "app",
      "logger",
    ]);
  });

  it("pulls a checkpoint image named by digest only if the node lacks it, so a restarted container starts again after the registry dropped it", () => {
    const digest = `registry.cloud/edgeshift/checkpoints@sha256:${"ab".repeat(32)}`;
    const p = build({ images: { app: digest } });
    expect(p.spec?.containers.map((c) => [c.image, c.imagePullPolicy])).toEqual([
      [digest, "IfNotPresent"],
      [original().spec?.containers[1]?.image, original().spec?.containers[1]?.imagePullPolicy],
    ]);
  });

  it("swaps every app container's image when the migration names none", () => {
    const p = build({
      migration: migration({ containers: undefined }),
      images: { app: CKPT, logger: `${CKPT}-logger` },
    });
    expect(p.spec?.containers.map((c) => [c.image, c.imagePullPolicy])).toEqual([
      [CKPT, "Always"],
      [`${CKPT}-logger`, "Always"],
    ]);
  });
});

describe("buildRestorePod refuses inconsistent input", () => {
  const sts = withOwner(
    { apiVersion: "apps/v1", kind: "StatefulSet", name: "s", uid: "u", controller: true },
    { app: "db" },
  );
  const unbound = original();
  if (unbound.spec) unbound.spec.nodeName = undefined;
  const noSource = migration();
  noSource.status = undefined;
  const noUid = migration();
  noUid.metadata.uid = undefined;

  it.each<[string, Partial<RestorePodInput>, RegExp]>([
    ["a missing checkpoint image", { images: {} }, /No checkpoint image for container app/],
    [
      "an image for an unmigrated container",
      { images: { app: CKPT, logger: "x" } },
      /unmigrated container logger/,
    ],
    [
      "a migrated container the pod lacks",
      { migration: migration({ containers: ["db"] }) },
      /no container db/,
    ],
    ["a StatefulSet pod", { pod: sts }, /StatefulSet/],
    ["no source node", { pod: unbound, migration: noSource }, /not bound to a node/],
    ["no target node", { targetNode: "" }, /No target node/],
    ["a migration without uid", { migration: noUid }, /uid/],
  ])("%s", (_name, over, error) => {
    expect(() => build(over)).toThrow(error);
  });
});

describe("hiding from the owner and revealing again", () => {
  const ours = (p: V1Pod) => ({
    [MIGRATION_POD_LABEL]: p.metadata?.labels?.[MIGRATION_POD_LABEL],
    [HOME_NODE_LABEL]: p.metadata?.labels?.[HOME_NODE_LABEL],
  });
  const service: LabelSelector = { matchLabels: { app: "web" } };
  const jobLabels = {
    "batch.kubernetes.io/controller-uid": "job-uid",
    "controller-uid": "job-uid",
    "batch.kubernetes.io/job-name": "crunch",
    "job-name": "crunch",
    app: "web",
  };

  it.each<{
    name: string;
    pod: V1Pod;
    ownerSelector?: LabelSelector;
    /** The owner's real selector, which must stop matching. */
    selector: LabelSelector;
    /** Labels the hidden pod keeps from the original (Services follow them). */
    kept: string[];
  }>([
    {
      name: "Deployment's ReplicaSet: pod-template-hash dropped",
      pod: withOwner(rsRef, { app: "web", tier: "frontend", "pod-template-hash": "7d9f8" }),
      selector: { matchLabels: { app: "web", "pod-template-hash": "7d9f8" } },
      kept: ["app", "tier"],
    },
    {
      name: "bare ReplicaSet with a known matchLabels selector: one value renamed",
      pod: withOwner(rsRef, { app: "web", tier: "frontend" }),
      ownerSelector: { matchLabels: { tier: "frontend", app: "web" } },
      selector: { matchLabels: { tier: "frontend", app: "web" } },
      kept: ["tier"],
    },
    {
      name: "bare ReplicaSet with an In selector: value renamed",
      pod: withOwner(rsRef, { app: "web", tier: "frontend" }),
      ownerSelector: { matchExpressions: [{ key: "tier", operator: "In", values: ["frontend"] }] },
      selector: { matchExpressions: [{ key: "tier", operator: "In", values: ["frontend"] }] },
      kept: ["app"],
    },
    {
      name: "bare ReplicaSet with an Exists selector: label dropped",
      pod: withOwner(rsRef, { app: "web", tier: "frontend" }),
      ownerSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] },
      selector: { matchExpressions: [{ key: "tier", operator: "Exists" }] },
      kept: ["app"],
    },
    {
      name: "bare ReplicaSet with an unknown selector: every value renamed",
      pod: withOwner(rsRef, { app: "web", tier: "frontend" }),
      selector: { matchLabels: { tier: "frontend" } },
      kept: [],
    },
    {
      name: "Job: controller-uid labels dropped",
      pod: withOwner(jobRef, jobLabels),
      selector: { matchLabels: { "batch.kubernetes.io/controller-uid": "job-uid" } },
      kept: ["batch.kubernetes.io/job-name", "job-name", "app"],
    },
    {
      name: "Job with a manual selector",
      pod: withOwner(jobRef, { app: "web", batch: "nightly" }),
      ownerSelector: { matchLabels: { batch: "nightly" } },
      selector: { matchLabels: { batch: "nightly" } },
      kept: ["app"],
    },
  ])("$name", ({ pod, ownerSelector, selector, kept }) => {
    const images = { app: CKPT };
    const hidden = build({ pod, hideFromOwner: true, ownerSelector, images });
    const labels = hidden.metadata?.labels ?? {};

    // The owner neither controls nor selects it.
    expect(hidden.metadata?.ownerReferences?.some((r) => r.controller) ?? false).toBe(false);
    expect(matchesLabelSelector(selector, labels)).toBe(false);
    for (const k of kept) expect(labels[k]).toBe(pod.metadata?.labels?.[k]);
    if (kept.includes("app")) expect(matchesLabelSelector(service, labels)).toBe(true);

    // Revealing gives back exactly the original labels (plus ours); the owner selects it.
    const patch = revealToOwner(hidden, pod);
    expect(patch).toBeDefined();
    const revealed = applyPatch(hidden, patch);
    expect(revealed).toEqual({ ...pod.metadata?.labels, ...ours(hidden) });
    expect(matchesLabelSelector(selector, revealed)).toBe(true);
    // A second reveal has nothing left to do.
    expect(revealToOwner({ metadata: { labels: revealed } }, pod)).toBeUndefined();
  });

  it("renames a value to a fixed marker a selector does not use", () => {
    const pod = withOwner(rsRef, { app: "web", tier: "frontend" });
    const hidden = build({ pod, hideFromOwner: true });
    expect(hidden.metadata?.labels).toMatchObject({ app: HIDDEN_VALUE, tier: HIDDEN_VALUE });
  });

  it("reveals with the minimal patch", () => {
    const pod = withOwner(jobRef, jobLabels);
    const hidden = build({ pod, hideFromOwner: true });
    expect(revealToOwner(hidden, pod)).toEqual({
      metadata: {
        labels: { "batch.kubernetes.io/controller-uid": "job-uid", "controller-uid": "job-uid" },
      },
    });
  });

  it("removes a label it had to add, on reveal", () => {
    const pod = withOwner(rsRef, { app: "web" });
    const ownerSelector: LabelSelector = {
      matchExpressions: [{ key: "canary", operator: "DoesNotExist" }],
    };
    const hidden = build({ pod, hideFromOwner: true, ownerSelector });
    expect(matchesLabelSelector(ownerSelector, hidden.metadata?.labels)).toBe(false);
    expect(revealToOwner(hidden, pod)).toEqual({ metadata: { labels: { canary: null } } });
  });

  it("keeps non-controller owner references while hidden", () => {
    const pod = original();
    const hidden = build({ pod, hideFromOwner: true });
    expect(hidden.metadata?.ownerReferences).toEqual([plainRef]);
  });

  it("keeps a Job-owned pod counted: tracking finalizer hidden or not, controller ref when not", () => {
    const pod = withOwner(jobRef, jobLabels);
    const visible = build({ pod, hideFromOwner: false });
    expect(visible.metadata?.finalizers).toEqual([JOB_TRACKING_FINALIZER]);
    expect(visible.metadata?.ownerReferences).toEqual([jobRef]);
    expect(visible.metadata?.labels).toMatchObject(jobLabels);
    expect(revealToOwner(visible, pod)).toBeUndefined();
    const hidden = build({ pod, hideFromOwner: true });
    expect(hidden.metadata?.finalizers).toEqual([JOB_TRACKING_FINALIZER]);
  });

  it("adds no finalizer outside Jobs", () => {
    expect(build().metadata).not.toHaveProperty("finalizers");
  });

  it("has nothing to hide on a bare pod", () => {
    const pod = withOwner(undefined, { app: "web" });
    const hidden = build({ pod, hideFromOwner: true });
    expect(hidden.metadata?.labels).toMatchObject({ app: "web" });
    expect(hidden.metadata).not.toHaveProperty("ownerReferences");
    expect(revealToOwner(hidden, pod)).toBeUndefined();
  });

  it("leaves a visible ReplicaSet pod selectable", () => {
    const p = build({ hideFromOwner: false });
    expect(p.metadata?.labels?.["pod-template-hash"]).toBe("7d9f8");
    expect(revealToOwner(p, original())).toBeUndefined();
  });
});

describe("revealRecord", () => {
  const owned = (kind: string, apiVersion: string): V1Pod => ({
    metadata: {
      name: "w-1",
      namespace: "ns",
      labels: { app: "w", "pod-template-hash": "abc", [MIGRATION_POD_LABEL]: "stale" },
      ownerReferences: [{ apiVersion, kind, name: "w-abc", uid: "u-1", controller: true }],
    },
  });

  it("records the controller and the labels the restored pod gets back, not ours", () => {
    expect(revealRecord(owned("ReplicaSet", "apps/v1"))).toEqual({
      ownerKind: "ReplicaSet",
      ownerName: "w-abc",
      ownerUID: "u-1",
      labels: { app: "w", "pod-template-hash": "abc" },
    });
    expect(revealRecord(owned("Job", "batch/v1"))?.ownerKind).toBe("Job");
  });

  it("records nothing for a bare pod or an owner that is not moved", () => {
    expect(revealRecord({ metadata: { name: "b", labels: { app: "b" } } })).toBeUndefined();
    expect(revealRecord(owned("StatefulSet", "apps/v1"))).toBeUndefined();
  });

  it("reveals from the record alone: the patch gives back exactly the held-back labels", () => {
    const original = owned("ReplicaSet", "apps/v1");
    const record = revealRecord(original);
    const restored = buildRestorePod({
      pod: { ...original, spec: { nodeName: "edge-1", containers: [{ name: "c", image: "i" }] } },
      migration: {
        apiVersion: "edgeshift.dev/v1alpha1",
        kind: "Migration",
        metadata: { name: "m", namespace: "ns", uid: "m-uid" },
        spec: { podName: "w-1" },
      },
      targetNode: "cloud-1",
      policy: "restart",
      images: {},
      hideFromOwner: true,
    });
    expect(restored.metadata?.labels?.["pod-template-hash"]).toBeUndefined();
    expect(revealToOwner(restored, { metadata: { labels: record?.labels } })).toEqual({
      metadata: { labels: { "pod-template-hash": "abc" } },
    });
  });
});
