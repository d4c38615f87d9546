import { describe, expect, it } from "vitest";
import { getCondition, setCondition, statusChanged } from "./conditions.ts";

describe("setCondition", () => {
  const t0 = new Date("2026-01-01T00:00:00.123Z");
  const t1 = new Date("2026-01-01T00:05:00Z");

  it("adds a condition with the transition time in whole seconds", () => {
    const list = setCondition(
      [],
      { type: "Ready", status: "True", reason: "Synced", message: "" },
      t0,
    );
    expect(list).toEqual([
      {
        type: "Ready",
        status: "True",
        reason: "Synced",
        message: "",
        lastTransitionTime: "2026-01-01T00:00:00Z",
      },
    ]);
  });

  it("keeps lastTransitionTime when the status does not flip, even if reason changes", () => {
    const a = setCondition([], { type: "Ready", status: "True", reason: "A", message: "" }, t0);
    const b = setCondition(a, { type: "Ready", status: "True", reason: "B", message: "m" }, t1);
    expect(getCondition(b, "Ready")).toMatchObject({
      reason: "B",
      message: "m",
      lastTransitionTime: "2026-01-01T00:00:00Z",
    });
  });

  it("moves lastTransitionTime when the status flips and leaves other types alone", () => {
    let list = setCondition([], { type: "Other", status: "False", reason: "X", message: "" }, t0);
    list = setCondition(list, { type: "Ready", status: "True", reason: "A", message: "" }, t0);
    list = setCondition(list, { type: "Ready", status: "False", reason: "B", message: "" }, t1);
    expect(getCondition(list, "Ready")?.lastTransitionTime).toBe("2026-01-01T00:05:00Z");
    expect(getCondition(list, "Other")?.lastTransitionTime).toBe("2026-01-01T00:00:00Z");
    expect(list).toHaveLength(2);
  });
});

describe("statusChanged", () => {
  it("ignores key order but sees value changes", () => {
    expect(statusChanged({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 })).toBe(false);
    expect(statusChanged({ a: 1 }, { a: 2 })).toBe(true);
    expect(statusChanged({ a: [1, 2] }, { a: [2, 1] })).toBe(true);
  });
});
