import { describe, expect, it } from "vitest";
import { formatDuration, secondsBetween } from "./duration.ts";

describe("formatDuration", () => {
  it.each([
    [0, "0.0s"],
    [0.04, "0.0s"],
    [4.2, "4.2s"],
    [4.25, "4.3s"],
    [59.94, "59.9s"],
    [59.96, "1m0s"],
    [72, "1m12s"],
    [3599.4, "59m59s"],
    [3600, "1h0m"],
    [7530, "2h6m"],
    [-1, "0.0s"],
    [Number.NaN, "0.0s"],
    [Number.POSITIVE_INFINITY, "0.0s"],
  ])("%d s -> %s", (seconds, want) => {
    expect(formatDuration(seconds)).toBe(want);
  });
});

describe("secondsBetween", () => {
  it("measures between RFC 3339 timestamps, sub-second included", () => {
    expect(secondsBetween("2026-01-02T03:04:05Z", "2026-01-02T03:04:09.200Z")).toBeCloseTo(4.2);
  });

  it("is undefined when a timestamp is missing or bad", () => {
    expect(secondsBetween(undefined, "2026-01-02T03:04:05Z")).toBeUndefined();
    expect(secondsBetween("2026-01-02T03:04:05Z", "yesterday")).toBeUndefined();
  });
});
