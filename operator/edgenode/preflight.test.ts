import type { V1Node } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  CHECKPOINT_RESTORE_ANNOTATION,
  checkpointCondition,
  nodeRuntimeSupport,
  restoreRefusal,
  restoreTargets,
  runtimeSupport,
} from "./preflight.ts";

describe("runtimeSupport", () => {
  it.each([
    ["cri-o://1.37.0", true, false],
    ["cri-o://1.36.3", true, true],
    ["cri-o://1.30.4", true, true],
    ["cri-o://1.26.0", true, true],
    ["cri-o://1.25.2", true, false],
    ["cri-o://1.24.9", false, false],
    ["containerd://1.7.35", false, false],
    ["containerd://1.7.27", false, false],
    ["containerd://2.0.5", true, false],
    ["containerd://2.1.0", true, true],
    ["containerd://2.2.6", true, true],
    ["containerd://2.2.7", true, false],
    ["containerd://2.2.9", true, false],
    ["containerd://2.3.3", true, true],
    ["containerd://2.3.4", true, false],
    ["containerd://v2.3.7", true, false],
    ["containerd://2.4.0", true, false],
    ["docker://24.0.7", false, false],
    ["", false, false],
    ["cri-o://garbage", false, false],
  ])("%s without annotation -> checkpoint %s, restore %s", (rt, checkpoint, restore) => {
    const s = runtimeSupport(rt);
    expect([s.checkpoint, s.restore]).toEqual([checkpoint, restore]);
    expect(s.message).not.toBe("");
    expect(s.restoreProblem === "").toBe(restore);
  });

  it("names the runtime family a checkpoint belongs to", () => {
    expect(runtimeSupport("containerd://2.3.7").family).toBe("containerd");
    expect(runtimeSupport("cri-o://1.36.3").family).toBe("cri-o");
    expect(runtimeSupport("").family).toBe("");
  });

  it("explains containerd 1.x", () => {
    expect(runtimeSupport("containerd://1.7.27").message).toMatch(
      /does not implement CheckpointContainer/,
    );
  });

  it("says restore is unconfirmed on containerd 2.3.4+ / 2.2.7+ without the annotation, and how to confirm it", () => {
    for (const rt of ["containerd://2.3.7", "containerd://2.2.7"]) {
      const s = runtimeSupport(rt, undefined, "cloud-2");
      expect(s).toMatchObject({ checkpoint: true, restore: false, restoreUnconfirmed: true });
      expect(s.message).toContain("restore unconfirmed");
      expect(s.message).toContain("enable_experimental_restore_via_create = true");
      expect(s.message).toContain(
        `kubectl annotate node cloud-2 ${CHECKPOINT_RESTORE_ANNOTATION}=enabled`,
      );
      expect(s.restoreProblem).toMatch(
        /^restore unconfirmed: .*enable_experimental_restore_via_create/,
      );
    }
  });

  it("asks the same of CRI-O 1.37, whose default is checkpoint_only", () => {
    const s = runtimeSupport("cri-o://1.37.0", undefined, "cloud-3");
    expect(s).toMatchObject({ family: "cri-o", restore: false, restoreUnconfirmed: true });
    expect(s.message).toContain("container_level_enabled = checkpoint_restore");
    expect(runtimeSupport("cri-o://1.37.0", "enabled").restore).toBe(true);
    expect(runtimeSupport("cri-o://1.36.3").message).toContain(
      `${CHECKPOINT_RESTORE_ANNOTATION}=disabled where it is off`,
    );
  });

  it("takes the admin's enabled annotation where the configuration decides", () => {
    const s = runtimeSupport("containerd://2.3.7", "enabled");
    expect(s).toMatchObject({ restore: true, restoreUnconfirmed: false, restoreProblem: "" });
    expect(s.message).toContain(`confirmed by the annotation ${CHECKPOINT_RESTORE_ANNOTATION}`);
  });

  it("ignores an enabled annotation on a runtime that cannot restore, and says so", () => {
    for (const rt of ["containerd://1.7.35", "containerd://2.0.5", "containerd://2.4.0"]) {
      const s = runtimeSupport(rt, "enabled");
      expect(s.restore).toBe(false);
      expect(s.message).toContain(`${CHECKPOINT_RESTORE_ANNOTATION}=enabled ignored`);
    }
  });

  it("turns restore off on any runtime with the disabled annotation", () => {
    for (const rt of ["cri-o://1.36.3", "containerd://2.1.0", "containerd://2.3.7"]) {
      const s = runtimeSupport(rt, "disabled");
      expect(s.restore).toBe(false);
      expect(s.restoreUnconfirmed).toBe(false);
      expect(s.restoreProblem).toContain("disabled by the annotation");
    }
  });

  it("treats an unknown annotation value as absent and names it", () => {
    const s = runtimeSupport("containerd://2.3.7", "yes");
    expect(s).toMatchObject({ restore: false, restoreUnconfirmed: true });
    expect(s.message).toContain(`${CHECKPOINT_RESTORE_ANNOTATION}="yes" ignored`);
    expect(runtimeSupport("cri-o://1.36.3", "on").restore).toBe(true);
  });

  it("reads the version and the annotation off a Node object", () => {
    const node: V1Node = {
      metadata: { name: "c", annotations: { [CHECKPOINT_RESTORE_ANNOTATION]: "enabled" } },
      status: { nodeInfo: { containerRuntimeVersion: "containerd://2.3.7" } as never },
    };
    expect(nodeRuntimeSupport(node).restore).toBe(true);
    expect(nodeRuntimeSupport(undefined).family).toBe("");
  });
});

describe("restoreRefusal", () => {
  const ctd = runtimeSupport("containerd://2.3.7", "enabled");
  const crio = runtimeSupport("cri-o://1.36.3");
  it("accepts a target of the same family that restores", () => {
    expect(restoreRefusal(ctd, ctd)).toBeUndefined();
    expect(restoreRefusal(crio, crio)).toBeUndefined();
  });
  it("refuses another runtime family both ways", () => {
    expect(restoreRefusal(ctd, crio)).toBe(
      "runtime cri-o://1.36.3 cannot restore a checkpoint taken by containerd://2.3.7 (a checkpoint restores only on the runtime family that wrote it)",
    );
    expect(restoreRefusal(crio, ctd)).toMatch(
      /containerd:\/\/2\.3\.7 cannot restore a checkpoint taken by cri-o/,
    );
  });
  it("refuses a target that cannot restore, with the short reason", () => {
    expect(restoreRefusal(ctd, runtimeSupport("containerd://2.3.7"))).toMatch(
      /^restore unconfirmed/,
    );
    expect(restoreRefusal(ctd, runtimeSupport("containerd://2.0.5"))).toBe(
      "containerd://2.0.5 cannot restore checkpoints",
    );
  });
});

describe("checkpointCondition", () => {
  const n = (name: string, rt: string, annotation?: string) => ({
    name,
    ...runtimeSupport(rt, annotation, name),
  });
  it("is Unknown with no nodes", () => {
    expect(checkpointCondition([]).status).toBe("Unknown");
  });
  it("is True when every node can checkpoint", () => {
    expect(
      checkpointCondition([n("a", "cri-o://1.30.4"), n("b", "containerd://2.1.0")]),
    ).toMatchObject({
      status: "True",
      reason: "AllNodesSupported",
    });
  });
  it("names the nodes and runtimes that cannot", () => {
    const c = checkpointCondition([n("a", "cri-o://1.30.4"), n("old", "containerd://1.7.27")]);
    expect(c).toMatchObject({ status: "False", reason: "SomeNodesUnsupported" });
    expect(c.message).toContain("old (containerd://1.7.27)");
    expect(c.message).not.toContain("a (");
  });
  it("names edge nodes no cloud node can restore, and cloud nodes that are not picked", () => {
    const edge = [
      n("edge-1", "containerd://2.3.7", "enabled"),
      n("edge-crio", "cri-o://1.36.3"),
      n("edge-old", "containerd://1.7.35"),
    ];
    const cloud = [
      n("cloud-1", "containerd://2.3.7", "enabled"),
      n("cloud-norestore", "containerd://2.3.7"),
    ];
    expect(restoreTargets(edge[0] as never, cloud)).toEqual(["cloud-1"]);
    expect(restoreTargets(edge[1] as never, cloud)).toEqual([]);
    const c = checkpointCondition(edge, cloud);
    expect(c).toMatchObject({ status: "False", reason: "SomeNodesUnsupported" });
    expect(c.message).toBe(
      "1 of 3 nodes cannot checkpoint: edge-old (containerd://1.7.35); " +
        "1 of 3 nodes have no cloud node that can restore their checkpoints (same runtime family, restore enabled): edge-crio (cri-o://1.36.3); " +
        "the restart policy still works there; " +
        "cloud node not picked for a checkpoint restore: cloud-norestore (containerd://2.3.7) (restore unconfirmed on cloud-norestore: see status.cloudNodes)",
    );
  });
  it("stays True when every edge node has a target, still naming the cloud nodes that are not picked", () => {
    const c = checkpointCondition(
      [n("edge-1", "containerd://2.3.7", "enabled")],
      [n("cloud-1", "containerd://2.3.7", "enabled"), n("cloud-norestore", "containerd://2.3.7")],
    );
    expect(c.status).toBe("True");
    expect(c.message).toMatch(/^all 1 nodes can checkpoint and have a cloud node to restore on; /);
    expect(c.message).toContain("cloud-norestore");
  });
  it("is NoNodesSupported when no cloud node restores anything", () => {
    const c = checkpointCondition(
      [n("edge-1", "containerd://2.3.7", "enabled")],
      [n("cloud-norestore", "containerd://2.3.7")],
    );
    expect(c).toMatchObject({ status: "False", reason: "NoNodesSupported" });
  });
});
