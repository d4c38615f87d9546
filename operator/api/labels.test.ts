import { describe, expect, it } from "vitest";
import {
  formatLabelSelector,
  labelKeyError,
  labelSelectorErrors,
  labelValueError,
  matchesLabelSelector,
} from "./labels.ts";
import type { LabelSelector } from "./v1alpha1.ts";

const edge = { "node-role.edgeshift.dev/edge": "", zone: "plant-a", tier: "gold" };

describe("matchesLabelSelector", () => {
  it.each<[string, LabelSelector, Record<string, string> | undefined, boolean]>([
    ["empty selector matches labels", {}, edge, true],
    ["empty selector matches no labels", {}, undefined, true],
    ["empty lists match everything", { matchLabels: {}, matchExpressions: [] }, {}, true],
    [
      "matchLabels with empty value",
      { matchLabels: { "node-role.edgeshift.dev/edge": "" } },
      edge,
      true,
    ],
    ["matchLabels all present", { matchLabels: { zone: "plant-a", tier: "gold" } }, edge, true],
    ["matchLabels one differs", { matchLabels: { zone: "plant-a", tier: "silver" } }, edge, false],
    ["matchLabels key missing", { matchLabels: { rack: "1" } }, edge, false],
    ["matchLabels against no labels", { matchLabels: { zone: "plant-a" } }, undefined, false],
    [
      "In hit",
      { matchExpressions: [{ key: "zone", operator: "In", values: ["plant-b", "plant-a"] }] },
      edge,
      true,
    ],
    [
      "In miss",
      { matchExpressions: [{ key: "zone", operator: "In", values: ["plant-b"] }] },
      edge,
      false,
    ],
    [
      "In absent key",
      { matchExpressions: [{ key: "rack", operator: "In", values: ["1"] }] },
      edge,
      false,
    ],
    [
      "NotIn hit",
      { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["plant-a"] }] },
      edge,
      false,
    ],
    [
      "NotIn miss",
      { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["plant-b"] }] },
      edge,
      true,
    ],
    [
      "NotIn absent key matches",
      { matchExpressions: [{ key: "rack", operator: "NotIn", values: ["1"] }] },
      edge,
      true,
    ],
    [
      "Exists present",
      { matchExpressions: [{ key: "node-role.edgeshift.dev/edge", operator: "Exists" }] },
      edge,
      true,
    ],
    ["Exists absent", { matchExpressions: [{ key: "rack", operator: "Exists" }] }, edge, false],
    [
      "DoesNotExist absent",
      { matchExpressions: [{ key: "rack", operator: "DoesNotExist" }] },
      edge,
      true,
    ],
    [
      "DoesNotExist present",
      { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] },
      edge,
      false,
    ],
    [
      "labels and expressions are ANDed",
      {
        matchLabels: { tier: "gold" },
        matchExpressions: [{ key: "zone", operator: "In", values: ["plant-b"] }],
      },
      edge,
      false,
    ],
    [
      "In without values matches nothing",
      { matchExpressions: [{ key: "zone", operator: "In", values: [] }] },
      edge,
      false,
    ],
    [
      "NotIn without values matches nothing",
      { matchExpressions: [{ key: "zone", operator: "NotIn" }] },
      edge,
      false,
    ],
    [
      "Exists with values matches nothing",
      { matchExpressions: [{ key: "zone", operator: "Exists", values: ["x"] }] },
      edge,
      false,
    ],
    [
      "unknown operator matches nothing",
      { matchExpressions: [{ key: "zone", operator: "Gt" as "In", values: ["1"] }] },
      edge,
      false,
    ],
  ])("%s", (_name, selector, labels, want) => {
    expect(matchesLabelSelector(selector, labels)).toBe(want);
  });

  it("does not match inherited properties", () => {
    expect(
      matchesLabelSelector({ matchExpressions: [{ key: "toString", operator: "Exists" }] }, {}),
    ).toBe(false);
  });
});

describe("formatLabelSelector", () => {
  it("prints an empty selector as everything", () => {
    expect(formatLabelSelector({})).toBe("");
  });

  it("prints every operator, sorted by key, values sorted and de-duplicated", () => {
    expect(
      formatLabelSelector({
        matchLabels: { zone: "plant-a", "node-role.edgeshift.dev/edge": "" },
        matchExpressions: [
          { key: "tier", operator: "In", values: ["silver", "gold", "gold"] },
          { key: "legacy", operator: "DoesNotExist" },
          { key: "gpu", operator: "Exists" },
          { key: "arch", operator: "NotIn", values: ["s390x", "arm"] },
        ],
      }),
    ).toBe(
      "arch notin (arm,s390x),gpu,!legacy,node-role.edgeshift.dev/edge=,tier in (gold,silver),zone=plant-a",
    );
  });

  it("refuses a selector the API server would refuse", () => {
    expect(() =>
      formatLabelSelector({ matchExpressions: [{ key: "zone", operator: "In" }] }),
    ).toThrow(/values must be non-empty for In/);
  });
});

describe("label validation", () => {
  it.each([
    "app",
    "a",
    "app.kubernetes.io/name",
    "node-role.edgeshift.dev/edge",
    "A_b.c-D",
    `${"a".repeat(253)}/${"b".repeat(63)}`,
  ])("accepts key %s", (key) => {
    expect(labelKeyError(key)).toBeUndefined();
  });

  it.each([
    "",
    "/app",
    "Example.com/app",
    "a/b/c",
    "-app",
    "app-",
    "a".repeat(64),
    `${"a".repeat(254)}/b`,
    "app/",
  ])("refuses key %j", (key) => {
    expect(labelKeyError(key)).toBeDefined();
  });

  it.each(["", "v", "plant-a", "1.2_3", "a".repeat(63)])("accepts value %j", (value) => {
    expect(labelValueError(value)).toBeUndefined();
  });

  it.each(["-a", "a-", "a b", "a/b", "a".repeat(64)])("refuses value %j", (value) => {
    expect(labelValueError(value)).toBeDefined();
  });

  it("reports every problem of a selector at once", () => {
    expect(
      labelSelectorErrors({
        matchLabels: { "bad key!": "ok", ok: "bad value!" },
        matchExpressions: [
          { key: "zone", operator: "Exists", values: ["x"] },
          { key: "tier", operator: "In" },
        ],
      }),
    ).toHaveLength(4);
    expect(labelSelectorErrors({ matchLabels: { zone: "a" } })).toEqual([]);
  });
});
