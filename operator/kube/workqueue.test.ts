import { describe, expect, it, vi } from "vitest";
import { RequeueError, WorkQueue } from "./workqueue.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("WorkQueue", () => {
  it("holds a pending key once", async () => {
    const q = new WorkQueue({ name: "t" });
    q.add("a");
    q.add("a");
    q.add("b");
    expect(q.length).toBe(2);
    const seen: string[] = [];
    q.start(async (k) => {
      seen.push(k);
      return undefined;
    });
    await sleep(20);
    expect(seen).toEqual(["a", "b"]);
    await q.shutdown();
  });

  it("never runs one key on two workers at once, and re-runs a key added while it ran", async () => {
    const q = new WorkQueue({ name: "t" });
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    q.start(async () => {
      running++;
      runs++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(30);
      running--;
      return undefined;
    }, 4);
    q.add("a");
    await sleep(5);
    q.add("a");
    q.add("a");
    await sleep(100);
    expect(maxRunning).toBe(1);
    expect(runs).toBe(2);
    await q.shutdown();
  });

  it("backs off exponentially per key and forgets on success", async () => {
    const q = new WorkQueue({ name: "t", baseDelayMs: 10, maxDelayMs: 40 });
    const times: number[] = [];
    q.start(async () => {
      times.push(Date.now());
      if (times.length < 4) throw new Error("boom");
      return undefined;
    });
    q.add("a");
    await sleep(200);
    expect(times).toHaveLength(4);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    // 10, 20, 40 ms (capped at 40)
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[1]).toBeGreaterThanOrEqual(19);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
    expect(q.failureCount("a")).toBe(0);
    expect(q.addRateLimited("b")).toBe(10);
    expect(q.addRateLimited("b")).toBe(20);
    expect(q.addRateLimited("b")).toBe(40);
    expect(q.addRateLimited("b")).toBe(40);
    await q.shutdown();
  });

  it("requeues quietly on RequeueError without counting a failure", async () => {
    const q = new WorkQueue({ name: "t", baseDelayMs: 5 });
    let n = 0;
    q.start(async () => {
      n++;
      if (n === 1) throw new RequeueError("conflict");
      return undefined;
    });
    q.add("a");
    await sleep(50);
    expect(n).toBe(2);
    expect(q.failureCount("a")).toBe(0);
    await q.shutdown();
  });

  it("keeps the earlier of two timed adds and honours requeueAfter", async () => {
    // Fake timers: the order and the delays are checked exactly, however busy the machine.
    vi.useFakeTimers();
    try {
      const q = new WorkQueue({ name: "t" });
      const seen: number[] = [];
      const t0 = Date.now();
      q.start(async () => {
        seen.push(Date.now() - t0);
        return seen.length === 1 ? { requeueAfterMs: 30 } : undefined;
      });
      q.addAfter("a", 20);
      q.addAfter("a", 500);
      await vi.advanceTimersByTimeAsync(19);
      expect(seen).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(seen).toEqual([20]);
      await vi.advanceTimersByTimeAsync(30);
      expect(seen).toEqual([20, 50]);
      // The later add was folded into the earlier one: nothing runs at 500 ms.
      await vi.advanceTimersByTimeAsync(1000);
      expect(seen).toEqual([20, 50]);
      await q.shutdown();
    } finally {
      vi.useRealTimers();
    }
  });
});
