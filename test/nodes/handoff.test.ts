// A move, not a fork: what the workload did is in the sink exactly once. The
// workload counts in its shell's memory only and writes each number to its
// stdout, which the runtime on the node writes to the container's log, outside
// the pod. The original's log is followed through the API until it dies; the
// restored container's log starts with the lines carried in the checkpoint
// (up to the dump), then its own. Under Freeze (the default) the original
// writes nothing after the freeze and the restored copy goes on from exactly
// the next number: no gap, no duplicate. Under Fork the original runs on past
// the dump until cutover: everything it wrote then is written again by the
// restored copy, and those duplicates are the divergence window.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Log, type V1Pod } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { restorePodName } from "../../migration/restore/pod.ts";
import {
  EDGENODE_PLURAL,
  GROUP,
  type Handoff,
  type Migration,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { agentName } from "../../operator/edgenode/agent.ts";
import { waitUntil } from "../cluster/process.ts";
import {
  at,
  awaitMigration,
  cleanUp,
  createMigration,
  getMigration,
  nodesByRole,
  podRecorder,
  sampler,
} from "./moves.ts";
import {
  agentPod,
  blockTraffic,
  containerCgroup,
  containerId,
  holdCriu,
  killContainer,
  node,
  releaseOperatorLease,
  restarts,
  stopOperator,
  waitForHeldCriu,
} from "./node-control.ts";
import { operatorHold } from "./operator-hold.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const ID = "handoff";
const NS = () => cluster().appNamespace;
// About 20 numbers a second, each on a line of its own.
const COUNT = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done";

let made: string[] = [];
afterEach(async () => {
  await cleanUp(NS(), ID, made);
  made = [];
});

interface Line {
  t: number;
  n: number;
}

/** "<RFC 3339 time> <number>" lines of `kubectl logs --timestamps`. */
function parse(text: string): Line[] {
  const out: Line[] = [];
  for (const l of text.split("\n")) {
    const m = /^(\S+) (\d+)$/.exec(l.trim());
    if (m?.[1] && m[2]) out.push({ t: Date.parse(m[1]), n: Number(m[2]) });
  }
  return out;
}

/** Follows a container's log from its start until the container ends. */
function follow(pod: string) {
  const { kc } = clients();
  let text = "";
  const sink = new PassThrough();
  sink.on("data", (d) => {
    text += d;
  });
  const ended = new Promise<void>((resolve) => sink.on("end", () => resolve()));
  const req = new Log(kc).log(NS(), pod, "main", sink, { follow: true, timestamps: true });
  return {
    lines: () => parse(text),
    async stop(): Promise<Line[]> {
      await Promise.race([ended, new Promise((r) => setTimeout(r, 15_000))]);
      (await req).abort();
      return parse(text);
    },
  };
}

function contiguous(ns: number[]): boolean {
  return ns.every((n, i) => i === 0 || n === (ns[i - 1] ?? 0) + 1);
}

/**
 * Waits until the pod's container is held: frozen by its own freezer for good
 * (containerd's pause for the dump freezes it too, for a few hundred
 * milliseconds). Returns when that began, and a reader of its own freezer.
 */
async function held(pod: V1Pod) {
  const dir = await containerCgroup("freezer", containerId(pod, "main"));
  const self = async () =>
    (await readFile(join(dir, "freezer.self_freezing"), "utf8").catch(() => "")).trim();
  let since = 0;
  const at = await waitUntil(
    `${pod.metadata?.name} held`,
    async () => {
      if ((await self()) !== "1") since = 0;
      else if (!since) since = Date.now();
      return since && Date.now() - since > 1500 ? since : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 20 },
  );
  return { at, self };
}

async function move(name: string, handoff: Handoff, during?: (pod: V1Pod) => Promise<void>) {
  const { edge } = nodesByRole();
  await apply(busyboxPod(NS(), name, edge, COUNT, { labels: { test: ID } }));
  const pod = await waitForPod(NS(), name, "Ready", podReady);
  const original = follow(name);
  await waitUntil(
    `${name} to count past 20`,
    async () => ((original.lines().at(-1)?.n ?? 0) > 20 ? true : undefined),
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  made.push(name);
  await createMigration(
    NS(),
    name,
    { podName: name, restorePolicy: "checkpoint", fallbackToRestart: false, handoff },
    { test: ID },
  );
  await during?.(pod);
  const m = await awaitMigration(NS(), name, 240_000);
  expect(m.status?.phase, `${m.status?.failureReason}: ${m.status?.message}`).toBe("Succeeded");
  expect(m.status?.handoff).toBe(handoff);
  const restored = m.status?.restoredPod ?? "";
  const orig = await original.stop();
  // The restored copy's own lines: written after its restore started.
  const since = at(m.status?.timestamps?.restoreStarted);
  const own = await waitUntil(
    `${restored} to write 20 numbers of its own`,
    async () => {
      const text = await clients()
        .core.readNamespacedPodLog({
          namespace: NS(),
          name: restored,
          container: "main",
          timestamps: true,
        })
        .catch(() => "");
      const l = parse(text).filter((x) => x.t >= since);
      return l.length >= 20 ? l : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  return { m, orig, own };
}

function figures(m: Migration) {
  const t = m.status?.timestamps ?? {};
  return {
    frozen: t.frozen ? at(t.frozen) : undefined,
    checkpointStarted: at(t.checkpointStarted),
    checkpointed: at(t.checkpointed),
    cutOver: at(t.cutOver),
  };
}

/** Freeze: every number once across the move, none after the hold; the downtime recorded. */
function exactlyOnce(m: Migration, orig: Line[], own: Line[]): void {
  const f = figures(m);
  const ns = orig.map((l) => l.n);
  expect(contiguous(ns), "the original's numbers").toBe(true);
  expect(contiguous(own.map((l) => l.n)), "the restored copy's numbers").toBe(true);
  const last = ns.at(-1) ?? 0;
  // The restored copy goes on from exactly the next number.
  expect(own[0]?.n).toBe(last + 1);
  // Held during the kubelet's checkpoint call (from the end of CRIU's dump,
  // before containerd resumed it: no gap), and silent from then on.
  expect(f.frozen).toBeDefined();
  expect(f.frozen ?? 0).toBeGreaterThanOrEqual(f.checkpointStarted);
  expect(f.frozen ?? 0).toBeLessThanOrEqual(f.checkpointed);
  expect(m.status?.containers?.map((c) => c.freezeGapMilliseconds)).toEqual([0]);
  expect(orig.at(-1)?.t ?? 0).toBeLessThanOrEqual(f.frozen ?? 0);
  // Downtime recorded: from the freeze to the restored pod Ready.
  const restored = at(m.status?.timestamps?.restored);
  expect(m.status?.downtimeSeconds).toBeCloseTo((restored - (f.frozen ?? 0)) / 1000, 2);
  expect(m.status?.divergenceSeconds).toBeUndefined();
  const firstOwn = own[0]?.t ?? 0;
  console.log(
    `[measure] Freeze (${m.metadata.name}): original wrote 1..${last}, restored went on from ${own[0]?.n}; downtime ${m.status?.downtimeSeconds} s (freeze to Ready), first restored line ${((firstOwn - (f.frozen ?? 0)) / 1000).toFixed(2)} s after the freeze; migration ${m.status?.duration}`,
  );
}

describe("hand-off", () => {
  it("Freeze moves the workload: every number in the sink exactly once, none written after the freeze", async () => {
    const { m, orig, own } = await move("ho-freeze", "Freeze");
    exactlyOnce(m, orig, own);
  });

  it("deleted while its restored copy runs (cutover held): the original runs again only once that copy has stopped, never two at once", async () => {
    const { edge } = nodesByRole();
    const op = operatorHold(ID, "edgeshift-test-hold-handoff");
    try {
      // Cutover cannot remove the original: the restored copy runs, the original is held.
      await op.hold("removal");
      await apply(busyboxPod(NS(), "ho-back", edge, COUNT, { labels: { test: ID } }));
      await waitForPod(NS(), "ho-back", "Ready", podReady);
      const original = follow("ho-back");
      await waitUntil(
        "ho-back to count past 20",
        async () => ((original.lines().at(-1)?.n ?? 0) > 20 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      made.push("ho-back");
      const before = await op.refusals();
      await createMigration(
        NS(),
        "ho-back",
        { podName: "ho-back", restorePolicy: "checkpoint", fallbackToRestart: false },
        { test: ID },
      );
      const m = await waitUntil(
        "the restored copy Ready, cutover held",
        async () => {
          const x = await getMigration(NS(), "ho-back");
          if (x.status?.phase === "Failed") throw new Error(`failed: ${x.status.message}`);
          return x.status?.phase === "CuttingOver" && (await op.refusals()) > before
            ? x
            : undefined;
        },
        { timeoutMs: 240_000, intervalMs: 250 },
      );
      expect(m.status?.handoff).toBe("Freeze");
      const copy = follow(m.status?.restoredPod ?? "");
      const since = at(m.status?.timestamps?.restoreStarted);
      await waitUntil(
        "the restored copy counting",
        async () => (copy.lines().filter((l) => l.t >= since).length >= 10 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      // What the Migration said until it went.
      const seen = sampler(() => getMigration(NS(), "ho-back"), 50);
      await kubectl(["-n", NS(), "delete", "migration", "ho-back", "--wait=false"]);
      await waitUntil(
        "the Migration gone",
        async () =>
          (await getMigration(NS(), "ho-back").catch(() => undefined)) ? undefined : true,
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      await seen.stop();
      const own = (await copy.stop()).filter((l) => l.t >= since);
      const heldAt = own[0]?.n ?? 0;
      await waitUntil(
        "the original counting again",
        async () => ((original.lines().at(-1)?.n ?? 0) > heldAt + 20 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      const orig = original.lines();
      const ns = orig.map((l) => l.n);
      // The original goes on from its own memory: every number, the hold its one gap.
      expect(contiguous(ns), "the original's numbers").toBe(true);
      const gaps = orig.slice(1).map((l, i) => ({ from: orig[i]?.t ?? 0, to: l.t, n: l.n }));
      gaps.sort((a, b) => b.to - b.from - (a.to - a.from));
      const [hold, next] = gaps;
      expect(hold?.n, "the hold is where the restored copy took over").toBe(heldAt);
      expect((next?.to ?? 0) - (next?.from ?? 0), "no other pause").toBeLessThan(1000);
      // Never two at once: the copy's last line before the original's first after the hold.
      const copyEnd = own.at(-1)?.t ?? 0;
      expect(own.length).toBeGreaterThanOrEqual(10);
      expect(copyEnd).toBeLessThan(hold?.to ?? 0);
      const last = seen.samples.at(-1)?.v.status;
      const released = last?.timestamps?.released;
      expect(released, "released recorded").toBeDefined();
      expect(at(released)).toBeGreaterThanOrEqual(copyEnd);
      console.log(
        `[measure] deleted during cutover: the restored copy wrote ${own[0]?.n}..${own.at(-1)?.n} and stopped; the original held ${(((hold?.to ?? 0) - (hold?.from ?? 0)) / 1000).toFixed(2)} s, ran again ${(((hold?.to ?? 0) - copyEnd) / 1000).toFixed(2)} s after the copy's last line (released ${((at(released) - copyEnd) / 1000).toFixed(2)} s after it)`,
      );
    } finally {
      await op.release();
    }
  }, 360_000);

  it("Fork lets the original run on to cutover: what it wrote after the dump is written again, and that is the divergence window", async () => {
    const { m, orig, own } = await move("ho-fork", "Fork");
    const f = figures(m);
    expect(f.frozen).toBeUndefined();
    const ns = orig.map((l) => l.n);
    expect(contiguous(ns), "the original's numbers").toBe(true);
    expect(contiguous(own.map((l) => l.n)), "the restored copy's numbers").toBe(true);
    // The restored copy starts after the number the dump captured.
    const captured = (own[0]?.n ?? 0) - 1;
    const dups = orig.filter((l) => l.n > captured);
    expect(dups.length, "numbers written twice").toBeGreaterThan(0);
    // Written before the checkpoint started: never again; after it ended: always again.
    expect(orig.filter((l) => l.t < f.checkpointStarted).every((l) => l.n <= captured)).toBe(true);
    expect(orig.filter((l) => l.t > f.checkpointed).every((l) => l.n > captured)).toBe(true);
    // The original ran on until cutover.
    expect(dups.at(-1)?.t ?? 0).toBeGreaterThanOrEqual(f.cutOver - 500);
    expect(m.status?.divergenceSeconds).toBeCloseTo((f.cutOver - f.checkpointed) / 1000, 2);
    expect(m.status?.downtimeSeconds).toBeUndefined();
    console.log(
      `[measure] Fork: ${dups.length} numbers written twice (${captured + 1}..${dups.at(-1)?.n}) over a divergence window of ${m.status?.divergenceSeconds} s; migration ${m.status?.duration}`,
    );
  });

  it("an edge partition during the push: the held original is thawed at the fence deadline, nothing is restored, and the Migration says FenceExpired once the link is back", async () => {
    const { edge } = nodesByRole();
    const FENCE_S = 15;
    const putBack = await freezeTimeout(FENCE_S);
    const [host = "", port = "0"] = cluster().registry.host.split(":");
    const registry = blockTraffic(edge, host, Number(port), "DROP");
    const link = node(edge);
    const pods = await podRecorder(NS());
    try {
      await apply(busyboxPod(NS(), "ho-cut", edge, COUNT, { labels: { test: ID } }));
      const pod = await waitForPod(NS(), "ho-cut", "Ready", podReady);
      // The container's log as the node wrote it, read on the node: no link needed.
      const logFile = `/var/log/pods/${NS()}_ho-cut_${pod.metadata?.uid}/main/0.log`;
      const counted = async () => {
        const out = await link.exec(["cat", logFile]).then((r) => r.stdout);
        const ns = out
          .split("\n")
          .map((l) => /^\S+ stdout F (\d+)$/.exec(l)?.[1])
          .filter((x): x is string => x !== undefined)
          .map(Number);
        return ns.at(-1) ?? 0;
      };
      await waitUntil(
        "ho-cut to count past 20",
        async () => ((await counted()) > 20 ? true : undefined),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
      // The push cannot get through (its packets are dropped, as over a dead uplink).
      await registry.block();
      made.push("ho-cut");
      await createMigration(NS(), "ho-cut", { podName: "ho-cut", handoff: "Freeze" }, { test: ID });
      const { at: heldAt, self } = await held(pod);
      const atHold = await counted();
      // The partition: the edge node loses the API server and the registry.
      await link.cut();
      let thawedAt: number;
      let during: number;
      try {
        await waitUntil(
          "the fence deadline thawing the original",
          async () => ((await self()) === "0" ? true : undefined),
          { timeoutMs: (FENCE_S + 30) * 1000, intervalMs: 50 },
        );
        thawedAt = Date.now();
        // It runs on, still cut off.
        during = await waitUntil(
          "the thawed original counting on",
          async () => {
            const n = await counted();
            return n > atHold + 5 ? n : undefined;
          },
          { timeoutMs: 20_000, intervalMs: 200 },
        );
      } finally {
        await link.heal();
        await registry.unblock();
      }
      const m = await awaitMigration(NS(), "ho-cut", 240_000);
      expect(m.status?.phase).toBe("Failed");
      expect(m.status?.failureReason, m.status?.message).toBe("FenceExpired");
      expect(m.status?.restoredPod).toBeUndefined();
      expect(m.status?.timestamps?.thawed).toBeDefined();
      // Thawed by the deadline (the hold seen from here a little after it happened).
      const heldS = (thawedAt - heldAt) / 1000;
      expect(heldS).toBeGreaterThan(FENCE_S - 2);
      expect(heldS).toBeLessThan(FENCE_S + 10);
      // Exactly one copy: the original, running on; no restored pod was ever made.
      const restorePod = restorePodName("ho-cut", m.metadata.uid ?? "");
      expect(pods.names()).not.toContain(restorePod);
      const live = await clients().core.readNamespacedPod({ namespace: NS(), name: "ho-cut" });
      expect(live.metadata?.uid).toBe(pod.metadata?.uid);
      expect(live.status?.phase).toBe("Running");
      const after = await waitUntil(
        "the original counting on after the partition",
        async () => {
          const n = await counted();
          return n > during ? n : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 200 },
      );
      console.log(
        `[measure] partition during the push: held at ${atHold}, thawed by the fence after ${heldS.toFixed(1)} s (deadline ${FENCE_S} s) while cut off, counting on to ${after}; ${m.status?.failureReason}: ${m.status?.message}`,
      );
    } finally {
      pods.stop();
      await registry.unblock();
      await link.heal();
      await putBack();
    }
  }, 400_000);
});

/**
 * Sets the shared EdgeNode's freezeTimeoutSeconds and waits until its agent
 * runs with it; returns what puts the default back.
 */
async function freezeTimeout(seconds: number): Promise<() => Promise<void>> {
  const { custom } = clients();
  const name = cluster().edgeNode;
  const ref = { group: GROUP, version: VERSION, plural: EDGENODE_PLURAL, name };
  const set = async (value: number) => {
    await custom.patchClusterCustomObject({
      ...ref,
      body: [{ op: "add", path: "/spec/freezeTimeoutSeconds", value }],
    });
    const ds = agentName(name);
    await waitUntil(
      `the agent DaemonSet with a ${value} s fence`,
      async () => {
        const out = await kubectl([
          "-n",
          "edgeshift-system",
          "get",
          "ds",
          ds,
          "-o",
          "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='EDGESHIFT_FENCE_TIMEOUT_SECONDS')].value}",
        ]);
        return out.trim() === String(value) ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await kubectl(["-n", "edgeshift-system", "rollout", "status", `ds/${ds}`, "--timeout=180s"]);
  };
  await set(seconds);
  return () => set(120);
}

/** SIGKILL to the edge agent (then `meanwhile`); resolves once the DaemonSet's next one is Ready. */
async function killAgent(edge: string, meanwhile?: () => Promise<void>): Promise<void> {
  const agent = await agentPod(edge);
  const before = restarts(agent, "agent");
  await killContainer(agent, "agent");
  await meanwhile?.();
  await waitUntil(
    "the agent back",
    async () => {
      const a = await agentPod(edge);
      return restarts(a, "agent") > before && a.status?.containerStatuses?.[0]?.ready
        ? true
        : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
}

/** Waits until the Migration `name` satisfies `ok`; fails at once on Failed. */
function until(name: string, what: string, ok: (m: Migration) => boolean) {
  return waitUntil(
    `${name}: ${what}`,
    async () => {
      const m = await getMigration(NS(), name);
      if (m.status?.phase === "Failed") throw new Error(`failed: ${m.status.message}`);
      return ok(m) ? m : undefined;
    },
    { timeoutMs: 240_000, intervalMs: 100 },
  );
}

// Every kill ends as a move: one copy at any moment (every number once, so
// never two copies counting), and no frozen original left behind (it is gone
// at the end). The operator's kills hold its Lease, so no replica acts until
// the test hands it back: the world waits in the state of the kill.
describe("hand-off Freeze, a component killed at each step", () => {
  const hold = operatorHold(ID, "edgeshift-test-hold-handoff-kill");
  afterEach(async () => {
    await hold.release();
    await releaseOperatorLease();
  });

  it("the agent, inside the kubelet's checkpoint call (CRIU held): the next agent checkpoints again and holds", async () => {
    const { edge } = nodesByRole();
    const release = await holdCriu(edge);
    try {
      const { m, orig, own } = await move("ho-k-criu", "Freeze", async () => {
        await waitForHeldCriu(edge);
        // The connection closes and the kubelet cancels its CRI call; CRIU then runs or not.
        await killAgent(edge, release);
      });
      exactlyOnce(m, orig, own);
    } finally {
      await release();
    }
  }, 360_000);

  it("the agent, while it holds the original (the push held up): the next agent takes the hold up", async () => {
    const { edge } = nodesByRole();
    const [host = "", port = "0"] = cluster().registry.host.split(":");
    const registry = blockTraffic(edge, host, Number(port), "DROP");
    await registry.block();
    try {
      const { m, orig, own } = await move("ho-k-held", "Freeze", async (pod) => {
        await held(pod);
        await killAgent(edge);
        await registry.unblock();
      });
      exactlyOnce(m, orig, own);
    } finally {
      await registry.unblock();
    }
  }, 360_000);

  it("the operator, in Checkpointing: the agent holds and pushes alone, the next leader restores", async () => {
    const { m, orig, own } = await move("ho-k-op1", "Freeze", async () => {
      await until("ho-k-op1", "Checkpointing", (x) => x.status?.phase === "Checkpointing");
      await stopOperator();
      const x = await until(
        "ho-k-op1",
        "the image reported with no operator",
        (y) => y.status?.conditions?.some((c) => c.type === "ImagePushed") ?? false,
      );
      expect(x.status?.phase).toBe("Checkpointing");
      expect(x.status?.timestamps?.frozen).toBeDefined();
      await releaseOperatorLease();
    });
    exactlyOnce(m, orig, own);
  }, 360_000);

  it("the operator, in Restoring with the restored pod created: the next leader carries on", async () => {
    const { m, orig, own } = await move("ho-k-op2", "Freeze", async () => {
      await until("ho-k-op2", "the restored pod recorded", (x) => Boolean(x.status?.restoredPod));
      await stopOperator();
      await releaseOperatorLease();
    });
    exactlyOnce(m, orig, own);
  }, 360_000);

  it("the operator, in CuttingOver with the restored copy Ready and the original held: the next leader cuts over", async () => {
    await hold.hold("removal");
    const before = await hold.refusals();
    const { m, orig, own } = await move("ho-k-op3", "Freeze", async () => {
      await until("ho-k-op3", "cutover held", (x) => x.status?.phase === "CuttingOver");
      await waitUntil(
        "the operator refused the original's removal",
        async () => ((await hold.refusals()) > before ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      await stopOperator();
      await hold.release();
      await releaseOperatorLease();
    });
    exactlyOnce(m, orig, own);
  }, 360_000);
});
