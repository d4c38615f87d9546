import { describe, expect, it } from "vitest";
import { expectedSum, findHandover, parseProgress, parseTimestamped } from "../demo/handover.ts";

const line = (stamp: string, i: number) =>
  `${stamp} 22:00:43 progress ${i}, sum 1, started in job-abc, now in job-abc`;

describe("the demo's reading of kubectl logs --timestamps", () => {
  it("finds the hand-over as the largest gap, with nanosecond stamps", () => {
    const log = [
      line("2026-12-01T22:00:43.417354801Z", 600000),
      line("2026-12-01T22:00:43.680234017Z", 620000),
      line("2026-12-01T22:00:43.905815714Z", 640000),
      line("2026-12-01T22:00:51.630317103Z", 660000),
      line("2026-12-01T22:00:51.871244023Z", 680000),
      "",
    ].join("\n");
    const lines = parseTimestamped(log);
    expect(lines).toHaveLength(5);
    const h = findHandover(lines);
    expect(h?.index).toBe(3);
    expect(h?.gapMs).toBe(51_630 - 43_905);
    expect(h?.nextLargestGapMs).toBe(43_680 - 43_417);
    expect(parseProgress(h?.before.text ?? "")?.value).toBe(640000);
    expect(parseProgress(h?.after.text ?? "")).toEqual({
      clock: "22:00:43",
      value: 660000,
      sum: 1,
      origin: "job-abc",
      now: "job-abc",
    });
  });

  it("has no hand-over in fewer than two lines, and skips lines without a stamp", () => {
    expect(findHandover(parseTimestamped("no stamp here\n"))).toBeUndefined();
    expect(findHandover(parseTimestamped(line("2026-12-01T22:00:43Z", 1)))).toBeUndefined();
  });

  it("knows the workload's final sum", () => {
    // Seen on the real nodes for 5e6 and 12e6 iterations.
    expect(expectedSum(5_000_000)).toBe(747875);
    expect(expectedSum(12_000_000)).toBe(1524224);
    expect(expectedSum(4_000_000)).toBe(611712);
    expect(parseProgress("done: sum of squares mod 1e9+7 up to 4 is 30")).toBeUndefined();
  });
});
