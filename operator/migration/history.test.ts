import { describe, expect, it } from "vitest";
import type { Migration } from "../api/v1alpha1.ts";
import { expiredMigrations, finishedAt } from "./history.ts";

const H = 3_600_000;
const NOW = Date.UTC(2027, 0, 2);

function mig(name: string, finishedHoursAgo: number | undefined, namespace = "shop"): Migration {
  const finished =
    finishedHoursAgo === undefined ? undefined : new Date(NOW - finishedHoursAgo * H).toISOString();
  return {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "Migration",
    metadata: { name, namespace, creationTimestamp: new Date(NOW - 100 * H) as never },
    spec: { podName: name },
    status: finished
      ? { phase: "Succeeded", timestamps: { finished } }
      : { phase: "Restoring", timestamps: {} },
  };
}

const names = (l: Migration[]) => l.map((m) => m.metadata.name);

describe("finished Migration history", () => {
  it("keeps the newest per namespace whatever their age, and deletes older ones past the TTL", () => {
    const list = [
      mig("a", 50),
      mig("b", 40),
      mig("c", 30),
      mig("d", 1),
      mig("running", undefined),
      mig("x", 60, "other"),
    ];
    // keep 1: d stays (newest) in shop; a, b, c are past 24 h; x is the newest in "other".
    expect(names(expiredMigrations(list, { keep: 1, ttlMs: 24 * H }, NOW))).toEqual([
      "a",
      "b",
      "c",
    ]);
    // keep 2: c is kept too; TTL 45 h: only a is old enough.
    expect(names(expiredMigrations(list, { keep: 2, ttlMs: 45 * H }, NOW))).toEqual(["a"]);
    // keep 0 and a short TTL: every finished one but the hour-old d; never the running one.
    expect(names(expiredMigrations(list, { keep: 0, ttlMs: 2 * H }, NOW))).toEqual([
      "x",
      "a",
      "b",
      "c",
    ]);
  });

  it("leaves Migrations already being deleted alone", () => {
    const gone = mig("a", 50);
    gone.metadata.deletionTimestamp = new Date(NOW) as never;
    expect(expiredMigrations([gone], { keep: 0, ttlMs: H }, NOW)).toEqual([]);
  });

  it("dates a Migration by its finished time, else its condition, else its creation", () => {
    expect(finishedAt(mig("a", 2))).toBe(NOW - 2 * H);
    const cond = mig("b", undefined);
    cond.status = {
      phase: "Failed",
      conditions: [
        {
          type: "Succeeded",
          status: "False",
          reason: "NoTarget",
          message: "",
          lastTransitionTime: new Date(NOW - 3 * H).toISOString(),
        },
      ],
    };
    expect(finishedAt(cond)).toBe(NOW - 3 * H);
    const bare = mig("c", undefined);
    bare.status = { phase: "Failed" };
    expect(finishedAt(bare)).toBe(NOW - 100 * H);
  });
});
