import type { V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { claimNames, volumeRefusals } from "./volumes.ts";

const target = {
  metadata: { name: "cloud-1", labels: { "kubernetes.io/hostname": "cloud-1", zone: "b" } },
};

function pod(volumes: NonNullable<V1Pod["spec"]>["volumes"]): V1Pod {
  return { metadata: { name: "p" }, spec: { nodeName: "edge-1", containers: [], volumes } };
}

const claimVol = (name: string, claimName: string) => ({
  name,
  persistentVolumeClaim: { claimName },
});

function claim(name: string, pv: string, bound = true): V1PersistentVolumeClaim {
  return {
    metadata: { name },
    spec: { volumeName: pv, accessModes: ["ReadWriteOnce"] },
    status: { phase: bound ? "Bound" : "Pending" },
  };
}

function pv(
  name: string,
  accessModes: string[],
  nodeAffinity?: V1PersistentVolume["spec"] extends infer S
    ? S extends { nodeAffinity?: infer A }
      ? A
      : never
    : never,
): V1PersistentVolume {
  return { metadata: { name }, spec: { accessModes, nodeAffinity } };
}

const hostnameIs = (h: string) => ({
  required: {
    nodeSelectorTerms: [
      { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [h] }] },
    ],
  },
});

describe("volumeRefusals", () => {
  it("accepts volumes made afresh on the target: emptyDir, configMap, secret", () => {
    const p = pod([
      { name: "a", emptyDir: {} },
      { name: "c", configMap: { name: "cm" } },
      { name: "d", secret: { secretName: "s" } },
    ]);
    expect(claimNames(p)).toEqual([]);
    expect(volumeRefusals({ pod: p, target, claims: new Map(), volumes: new Map() })).toEqual([]);
  });

  it("refuses hostPath volumes, naming each: on the target it is another node's directory", () => {
    const p = pod([
      { name: "a", emptyDir: {} },
      { name: "logs", hostPath: { path: "/var/log/x", type: "DirectoryOrCreate" } },
      { name: "sock", hostPath: { path: "/run/app.sock" } },
    ]);
    expect(volumeRefusals({ pod: p, target, claims: new Map(), volumes: new Map() })).toEqual([
      "volume logs (hostPath /var/log/x): a directory of edge-1; on cloud-1 the same path is another directory, so its data would not move",
      "volume sock (hostPath /run/app.sock): a directory of edge-1; on cloud-1 the same path is another directory, so its data would not move",
    ]);
  });

  it("accepts a ReadWriteMany claim whose volume every node reaches", () => {
    const p = pod([claimVol("data", "shared")]);
    const r = volumeRefusals({
      pod: p,
      target,
      claims: new Map([["shared", claim("shared", "pv-nfs")]]),
      volumes: new Map([["pv-nfs", pv("pv-nfs", ["ReadWriteMany"])]]),
    });
    expect(r).toEqual([]);
  });

  it("refuses a local volume pinned to the edge node, naming the volume, claim and node", () => {
    const p = pod([claimVol("data", "local")]);
    const r = volumeRefusals({
      pod: p,
      target,
      claims: new Map([["local", claim("local", "pv-local")]]),
      volumes: new Map([["pv-local", pv("pv-local", ["ReadWriteMany"], hostnameIs("edge-1"))]]),
    });
    expect(r).toEqual([
      "volume data (claim local): PersistentVolume pv-local is reachable only from the nodes its nodeAffinity selects, and cloud-1 is not one of them",
    ]);
  });

  it("accepts a volume whose nodeAffinity selects the target", () => {
    const r = volumeRefusals({
      pod: pod([claimVol("data", "z")]),
      target,
      claims: new Map([["z", claim("z", "pv-z")]]),
      volumes: new Map([
        [
          "pv-z",
          pv("pv-z", ["ReadOnlyMany"], {
            required: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] },
                { matchExpressions: [{ key: "zone", operator: "In", values: ["b"] }] },
              ],
            },
          }),
        ],
      ]),
    });
    expect(r).toEqual([]);
  });

  it("refuses ReadWriteOnce and ReadWriteOncePod volumes: the original holds them until cutover", () => {
    const r = volumeRefusals({
      pod: pod([claimVol("a", "rwo"), claimVol("b", "rwop")]),
      target,
      claims: new Map([
        ["rwo", claim("rwo", "pv-rwo")],
        ["rwop", claim("rwop", "pv-rwop")],
      ]),
      volumes: new Map([
        ["pv-rwo", pv("pv-rwo", ["ReadWriteOnce"])],
        ["pv-rwop", pv("pv-rwop", ["ReadWriteOncePod"])],
      ]),
    });
    expect(r).toEqual([
      "volume a (claim rwo): ReadWriteOnce, attached to edge-1 until cutover, so it cannot be attached to cloud-1 for the restored pod",
      "volume b (claim rwop): ReadWriteOncePod, held by the original pod until cutover, so the restored pod could not start",
    ]);
  });

  it("refuses missing and unbound claims and a missing volume", () => {
    const r = volumeRefusals({
      pod: pod([claimVol("a", "gone"), claimVol("b", "pending"), claimVol("c", "orphan")]),
      target,
      claims: new Map([
        ["pending", claim("pending", "", false)],
        ["orphan", claim("orphan", "pv-gone")],
      ]),
      volumes: new Map(),
    });
    expect(r).toEqual([
      "volume a (claim gone): the claim does not exist",
      "volume b (claim pending): the claim is not bound",
      "volume c (claim orphan): its PersistentVolume pv-gone does not exist",
    ]);
  });
});
