import { describe, expect, it } from "vitest";
import {
  type Decision,
  DecisionEngine,
  type EdgeNodePolicy,
  migrationName,
  nextMigrationName,
  type Observation,
} from "./engine.ts";

const T0 = Date.UTC(2027, 0, 1);
/** Samples reach the engine this long after they were taken. */
const LATENCY = 40;
const GiB = 2 ** 30;

function policy(over: Partial<EdgeNodePolicy> = {}): EdgeNodePolicy {
  return {
    samplingIntervalSeconds: 1,
    sustainedWindowSeconds: 10,
    breachPercent: 80,
    cooldownSeconds: 60,
    maxConcurrentMigrations: 1,
    thresholds: { cpu: { triggerPercent: 80 }, memory: { triggerPercent: 90 } },
    nodes: {
      "edge-a": { cpuCores: 4, memoryBytes: 8 * GiB },
      "edge-b": { cpuCores: 4, memoryBytes: 8 * GiB },
    },
    ...over,
  };
}

/** One container's load in one tick; cpu and mem in percent of a 1-core / 1 GiB limit. */
interface Load {
  pod: string;
  container?: string;
  node?: string;
  namespace?: string;
  cpu: number;
  mem?: number;
  /** The application's metric: a value, or a reading without one. */
  app?: number | "scrape_failed" | "absent" | "counter_reset";
}

function observation(l: Load, ts: number): Observation {
  const mem = l.mem ?? 10;
  return {
    node: l.node ?? "edge-a",
    namespace: l.namespace ?? "shop",
    pod: l.pod,
    podUid: `uid-${l.pod}`,
    container: l.container ?? "app",
    ts,
    cpuCores: l.cpu / 100,
    cpuPercent: l.cpu,
    memoryBytes: (mem / 100) * GiB,
    memoryPercent: mem,
    ...(l.app === undefined
      ? {}
      : typeof l.app === "number"
        ? { appStatus: "ok" as const, appValue: l.app }
        : { appStatus: l.app }),
  };
}

interface Fired {
  tick: number;
  pod: string;
  metric: string;
}

/** Drives an engine one sampling interval per tick on a fake clock. */
class Sim {
  readonly engine: DecisionEngine;
  readonly decisions: (Decision & { tick: number })[] = [];
  tick = 0;

  constructor(p: EdgeNodePolicy = policy(), edgeNode = "edge", engine = new DecisionEngine()) {
    this.engine = engine;
    this.engine.configure(edgeNode, p);
  }

  ts(tick = this.tick): number {
    return T0 + tick * 1000;
  }

  now(tick = this.tick): number {
    return this.ts(tick) + LATENCY;
  }

  step(loads: Load[]): void {
    for (const l of loads) {
      for (const d of this.engine.observe(observation(l, this.ts()), this.now())) {
        this.decisions.push({ ...d, tick: this.tick });
      }
    }
    this.tick++;
  }

  run(ticks: number, loads: (tick: number) => Load[]): this {
    for (let i = 0; i < ticks; i++) this.step(loads(this.tick));
    return this;
  }

  fired(): Fired[] {
    return this.decisions.map((d) => ({ tick: d.tick, pod: d.pod, metric: d.metric }));
  }
}

/** A cpu series for pod "web": each entry is one tick; undefined means no sample that tick. */
const series = (...parts: (number | undefined)[][]) => parts.flat();
const repeat = <T>(n: number, ...values: T[]): T[] =>
  Array.from({ length: n * values.length }, (_, i) => values[i % values.length] as T);

describe("container thresholds", () => {
  it.each<[string, (number | undefined)[], Fired[]]>([
    ["steady load below the trigger never fires", repeat(40, 50), []],
    ["load at exactly the trigger is not above it", repeat(40, 80), []],
    ["isolated spikes never fire", repeat(20, 95, 50), []],
    [
      "7 hot samples in every 10 stay under 80%",
      repeat(4, 95, 95, 95, 95, 95, 95, 95, 50, 50, 50),
      [],
    ],
    [
      "a burst shorter than the window never fires",
      series(repeat(5, 50), repeat(7, 99), repeat(28, 50)),
      [],
    ],
    [
      "a sustained breach fires once, on the first full window",
      repeat(40, 95),
      [{ tick: 9, pod: "web", metric: "cpu" }],
    ],
    [
      "k of n: 8 hot of 10 fires when the 8th hot sample arrives",
      series(repeat(5, 50), repeat(35, 95)),
      [{ tick: 12, pod: "web", metric: "cpu" }],
    ],
    [
      "8 hot in every 10, spread out, fires",
      repeat(4, 95, 95, 50, 95, 95, 95, 95, 50, 95, 95),
      [{ tick: 9, pod: "web", metric: "cpu" }],
    ],
    [
      "a single lost sample is tolerated",
      series(repeat(5, 95), [undefined], repeat(20, 95)),
      [{ tick: 9, pod: "web", metric: "cpu" }],
    ],
    [
      "a silent monitor's old samples do not fill a new window",
      series(repeat(8, 95), repeat(4, undefined), repeat(20, 95)),
      [{ tick: 21, pod: "web", metric: "cpu" }],
    ],
  ])("%s", (_name, cpu, expected) => {
    const sim = new Sim().run(cpu.length, (t) => {
      const v = cpu[t];
      return v === undefined ? [] : [{ pod: "web", cpu: v }];
    });
    expect(sim.fired()).toEqual(expected);
  });

  it("fires on memory too, and reports the deciding sample", () => {
    const sim = new Sim().run(20, () => [{ pod: "web", cpu: 10, mem: 96 }]);
    expect(sim.decisions).toEqual([
      {
        tick: 9,
        namespace: "shop",
        pod: "web",
        podUid: "uid-web",
        container: "app",
        edgeNode: "edge",
        node: "edge-a",
        metric: "memory",
        value: 96,
        threshold: 90,
        windowSeconds: 10,
        sampledAt: new Date(T0 + 9000).toISOString(),
      },
    ]);
  });

  it("ignores a metric without a threshold", () => {
    const sim = new Sim(policy({ thresholds: { memory: { triggerPercent: 90 } } }));
    sim.run(30, () => [{ pod: "web", cpu: 100 }]);
    expect(sim.fired()).toEqual([]);
  });

  it("ignores nodes no EdgeNode claims", () => {
    const sim = new Sim().run(30, () => [{ pod: "web", node: "cloud-1", cpu: 100 }]);
    expect(sim.fired()).toEqual([]);
  });

  it("ignores repeated and out-of-order samples", () => {
    const e = new DecisionEngine();
    e.configure("edge", policy());
    const hot = (second: number) => observation({ pod: "web", cpu: 99 }, T0 + second * 1000);
    // Six distinct samples over ten seconds, each delivered twice, and three late ones
    // from the gaps: twelve deliveries, but still not a full window.
    const fired: Decision[] = [];
    for (const second of [0, 2, 4, 6, 8, 9]) {
      fired.push(...e.observe(hot(second), T0 + second * 1000 + 40));
      fired.push(...e.observe(hot(second), T0 + second * 1000 + 50));
    }
    for (const second of [7, 5, 3]) fired.push(...e.observe(hot(second), T0 + 9060));
    expect(fired).toEqual([]);
  });

  it("needs a new full window after forget", () => {
    const sim = new Sim().run(9, () => [{ pod: "web", cpu: 99 }]);
    sim.engine.forget("shop", "web");
    sim.run(9, () => [{ pod: "web", cpu: 99 }]);
    expect(sim.fired()).toEqual([]);
    sim.run(1, () => [{ pod: "web", cpu: 99 }]);
    expect(sim.fired()).toEqual([{ tick: 18, pod: "web", metric: "cpu" }]);
  });

  it("treats a re-created pod (new uid) as new", () => {
    const sim = new Sim().run(9, () => [{ pod: "web", cpu: 99 }]);
    const e = sim.engine;
    expect(
      e.observe({ ...observation({ pod: "web", cpu: 99 }, sim.ts()), podUid: "new" }, sim.now()),
    ).toEqual([]);
  });
});

describe("hysteresis", () => {
  const cool = policy({ cooldownSeconds: 0 });

  it("does not fire again until usage falls below the rearm level (trigger - 10)", () => {
    const sim = new Sim(cool).run(10, () => [{ pod: "web", cpu: 95 }]);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "web", metric: "cpu" }]);
    sim.engine.migrationFinished("shop", "web", sim.now());

    sim.run(20, () => [{ pod: "web", cpu: 95 }]);
    sim.run(5, () => [{ pod: "web", cpu: 75 }]); // below trigger, above rearm (70)
    sim.run(20, () => [{ pod: "web", cpu: 95 }]);
    expect(sim.fired()).toHaveLength(1);

    const rearmedAt = sim.tick;
    sim.run(1, () => [{ pod: "web", cpu: 60 }]);
    sim.run(20, () => [{ pod: "web", cpu: 95 }]);
    // A full window after rearming: the rearming sample and 9 hot ones.
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "web", metric: "cpu" },
      { tick: rearmedAt + 9, pod: "web", metric: "cpu" },
    ]);
  });

  it("uses an explicit rearm level", () => {
    const sim = new Sim(
      policy({ cooldownSeconds: 0, thresholds: { cpu: { triggerPercent: 80, rearmPercent: 50 } } }),
    ).run(10, () => [{ pod: "web", cpu: 95 }]);
    sim.engine.migrationFinished("shop", "web", sim.now());
    sim.run(3, () => [{ pod: "web", cpu: 60 }]); // would rearm at the default of 70
    sim.run(20, () => [{ pod: "web", cpu: 95 }]);
    expect(sim.fired()).toHaveLength(1);
    sim.run(1, () => [{ pod: "web", cpu: 40 }]);
    sim.run(20, () => [{ pod: "web", cpu: 95 }]);
    expect(sim.fired()).toHaveLength(2);
  });

  it("arms each metric separately", () => {
    const sim = new Sim(cool).run(10, () => [{ pod: "web", cpu: 95, mem: 50 }]);
    sim.engine.migrationFinished("shop", "web", sim.now());
    sim.run(15, () => [{ pod: "web", cpu: 95, mem: 95 }]);
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "web", metric: "cpu" },
      { tick: 17, pod: "web", metric: "memory" },
    ]);
  });
});

describe("cooldown", () => {
  it("keeps a pod from migrating again until its cooldown has passed", () => {
    const sim = new Sim(policy({ cooldownSeconds: 60 })).run(10, () => [{ pod: "web", cpu: 95 }]);
    sim.engine.migrationFinished("shop", "web", sim.now(9));
    sim.run(1, () => [{ pod: "web", cpu: 10 }]); // rearms
    sim.run(80, () => [{ pod: "web", cpu: 95 }]);
    // Finished at tick 9 + 60 s: the first sample at or after tick 69 may fire.
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "web", metric: "cpu" },
      { tick: 69, pod: "web", metric: "cpu" },
    ]);
  });

  it("follows the pod by name, wherever it runs next", () => {
    // A StatefulSet pod re-created under the same name on another edge node.
    const sim = new Sim(policy({ cooldownSeconds: 60 }));
    sim.engine.migrationStarted("shop", "db-0", "edge-b");
    sim.engine.migrationFinished("shop", "db-0", sim.now(0));
    sim.run(80, () => [{ pod: "db-0", node: "edge-a", cpu: 95 }]);
    expect(sim.fired()).toEqual([{ tick: 60, pod: "db-0", metric: "cpu" }]);
  });

  it("keeps the whole source node quiet, but not the EdgeNode's other nodes", () => {
    const sim = new Sim(policy({ cooldownSeconds: 60, maxConcurrentMigrations: 5 }));
    sim.run(10, () => [{ pod: "first", cpu: 95 }]);
    sim.engine.migrationFinished("shop", "first", sim.now(9));
    sim.run(80, () => [
      { pod: "neighbour", node: "edge-a", cpu: 95 },
      { pod: "remote", node: "edge-b", cpu: 95 },
    ]);
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "first", metric: "cpu" },
      { tick: 19, pod: "remote", metric: "cpu" },
      { tick: 69, pod: "neighbour", metric: "cpu" },
    ]);
  });

  it("starts only when the migration finishes, not while it runs", () => {
    const sim = new Sim(policy({ cooldownSeconds: 30 })).run(10, () => [{ pod: "web", cpu: 95 }]);
    sim.run(1, () => [{ pod: "web", cpu: 10 }]); // rearms
    sim.run(29, () => [{ pod: "web", cpu: 95 }]); // in flight until tick 39: cannot fire
    sim.engine.migrationFinished("shop", "web", sim.now(39));
    sim.run(40, () => [{ pod: "web", cpu: 95 }]);
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "web", metric: "cpu" },
      { tick: 69, pod: "web", metric: "cpu" },
    ]);
  });
});

describe("migrations in flight", () => {
  const hot =
    (pods: string[], node = "edge-a") =>
    () =>
      pods.map((pod) => ({ pod, node, cpu: 95 }));

  it("fires at most maxConcurrentMigrations per EdgeNode, then the next as one finishes", () => {
    const sim = new Sim(policy({ maxConcurrentMigrations: 2, cooldownSeconds: 0 }));
    sim.engine.configure("far", policy({ nodes: { "edge-z": { cpuCores: 4, memoryBytes: GiB } } }));
    const loads = () => [...hot(["a", "b", "c"])(), ...hot(["z"], "edge-z")()];
    sim.run(15, loads);
    expect(sim.engine.inFlightCount("edge")).toBe(2);
    expect(sim.engine.inFlightCount("far")).toBe(1);
    sim.engine.migrationFinished("shop", "a", sim.now());
    sim.run(5, loads);
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "a", metric: "cpu" },
      { tick: 9, pod: "b", metric: "cpu" },
      { tick: 9, pod: "z", metric: "cpu" },
      { tick: 15, pod: "c", metric: "cpu" },
    ]);
  });

  it("fires only once per pod however many containers breach", () => {
    const sim = new Sim(policy({ maxConcurrentMigrations: 5 })).run(20, () => [
      { pod: "web", container: "app", cpu: 95 },
      { pod: "web", container: "proxy", cpu: 95 },
    ]);
    expect(sim.decisions.map((d) => [d.tick, d.pod, d.container])).toEqual([[9, "web", "app"]]);
  });

  it("decides again once a decision that came to nothing is released, with no cooldown", () => {
    const sim = new Sim(policy({ cooldownSeconds: 600 })).run(10, () => [
      { pod: "a", cpu: 95 },
      { pod: "b", cpu: 10 },
    ]);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "a", metric: "cpu" }]);
    // Creating a's Migration failed: the controller releases it and drops its samples.
    expect(sim.engine.release("shop", "a")).toBe(true);
    sim.engine.forget("shop", "a");
    expect(sim.engine.inFlightCount("edge")).toBe(0);
    // The cap of 1 is free again: b goes once 8 of its 10 samples breach (a, with
    // a new full window to gather, would be next, but b now holds the cap).
    sim.run(10, () => [
      { pod: "a", cpu: 95 },
      { pod: "b", cpu: 95 },
    ]);
    expect(sim.fired()).toEqual([
      { tick: 9, pod: "a", metric: "cpu" },
      { tick: 17, pod: "b", metric: "cpu" },
    ]);
    expect(sim.engine.release("shop", "nobody")).toBe(false);
  });

  it("agrees with the Migrations that exist, giving a fresh decision time to be created", () => {
    const sim = new Sim(policy({ maxConcurrentMigrations: 3 })).run(10, () => [
      { pod: "a", cpu: 95 },
      { pod: "b", cpu: 95 },
    ]);
    sim.engine.migrationStarted("shop", "manual", "edge-a");
    expect(sim.engine.inFlightCount("edge")).toBe(3);
    const now = sim.now(9);
    // a's Migration exists; b's not yet (within the grace); manual's is gone.
    expect(sim.engine.reconcileInFlight(new Set(["shop/a"]), now + 1000, 30_000)).toEqual([
      "shop/manual",
    ]);
    expect(sim.engine.inFlightCount("edge")).toBe(2);
    // Past the grace, b's decision never became a Migration; a's is confirmed for good.
    expect(sim.engine.reconcileInFlight(new Set(["shop/a"]), now + 31_000, 30_000)).toEqual([
      "shop/b",
    ]);
    expect(sim.engine.reconcileInFlight(new Set(), now + 31_000, 30_000)).toEqual(["shop/a"]);
    expect(sim.engine.inFlightCount("edge")).toBe(0);
  });

  it("does not keep pods that are gone", () => {
    const sim = new Sim(policy()).run(5, () => [
      { pod: "a", cpu: 10 },
      { pod: "b", cpu: 10, container: "x" },
      { pod: "b", cpu: 10, container: "y" },
    ]);
    expect(sim.engine.prune((_ns, pod) => pod === "a", sim.now())).toEqual(["shop/b"]);
    // b is forgotten: nothing of it is left to prune.
    expect(sim.engine.prune((_ns, pod) => pod === "a", sim.now())).toEqual([]);
    // A new pod under a's name (another uid) replaces a.
    expect(sim.engine.prune((_ns, _pod, uid) => uid === "uid-z", sim.now())).toEqual(["shop/a"]);
    expect(sim.engine.prune(() => false, sim.now())).toEqual([]);
  });

  it("counts migrations it did not decide (manual ones) against the cap", () => {
    const sim = new Sim(policy({ cooldownSeconds: 0 }));
    sim.engine.migrationStarted("shop", "manual", "edge-b");
    sim.engine.migrationStarted("shop", "manual", "edge-b"); // idempotent
    sim.run(15, hot(["web"]));
    expect(sim.fired()).toEqual([]);
    sim.engine.migrationFinished("shop", "manual", sim.now());
    sim.run(1, hot(["web"]));
    expect(sim.fired()).toEqual([{ tick: 15, pod: "web", metric: "cpu" }]);
  });
});

describe("node pressure", () => {
  const nodePolicy = (over: Partial<EdgeNodePolicy> = {}) =>
    policy({
      thresholds: { node: { cpuPercent: 75, memoryPercent: 90 } },
      maxConcurrentMigrations: 3,
      ...over,
    });
  // On a 4-core node: 1.5 + (0.9 + 0.8) + 0.5 = 3.7 cores = 92.5%.
  const busyNode = (): Load[] => [
    { pod: "big", cpu: 150 },
    { pod: "duo", container: "main", cpu: 90 },
    { pod: "duo", container: "helper", cpu: 80 },
    { pod: "small", cpu: 50 },
  ];

  it("moves the pod using the most in total, naming its busiest container", () => {
    const sim = new Sim(nodePolicy()).run(20, busyNode);
    expect(sim.decisions).toEqual([
      expect.objectContaining({
        tick: 9,
        pod: "duo",
        container: "main",
        node: "edge-a",
        metric: "nodeCpu",
        value: 92.5,
        threshold: 75,
        windowSeconds: 10,
      }),
    ]);
  });

  it("waits for that migration before choosing another, then needs new evidence", () => {
    const sim = new Sim(nodePolicy({ cooldownSeconds: 0 })).run(15, busyNode);
    sim.engine.migrationFinished("shop", "duo", sim.now(14));
    sim.engine.forget("shop", "duo");
    // Still 2.0 cores of 4 = 50%: no more pressure once duo has gone.
    sim.run(30, () => busyNode().filter((l) => l.pod !== "duo"));
    expect(sim.fired()).toEqual([{ tick: 9, pod: "duo", metric: "nodeCpu" }]);

    // Pressure again: a full new window after the last migration, then the busiest pod.
    sim.run(20, () => [...busyNode().filter((l) => l.pod !== "duo"), { pod: "new", cpu: 190 }]);
    expect(sim.fired().at(-1)).toEqual({ tick: 52, pod: "new", metric: "nodeCpu" });
  });

  it("judges the node on new samples only once a migration off it has finished", () => {
    const sim = new Sim(nodePolicy({ cooldownSeconds: 0 }));
    sim.engine.migrationStarted("shop", "manual", "edge-a");
    sim.run(15, busyNode);
    sim.engine.migrationFinished("shop", "manual", sim.now(14));
    sim.run(15, busyNode);
    expect(sim.fired()).toEqual([{ tick: 24, pod: "duo", metric: "nodeCpu" }]);
  });

  it("skips pods that cannot move and takes the next busiest", () => {
    const sim = new Sim(nodePolicy());
    // duo already has a migration in flight from another node's point of view.
    sim.engine.migrationStarted("shop", "duo", "edge-b");
    sim.run(20, busyNode);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "big", metric: "nodeCpu" }]);
  });

  it("never chooses a pod that cannot move (a StatefulSet's) as the victim", () => {
    const engine = new DecisionEngine({ movable: (_ns, pod) => pod !== "duo" });
    const sim = new Sim(nodePolicy(), "edge", engine).run(20, busyNode);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "big", metric: "nodeCpu" }]);
  });

  it("does nothing while the node is below its threshold or only briefly above it", () => {
    // 92.5% every third interval, 52.5% otherwise.
    const sim = new Sim(nodePolicy()).run(40, (t) =>
      busyNode().map((l) => (l.pod === "duo" && t % 3 !== 0 ? { ...l, cpu: 5 } : l)),
    );
    expect(sim.fired()).toEqual([]);
  });

  it("fires on node memory", () => {
    const sim = new Sim(nodePolicy()).run(20, () => [
      { pod: "a", cpu: 1, mem: 400 },
      { pod: "b", cpu: 1, mem: 350 },
    ]);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "a", metric: "nodeMemory" }]);
    expect(sim.decisions[0]?.value).toBe(93.75);
  });

  it("leaves out monitors that went silent: they neither add load nor get chosen", () => {
    // big alone would be 3.5 of 4 cores, but its monitor stops after tick 2.
    const sim = new Sim(nodePolicy()).run(40, (t) => [
      ...(t < 3 ? [{ pod: "big", cpu: 350 }] : []),
      { pod: "small", cpu: 50 },
    ]);
    expect(sim.fired()).toEqual([]);

    const sim2 = new Sim(nodePolicy()).run(40, (t) => [
      ...(t < 3 ? [{ pod: "big", cpu: 350 }] : []),
      { pod: "heavy", cpu: 320 },
    ]);
    expect(sim2.fired()).toEqual([{ tick: 9, pod: "heavy", metric: "nodeCpu" }]);
  });

  it("ignores a node without allocatable", () => {
    const sim = new Sim(nodePolicy({ nodes: { "edge-a": undefined } })).run(20, busyNode);
    expect(sim.fired()).toEqual([]);
  });
});

describe("configuration", () => {
  it("drops a node's pods when the EdgeNode no longer matches it", () => {
    const sim = new Sim().run(9, () => [{ pod: "web", cpu: 99 }]);
    sim.engine.configure("edge", policy({ nodes: { "edge-b": undefined } }));
    sim.run(20, () => [{ pod: "web", cpu: 99 }]);
    expect(sim.fired()).toEqual([]);
    sim.engine.configure("edge", policy());
    sim.run(10, () => [{ pod: "web", cpu: 99 }]);
    expect(sim.fired()).toEqual([{ tick: 38, pod: "web", metric: "cpu" }]);
  });

  it("refuses an invalid policy", () => {
    const e = new DecisionEngine();
    expect(() => e.configure("x", policy({ samplingIntervalSeconds: 0 }))).toThrow(RangeError);
    expect(() => e.configure("x", policy({ sustainedWindowSeconds: 0.5 }))).toThrow(RangeError);
    expect(() => e.configure("x", policy({ breachPercent: 101 }))).toThrow(RangeError);
    expect(() => e.configure("x", policy({ maxConcurrentMigrations: 0 }))).toThrow(RangeError);
  });

  it("uses the window length in samples, whatever the interval", () => {
    const sim = new Sim(policy({ samplingIntervalSeconds: 2, sustainedWindowSeconds: 10 }));
    for (let i = 0; i < 10; i++) {
      for (const d of sim.engine.observe(
        observation({ pod: "web", cpu: 95 }, T0 + i * 2000),
        T0 + i * 2000 + 40,
      )) {
        sim.decisions.push({ ...d, tick: i });
      }
    }
    // 5 samples cover 10 s at 2 s each.
    expect(sim.fired()).toEqual([{ tick: 4, pod: "web", metric: "cpu" }]);
  });
});

describe("migrationName", () => {
  const dns = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

  it("is the pod name plus a hash of the uid", () => {
    const n = migrationName("web-7d4f9", "0b7e1c7a-5d5e-4c1e-9d7e-2f0a1b2c3d4e");
    expect(n).toMatch(/^web-7d4f9-[0-9a-f]{8}$/);
    expect(migrationName("web-7d4f9", "0b7e1c7a-5d5e-4c1e-9d7e-2f0a1b2c3d4e")).toBe(n);
    expect(migrationName("web-7d4f9", "another-uid")).not.toBe(n);
  });

  it.each([["a".repeat(253)], [`${"a".repeat(243)}-.b`], [`${"a".repeat(243)}.bcdef`], ["x.y.z"]])(
    "stays a valid DNS subdomain for %j",
    (pod) => {
      for (const attempt of [1, 2, 1000]) {
        const n = migrationName(pod, "uid", attempt);
        expect(n.length).toBeLessThanOrEqual(253);
        expect(n).toMatch(dns);
      }
    },
  );

  it("names each attempt of the same pod apart: the next is one past the highest", () => {
    const first = migrationName("web", "u1");
    expect(nextMigrationName("web", "u1", [])).toBe(first);
    expect(nextMigrationName("web", "u1", ["other", migrationName("web", "u2")])).toBe(first);
    expect(nextMigrationName("web", "u1", [first])).toBe(`${first}-2`);
    expect(nextMigrationName("web", "u1", [first, `${first}-2`, `${first}-7`])).toBe(`${first}-8`);
    // Collected attempts leave no gap to fill: still one past the highest left.
    expect(nextMigrationName("web", "u1", [`${first}-3`])).toBe(`${first}-4`);
    expect(nextMigrationName("web", "u1", [`${first}-x`, `${first}-0`])).toBe(first);
  });
});

describe("the application's own metric", () => {
  const requests = policy({
    cooldownSeconds: 0,
    thresholds: {
      application: {
        port: 8080,
        metric: "http_requests_total",
        matchers: [{ label: "code", operator: "!=", value: "500" }],
        type: "Counter",
        per: "Minute",
        triggerValue: 100,
      },
    },
  });

  it("a rate sustained above the trigger over the window decides, with the series in the reason", () => {
    const sim = new Sim(requests).run(12, () => [{ pod: "web", cpu: 5, app: 150 }]);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "web", metric: "application" }]);
    expect(sim.decisions[0]).toMatchObject({
      value: 150,
      threshold: 100,
      series: 'http_requests_total{code!="500"} rate per minute',
    });
  });

  it("a burst shorter than the window, and a value exactly at the trigger, decide nothing", () => {
    const sim = new Sim(requests);
    sim.run(5, () => [{ pod: "web", cpu: 5, app: 500 }]);
    sim.run(20, () => [{ pod: "web", cpu: 5, app: 20 }]);
    sim.run(20, () => [{ pod: "web", cpu: 5, app: 100 }]);
    expect(sim.fired()).toEqual([]);
  });

  it("failed scrapes, an absent series and counter resets never count as breaches", () => {
    const sim = new Sim(requests);
    const bad = ["scrape_failed", "absent", "counter_reset"] as const;
    // Three in ten samples without a value: 7 of 10 above is below 80%.
    sim.run(30, (t) => [{ pod: "web", cpu: 5, app: t % 10 < 3 ? bad[t % 3] : 150 }]);
    expect(sim.fired()).toEqual([]);
    // Nothing but failures: nothing.
    sim.run(30, (t) => [{ pod: "web", cpu: 5, app: bad[t % 3] }]);
    expect(sim.fired()).toEqual([]);
  });

  it("re-arms only on a reading below the rearm level (0.9 x trigger by default), never on a failed scrape", () => {
    const sim = new Sim(requests).run(10, () => [{ pod: "web", cpu: 5, app: 150 }]);
    sim.engine.migrationFinished("shop", "web", sim.now());
    sim.run(3, () => [{ pod: "web", cpu: 5, app: "scrape_failed" }]);
    sim.run(3, () => [{ pod: "web", cpu: 5, app: 95 }]); // below the trigger, above 90
    sim.run(20, () => [{ pod: "web", cpu: 5, app: 150 }]);
    expect(sim.fired()).toHaveLength(1);
    sim.run(1, () => [{ pod: "web", cpu: 5, app: 80 }]);
    sim.run(20, () => [{ pod: "web", cpu: 5, app: 150 }]);
    expect(sim.fired()).toHaveLength(2);
  });

  it("a gauge's value; containers without the metric never decide on it", () => {
    const depth = policy({
      thresholds: {
        application: { port: 9, metric: "queue_depth", type: "Gauge", triggerValue: 50 },
      },
    });
    const sim = new Sim(depth).run(12, () => [
      { pod: "web", container: "sidecar", cpu: 5 },
      { pod: "web", cpu: 5, app: 70 },
    ]);
    expect(sim.decisions.map((d) => [d.container, d.series])).toEqual([
      ["app", "queue_depth value"],
    ]);
  });
});

describe("the way back to the edge (returnToEdge)", () => {
  const back = (over: Partial<EdgeNodePolicy> = {}) =>
    policy({
      cooldownSeconds: 0,
      returnToEdge: { cpuPercent: 20, windowSeconds: 10, cooldownSeconds: 0 },
      ...over,
    });
  /** A pod in the cloud (cloud-1) that may return to EdgeNode "edge". */
  class CloudSim extends Sim {
    stepCloud(loads: Load[], returnTo = "edge"): void {
      for (const l of loads) {
        const o = observation({ node: "cloud-1", ...l }, this.ts());
        for (const d of this.engine.observe(o, this.now(), returnTo)) {
          this.decisions.push({ ...d, tick: this.tick });
        }
      }
      this.tick++;
    }
    runCloud(ticks: number, loads: (tick: number) => Load[]): this {
      for (let i = 0; i < ticks; i++) this.stepCloud(loads(this.tick));
      return this;
    }
  }

  it("a pod idle in the cloud for the return window returns, once, with the level in the reason", () => {
    const sim = new CloudSim(back()).runCloud(30, () => [{ pod: "web", cpu: 5 }]);
    expect(sim.fired()).toEqual([{ tick: 9, pod: "web", metric: "cpu" }]);
    expect(sim.decisions[0]).toMatchObject({
      direction: "ToEdge",
      edgeNode: "edge",
      node: "cloud-1",
      value: 5,
      threshold: 20,
      windowSeconds: 10,
    });
    // In flight: it counts against the EdgeNode's cap like a move out.
    expect(sim.engine.inFlightCount("edge")).toBe(1);
  });

  it("a load above the return level, or hovering around it, keeps the pod in the cloud", () => {
    expect(new CloudSim(back()).runCloud(40, () => [{ pod: "web", cpu: 30 }]).fired()).toEqual([]);
    // Half the samples below is less than breachPercent (80) of the window.
    const hover = new CloudSim(back()).runCloud(40, (t) => [{ pod: "web", cpu: t % 2 ? 15 : 25 }]);
    expect(hover.fired()).toEqual([]);
    // At the level is not below it.
    expect(new CloudSim(back()).runCloud(40, () => [{ pod: "web", cpu: 20 }]).fired()).toEqual([]);
  });

  it("never returns without returnToEdge, nor on samples of an edge node", () => {
    expect(new CloudSim(policy()).runCloud(40, () => [{ pod: "web", cpu: 1 }]).fired()).toEqual([]);
    const onEdge = new CloudSim(back()).runCloud(40, () => [
      { pod: "web", node: "edge-a", cpu: 1 },
    ]);
    expect(onEdge.fired()).toEqual([]);
  });

  it("every level must hold, and every busy container keeps its pod", () => {
    const both = back({
      returnToEdge: { cpuPercent: 20, memoryPercent: 30, windowSeconds: 10, cooldownSeconds: 0 },
    });
    const memHigh = new CloudSim(both).runCloud(40, () => [{ pod: "web", cpu: 1, mem: 50 }]);
    expect(memHigh.fired()).toEqual([]);
    const sidecarBusy = new CloudSim(back()).runCloud(40, () => [
      { pod: "web", container: "app", cpu: 1 },
      { pod: "web", container: "cache", cpu: 60 },
    ]);
    expect(sidecarBusy.fired()).toEqual([]);
    const bothIdle = new CloudSim(back()).runCloud(40, () => [
      { pod: "web", container: "app", cpu: 1 },
      { pod: "web", container: "cache", cpu: 2 },
    ]);
    expect(bothIdle.fired()).toHaveLength(1);
  });

  it("the application's level: only readings count, a failed scrape or an absent series never does", () => {
    const app = back({
      thresholds: {
        application: {
          port: 8080,
          metric: "req_total",
          type: "Counter",
          per: "Minute",
          triggerValue: 100,
        },
      },
      returnToEdge: { applicationValue: 10, windowSeconds: 10, cooldownSeconds: 0 },
    });
    const failing = new CloudSim(app).runCloud(40, (t) => [
      { pod: "web", cpu: 1, app: t % 2 ? "scrape_failed" : "absent" },
    ]);
    expect(failing.fired()).toEqual([]);
    const idle = new CloudSim(app).runCloud(40, () => [{ pod: "web", cpu: 1, app: 2 }]);
    expect(idle.fired()).toEqual([{ tick: 9, pod: "web", metric: "application" }]);
    expect(idle.decisions[0]?.series).toBe("req_total rate per minute");
  });

  it("the return cooldown counts from the pod's arrival, either way: no ping-pong within it", () => {
    // web arrived in the cloud at tick 0; web-back arrived on the edge at tick 0.
    const arrived = new Map([
      ["shop/web", T0],
      ["shop/web-back", T0],
    ]);
    const engine = new DecisionEngine({ arrivedAt: (ns, pod) => arrived.get(`${ns}/${pod}`) });
    const p = back({ returnToEdge: { cpuPercent: 20, windowSeconds: 10, cooldownSeconds: 30 } });
    const sim = new CloudSim(p, "edge", engine);
    sim.runCloud(40, () => [{ pod: "web", cpu: 1 }]);
    // Idle from the start, but it may return only 30 s after it arrived.
    expect(sim.fired()).toEqual([{ tick: 30, pod: "web", metric: "cpu" }]);

    // Back on the edge, a load over the trigger moves it out only after the cooldown too.
    const out = new Sim(
      p,
      "edge",
      new DecisionEngine({ arrivedAt: (ns, pod) => arrived.get(`${ns}/${pod}`) }),
    );
    out.run(40, () => [{ pod: "web-back", cpu: 95 }]);
    expect(out.fired()).toEqual([{ tick: 30, pod: "web-back", metric: "cpu" }]);
    // Without returnToEdge an arrival means nothing (no cooldown of its own).
    const plain = new Sim(
      policy({ cooldownSeconds: 0 }),
      "edge",
      new DecisionEngine({ arrivedAt: () => T0 }),
    );
    expect(plain.run(20, () => [{ pod: "web-back", cpu: 95 }]).fired()).toEqual([
      { tick: 9, pod: "web-back", metric: "cpu" },
    ]);
  });

  it("a load that swings across both levels moves the pod at most once per cooldown", () => {
    // 15 s above the trigger, 15 s below the return level, over and over, for 3 minutes.
    const arrivals = new Map<string, number>();
    const engine = new DecisionEngine({ arrivedAt: (ns, pod) => arrivals.get(`${ns}/${pod}`) });
    const p = back({ returnToEdge: { cpuPercent: 20, windowSeconds: 10, cooldownSeconds: 60 } });
    const sim = new CloudSim(p, "edge", engine);
    let where: "edge" | "cloud" = "edge";
    let pod = "web";
    const moves: { tick: number; to: string }[] = [];
    for (let t = 0; t < 180; t++) {
      const cpu = Math.floor(t / 15) % 2 === 0 ? 95 : 5;
      const before = sim.decisions.length;
      if (where === "edge") sim.step([{ pod, cpu }]);
      else sim.stepCloud([{ pod, cpu }]);
      const d = sim.decisions[before];
      if (!d) continue;
      // The migration runs and ends at once; the pod arrives under a new name.
      engine.migrationFinished(d.namespace, d.pod, sim.now(t));
      where = where === "edge" ? "cloud" : "edge";
      pod = `${pod}-x`;
      arrivals.set(`shop/${pod}`, sim.ts(t));
      moves.push({ tick: t, to: where });
    }
    expect(moves.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < moves.length; i++) {
      expect((moves[i]?.tick ?? 0) - (moves[i - 1]?.tick ?? 0)).toBeGreaterThanOrEqual(60);
    }
  });

  it("shares the EdgeNode's in-flight cap with moves out, and a deferred return waits", () => {
    const sim = new CloudSim(back());
    sim.engine.migrationStarted("shop", "other", "edge-a");
    sim.runCloud(20, () => [{ pod: "web", cpu: 1 }]);
    expect(sim.fired()).toEqual([]);
    sim.engine.migrationFinished("shop", "other", sim.now());
    sim.runCloud(1, () => [{ pod: "web", cpu: 1 }]);
    expect(sim.fired()).toEqual([{ tick: 20, pod: "web", metric: "cpu" }]);
    // No edge node can take it: not in flight, judged again only after 10 s.
    sim.engine.deferReturn("shop", "web", sim.now(20), 10_000);
    expect(sim.engine.inFlightCount("edge")).toBe(0);
    sim.runCloud(15, () => [{ pod: "web", cpu: 1 }]);
    expect(sim.fired().map((f) => f.tick)).toEqual([20, 30]);
    // A return started elsewhere (found at start-up) counts too.
    const other = new CloudSim(back());
    other.engine.migrationStarted("shop", "web", "cloud-1", "edge");
    expect(other.engine.inFlightCount("edge")).toBe(1);
  });
});
