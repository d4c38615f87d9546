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
import { Log } from "@kubernetes/client-node";
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
import { at, awaitMigration, cleanUp, createMigration, nodesByRole, podRecorder } from "./moves.ts";
import { blockTraffic, containerCgroup, containerId, node } from "./node-control.ts";
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

async function move(name: string, handoff: Handoff) {
  const { edge } = nodesByRole();
  await apply(busyboxPod(NS(), name, edge, COUNT, { labels: { test: ID } }));
  await waitForPod(NS(), name, "Ready", podReady);
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
  const m = await awaitMigration(NS(), name);
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

describe("hand-off", () => {
  it("Freeze moves the workload: every number in the sink exactly once, none written after the freeze", async () => {
    const { m, orig, own } = await move("ho-freeze", "Freeze");
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
      `[measure] Freeze: original wrote 1..${last}, restored went on from ${own[0]?.n}; downtime ${m.status?.downtimeSeconds} s (freeze to Ready), first restored line ${((firstOwn - (f.frozen ?? 0)) / 1000).toFixed(2)} s after the freeze; migration ${m.status?.duration}`,
    );
  });

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
      const id = containerId(pod, "main");
      const dir = await containerCgroup("freezer", id);
      const self = async () =>
        (await readFile(join(dir, "freezer.self_freezing"), "utf8").catch(() => "")).trim();
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
      // Held: frozen by its own freezer for good (containerd's pause for the
      // dump freezes it too, for a few hundred milliseconds).
      let since = 0;
      const heldAt = await waitUntil(
        "the original held",
        async () => {
          if ((await self()) !== "1") since = 0;
          else if (!since) since = Date.now();
          return since && Date.now() - since > 1500 ? since : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 20 },
      );
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
