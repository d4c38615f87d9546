import { describe, expect, it } from "vitest";
import { checkpointCondition, runtimeSupport } from "./preflight.ts";

describe("runtimeSupport", () => {
  it.each([
    ["cri-o://1.30.4", true, true],
    ["cri-o://1.26.0", true, true],
    ["cri-o://1.25.2", true, false],
    ["cri-o://1.24.9", false, false],
    ["containerd://1.7.27", false, false],
    ["containerd://2.0.5", true, false],
    ["containerd://2.1.0", true, true],
    ["containerd://2.3.3", true, true],
    ["containerd://2.3.4", true, false],
    ["containerd://2.4.0", true, false],
    ["docker://24.0.7", false, false],
    ["", false, false],
    ["cri-o://garbage", false, false],
  ])("%s -> checkpoint %s, restore %s", (rt, checkpoint, restore) => {
    const s = runtimeSupport(rt);
    expect([s.checkpoint, s.restore]).toEqual([checkpoint, restore]);
    expect(s.message).not.toBe("");
  });

  it("explains containerd 1.x", () => {
    expect(runtimeSupport("containerd://1.7.27").message).toMatch(
      /does not implement CheckpointContainer/,
    );
  });
});

describe("checkpointCondition", () => {
  const n = (name: string, rt: string) => ({ name, ...runtimeSupport(rt) });
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
});
