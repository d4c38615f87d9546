// One migration through the real stack, started as a user starts it
// (`kubectl edgeshift migrate POD`): the edge agent calls its own kubelet's
// checkpoint API, containerd + runc + CRIU dump the container, the image goes to
// the registry, and the restored pod starts on the cloud node from that image
// through containerd's restore, keeping the process's memory.
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import type { Migration } from "../../operator/api/v1alpha1.ts";
import { waitUntil } from "../cluster/process.ts";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

const run = promisify(execFile);
const plugin = join(resolve(import.meta.dirname, "../.."), "plugin/kubectl-edgeshift");

// A random token drawn at start and a counter, both only in the shell's memory.
const COUNTER = [
  "tok=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n')",
  "i=0",
  'while true; do i=$((i+1)); echo "tick $tok $i"; sleep 0.2; done',
].join("; ");

function ticks(log: string): { tok: string; n: number }[] {
  return log
    .split("\n")
    .map((l) => /^tick (\w+) (\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ tok: m[1] ?? "", n: Number(m[2]) }));
}

describe("migration on real nodes", () => {
  it("moves a running container to the cloud node with its memory, every step recorded", async () => {
    const ns = cluster().appNamespace;
    const [edge, cloud] = cluster().nodes;
    await apply(busyboxPod(ns, "counter", edge?.name ?? "", COUNTER));
    await waitForPod(ns, "counter", "Ready", podReady);
    const before = await waitUntil(
      "the counter to reach 10",
      async () => {
        const t = ticks(await kubectl(["-n", ns, "logs", "counter"]));
        return (t.at(-1)?.n ?? 0) >= 10 ? t : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const token = before[0]?.tok;

    const { stdout } = await run(
      plugin,
      ["--kubeconfig", cluster().kubeconfig, "migrate", "counter", "-n", ns, "--timeout", "3m"],
      { maxBuffer: 4 * 1024 * 1024 },
    );
    expect(stdout).toMatch(/Succeeded/);

    const { custom, core } = clients();
    const migs = (await custom.listNamespacedCustomObject({
      group: "edgeshift.dev",
      version: "v1alpha1",
      plural: "migrations",
      namespace: ns,
    })) as { items: Migration[] };
    const m = migs.items.find((x) => x.spec.podName === "counter");
    expect(m?.status?.phase).toBe("Succeeded");
    expect(m?.status?.policy).toBe("checkpoint");
    expect(m?.status?.sourceNode).toBe(edge?.name);
    expect(m?.status?.targetNode).toBe(cloud?.name);
    const t = m?.status?.timestamps ?? {};
    const steps = [
      t.created,
      t.checkpointStarted,
      t.checkpointed,
      t.imagePushed,
      t.restoreStarted,
      t.restored,
      t.cutOver,
    ];
    for (const s of steps) expect(s, JSON.stringify(t)).toBeTruthy();
    const ms = steps.map((s) => Date.parse(s ?? ""));
    // `created` has whole seconds; every later step is in order.
    for (let i = 2; i < ms.length; i++) expect(ms[i]).toBeGreaterThanOrEqual(ms[i - 1] ?? 0);
    expect(m?.status?.containers?.[0]?.image).toMatch(/@sha256:[0-9a-f]{64}$/);

    // The original is gone; the restored pod runs on the cloud node.
    await waitUntil(
      "the original pod to be gone",
      async () =>
        (await core.readNamespacedPod({ namespace: ns, name: "counter" }).catch(() => undefined))
          ? undefined
          : true,
      { timeoutMs: 60_000 },
    );
    const restoredName = m?.status?.restoredPod ?? "";
    const restored = await waitForPod(ns, restoredName, "Ready", podReady);
    expect(restored.spec?.nodeName).toBe(cloud?.name);

    // Same token, and the counter goes on from where it was: the log holds the
    // original's lines up to the checkpoint, then the restored process's, with
    // no restart from 1 anywhere.
    const after = await waitUntil(
      "the restored counter to advance",
      async () => {
        const tk = ticks(await kubectl(["-n", ns, "logs", restoredName]));
        return (tk.at(-1)?.n ?? 0) > (before.at(-1)?.n ?? 0) + 5 ? tk : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(new Set(after.map((x) => x.tok))).toEqual(new Set([token]));
    expect(after[0]?.n).toBe(1);
    // The kubelet copies the container's log after the CRIU dump, and the
    // original keeps running meanwhile (the checkpoint API leaves it running):
    // the log may hold a few lines the dumped state had not printed yet, which
    // the restored process prints again. So the sequence steps by one except at
    // at most one hand-over, where it repeats a few numbers, never restarts.
    const breaks = after.flatMap((x, i) =>
      i > 0 && x.n !== (after[i - 1]?.n ?? 0) + 1 ? [i] : [],
    );
    expect(breaks.length).toBeLessThanOrEqual(1);
    for (const i of breaks) {
      const prev = after[i - 1]?.n ?? 0;
      const next = after[i]?.n ?? 0;
      expect(next).toBeLessThanOrEqual(prev);
      expect(next).toBeGreaterThanOrEqual(before.at(-1)?.n ?? 0);
      console.log(
        `[measure] hand-over: log had ${prev}, restored process went on from ${next} (${prev - next + 1} repeated)`,
      );
    }
    await kubectl(["-n", ns, "delete", "pod", restoredName, "--wait=false"]);
  });
});
