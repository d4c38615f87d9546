// The kubectl plugin's pure parts: command line, formatting, progress lines,
// and the follow loop with stand-in clients (test/integration/plugin.test.ts
// runs the real thing against an API server).
import { describe, expect, it } from "vitest";
import type { Migration, MigrationStatus } from "../../operator/api/v1alpha1.ts";
import { migrationName } from "../../operator/decision/engine.ts";
import { parseCommandLine, UsageError } from "../../plugin/args.ts";
import { renderDescribe } from "../../plugin/describe.ts";
import { type FollowDeps, follow } from "../../plugin/follow.ts";
import { formatAge, formatBytes, table, timeline, triggerText } from "../../plugin/format.ts";
import { renderList } from "../../plugin/list.ts";
import { buildMigration, outcome, Progress } from "../../plugin/migrate.ts";
import { renderStatus } from "../../plugin/status.ts";
import {
  fullEdgeNode,
  fullEdgeNodeStatus,
  fullMigration,
  fullMigrationStatus,
} from "../support/api-fixtures.ts";

const now = new Date("2026-03-01T12:00:00Z");

function mig(name: string, status?: MigrationStatus, created = "2026-03-01T11:00:00Z"): Migration {
  return {
    apiVersion: "edgeshift.dev/v1alpha1",
    kind: "Migration",
    metadata: { name, namespace: "apps", creationTimestamp: created as unknown as Date },
    spec: { podName: name.replace(/-mig$/, "") },
    status,
  };
}

describe("parseCommandLine", () => {
  const usage = (argv: string[]) => {
    try {
      parseCommandLine(argv);
    } catch (e) {
      if (e instanceof UsageError) return e.message;
      throw e;
    }
    throw new Error(`accepted ${argv.join(" ")}`);
  };

  it("parses every command with its flags, in any order", () => {
    expect(parseCommandLine(["status"]).command).toEqual({ name: "status", recent: 10 });
    expect(parseCommandLine(["--recent", "3", "status"]).command).toEqual({
      name: "status",
      recent: 3,
    });
    expect(parseCommandLine(["list", "-A"]).command).toEqual({ name: "list", allNamespaces: true });
    expect(parseCommandLine(["describe", "m1", "-n", "apps", "--context", "prod"])).toEqual({
      command: { name: "describe", migration: "m1" },
      namespace: "apps",
      context: "prod",
      kubeconfig: undefined,
    });
    expect(
      parseCommandLine([
        "migrate",
        "web-0",
        "--to",
        "cloud-1",
        "--policy",
        "restart",
        "--no-follow",
        "--timeout",
        "90s",
      ]).command,
    ).toEqual({
      name: "migrate",
      pod: "web-0",
      to: "cloud-1",
      policy: "restart",
      follow: false,
      timeoutMs: 90_000,
    });
    expect(parseCommandLine(["migrate", "web-0"]).command).toMatchObject({
      follow: true,
      timeoutMs: 600_000,
    });
    expect(parseCommandLine(["migrate", "web-0"]).command).not.toHaveProperty("back");
    expect(parseCommandLine(["migrate", "web-0", "--back"]).command).toMatchObject({
      name: "migrate",
      back: true,
    });
    expect(parseCommandLine([]).command).toEqual({ name: "help" });
    expect(parseCommandLine(["list", "--help"]).command).toEqual({ name: "help" });
  });

  it("refuses what does not make sense, saying why", () => {
    expect(usage(["frobnicate"])).toBe('unknown command "frobnicate"');
    expect(usage(["list", "--to", "x"])).toBe("list does not take --to");
    expect(usage(["migrate"])).toBe("migrate needs the name of a pod");
    expect(usage(["describe"])).toBe("describe needs the name of a migration");
    expect(usage(["describe", "a", "b"])).toBe('describe: unexpected argument "b"');
    expect(usage(["migrate", "web", "--policy", "live"])).toMatch(
      /--policy must be checkpoint or restart/,
    );
    expect(usage(["migrate", "Web_0"])).toMatch(/not a valid pod name/);
    expect(usage(["migrate", "web", "--timeout", "soon"])).toMatch(/--timeout must be a duration/);
    expect(usage(["list", "-n", "a", "-A"])).toBe("use either --namespace or --all-namespaces");
    expect(usage(["status", "--recent=-1"])).toMatch(/--recent must be an integer/);
    expect(usage(["status", "--bogus"])).toMatch(/bogus/);
  });
});

describe("formatting", () => {
  it("aligns tables like kubectl without trailing blanks", () => {
    expect(
      table(
        ["A", "LONGER"],
        [
          ["xx", "1"],
          ["y", ""],
        ],
      ),
    ).toBe("A    LONGER\nxx   1\ny");
  });

  it("shows ages and sizes the way kubectl users read them", () => {
    expect(formatAge("2026-03-01T11:59:15Z", now)).toBe("45s");
    expect(formatAge(new Date("2026-03-01T11:00:00Z"), now)).toBe("60m");
    expect(formatAge("2026-02-28T12:00:00Z", now)).toBe("24h");
    expect(formatAge("2026-02-01T12:00:00Z", now)).toBe("28d");
    expect(formatAge(undefined, now)).toBe("<unknown>");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(25 * 1024 * 1024)).toBe("25.0 MiB");
    expect(
      triggerText({ type: "ThresholdExceeded", metric: "memory", value: 91.26, threshold: 90 }),
    ).toBe("memory 91.3%>90%");
    expect(
      triggerText({
        type: "ThresholdExceeded",
        metric: "application",
        value: 140.5,
        threshold: 100,
        series: 'http_requests_total{code!="500"} rate per minute',
      }),
    ).toBe("http_requests_total 140.5>100");
    expect(triggerText(undefined)).toBe("Manual");
  });

  it("builds the timeline from the steps recorded, each with its own duration", () => {
    const rows = timeline({
      created: "2026-03-01T10:00:00Z",
      restoreStarted: "2026-03-01T10:00:01Z",
      restored: "2026-03-01T10:00:04.500Z",
      finished: "2026-03-01T10:00:05Z",
    });
    expect(rows.map((r) => [r.label, r.offset, r.took, r.step])).toEqual([
      ["Created", 0, undefined, ""],
      ["Restore started", 1, 1, ""],
      ["Restored", 4.5, 3.5, "restore"],
      ["Finished", 5, 0.5, ""],
    ]);
    expect(timeline(undefined)).toEqual([]);
  });
});

describe("renderers", () => {
  it("status: says what to do without EdgeNodes, and hides migrations with --recent 0", () => {
    const text = renderStatus([], [mig("a-mig")], now, 0);
    expect(text).toMatch(/^No EdgeNodes\. Create one to start: kubectl apply/);
    expect(text).not.toContain("a-mig");
    expect(renderStatus([], [], now, 10)).toContain("No migrations yet.");
  });

  it("status: lists conditions that are not True under their EdgeNode", () => {
    const en = fullEdgeNode("floor");
    en.status = fullEdgeNodeStatus();
    const text = renderStatus([en], [], now, 10);
    expect(text).toContain("CheckpointSupported=False SomeNodesUnsupported:");
    expect(text).not.toContain("Ready=True");
  });

  it("list: oldest first, ties broken by the operator's timestamps, failures with their reason", () => {
    const a = mig("a-mig", { phase: "Succeeded", timestamps: { created: "2026-03-01T11:00:02Z" } });
    const b = mig("b-mig", {
      phase: "Failed",
      failureReason: "NoTarget",
      timestamps: { created: "2026-03-01T11:00:01Z" },
    });
    const back = mig("c-mig", {
      phase: "Succeeded",
      timestamps: { created: "2026-03-01T11:00:03Z" },
    });
    back.spec.direction = "ToEdge";
    back.spec.reason = {
      type: "BelowReturnLevel",
      metric: "cpu",
      value: 3.2,
      threshold: 20,
      windowSeconds: 60,
    };
    const lines = renderList([a, b, back], now, "apps").split("\n");
    expect(lines[0]).toMatch(/^NAME\s+POD\s+DIRECTION\s+PHASE/);
    expect(lines[1]).toMatch(/^b-mig\s+b\s+ToCloud\s+Failed \(NoTarget\)/);
    expect(lines[2]).toMatch(/^a-mig\s+a\s+ToCloud\s+Succeeded/);
    expect(lines[3]).toMatch(/^c-mig\s+c\s+ToEdge\s+Succeeded.*cpu 3\.2%<20%/);
    expect(renderList([a], now).split("\n")[0]).toMatch(/^NAMESPACE\s+NAME/);
    expect(renderList([], now)).toBe("No migrations found.");
  });

  it("describe: a failure gets its own line; a success shows the message instead", () => {
    const m = fullMigration("m", "apps");
    m.status = {
      ...fullMigrationStatus(),
      phase: "Failed",
      failureReason: "PushFailed",
      message: "registry said 401",
    };
    m.status.conditions = [
      {
        type: "Succeeded",
        status: "False",
        reason: "PushFailed",
        message: "x",
        lastTransitionTime: "2026-03-01T11:00:00Z",
      },
    ];
    expect(renderDescribe(m, [], now)).toMatch(/^Failure:\s+PushFailed: registry said 401$/m);
    const ok = fullMigration("m", "apps");
    ok.status = { ...fullMigrationStatus(), phase: "Succeeded", message: "Migrated" };
    // Succeeded: never thawed (the fixture sets the field only to cover it).
    const { thawed: _, ...held } = ok.status.timestamps ?? {};
    ok.status.timestamps = held;
    ok.status.conditions = [
      {
        type: "Succeeded",
        status: "True",
        reason: "CutOver",
        message: "",
        lastTransitionTime: "2026-03-01T11:00:00Z",
      },
    ];
    const text = renderDescribe(ok, [], now);
    expect(text).not.toMatch(/^Failure:/m);
    expect(text).toMatch(/^Message:\s+Migrated$/m);
    expect(text).toMatch(
      /^Hand-off:\s+Freeze: held frozen at its checkpointed state; downtime 3\.8s \(nothing ran\), nothing lost or done twice$/m,
    );
    expect(text).toMatch(/^Direction:\s+ToCloud \(from an edge node to the cloud\)$/m);
    const back = structuredClone(ok);
    back.spec.direction = "ToEdge";
    back.spec.reason = {
      type: "BelowReturnLevel",
      metric: "application",
      series: "web_requests_total rate per minute",
      value: 0,
      threshold: 10,
      windowSeconds: 30,
    };
    const backText = renderDescribe(back, [], now);
    expect(backText).toMatch(/^Direction:\s+ToEdge \(back from the cloud to an edge node\)$/m);
    expect(backText).toMatch(
      /^Trigger:\s+BelowReturnLevel: web_requests_total rate per minute at 0, under the 10 return level sustained over 30s$/m,
    );
  });

  it("shows a fork's divergence, a rolled-back hold and a hold with a gap", () => {
    const full = fullMigrationStatus();
    const { thawed: _, ...held } = full.timestamps ?? {};
    const base = { ...full, phase: "Succeeded" as const, timestamps: held };
    const fork = mig("f", { ...base, handoff: "Fork", downtimeSeconds: undefined });
    expect(renderDescribe(fork, [], now)).toMatch(
      /^Hand-off:\s+Fork: the original ran on 3\.1s past the checkpoint/m,
    );
    const thawed = mig("t", {
      ...base,
      phase: "Failed",
      timestamps: { ...base.timestamps, thawed: "2026-01-02T03:04:09.300Z" },
    });
    expect(renderDescribe(thawed, [], now)).toMatch(
      /^Hand-off:\s+Freeze: held frozen at its checkpointed state, thawed again at 2026-01-02T03:04:09.300Z \(rolled back/m,
    );
    const gap = mig("g", {
      ...base,
      containers: (base.containers ?? []).map((c) => ({ ...c, freezeGapMilliseconds: 12 })),
    });
    expect(renderDescribe(gap, [], now)).toMatch(/held frozen 12 ms after its checkpointed state/);
    expect(renderDescribe(mig("r", { ...base, policy: "restart" }), [], now)).not.toMatch(
      /Hand-off/,
    );
  });
});

describe("migrate", () => {
  it("names the Migration as the decision engine would, one per pod instance", () => {
    const pod = { metadata: { name: "web-0", namespace: "apps", uid: "u-1" } };
    const m = buildMigration(pod, {});
    expect(m.metadata).toMatchObject({ name: migrationName("web-0", "u-1"), namespace: "apps" });
    expect(m.spec).toEqual({ podName: "web-0", reason: { type: "Manual" } });
    expect(buildMigration(pod, { to: "cloud-1", policy: "restart" }).spec).toMatchObject({
      targetNode: "cloud-1",
      restorePolicy: "restart",
    });
    expect(buildMigration(pod, { back: true }).spec).toEqual({
      podName: "web-0",
      direction: "ToEdge",
      reason: { type: "Manual" },
    });
    // After an ended attempt, the next one.
    const first = migrationName("web-0", "u-1");
    expect(buildMigration(pod, {}, ["other", first]).metadata.name).toBe(`${first}-2`);
  });

  it("decides the outcome from the Succeeded condition, phase only without one", () => {
    const c = (status: "True" | "False" | "Unknown") => ({
      conditions: [
        {
          type: "Succeeded",
          status,
          reason: "R",
          message: "",
          lastTransitionTime: "2026-03-01T11:00:00Z",
        },
      ],
    });
    expect(outcome(mig("x", { phase: "CuttingOver", ...c("Unknown") }))).toBeUndefined();
    expect(outcome(mig("x", { phase: "Succeeded", ...c("True") }))).toBe("Succeeded");
    expect(outcome(mig("x", { phase: "Failed", ...c("False") }))).toBe("Failed");
    expect(outcome(mig("x", { phase: "Failed" }))).toBe("Failed");
    expect(outcome(mig("x"))).toBeUndefined();
  });

  it("prints one line per phase change with the elapsed time and how long the last phase took", () => {
    const p = new Progress(1_000);
    expect(p.observe(mig("x"), 1_000)).toEqual([
      "   +0.0s  Pending        waiting for the operator",
    ]);
    expect(p.observe(mig("x", { phase: "Pending" }), 1_500)).toEqual([]);
    expect(
      p.observe(mig("x", { phase: "Restoring", targetNode: "c1", policy: "restart" }), 3_000),
    ).toEqual(["   +2.0s  Restoring      on c1 (policy restart)  (Pending took 2.0s)"]);
    expect(
      p.observe(
        mig("x", {
          phase: "Failed",
          failureReason: "RestoreTimeout",
          message: "not Ready in 120s",
        }),
        4_200,
      ),
    ).toEqual([
      "   +3.2s  Failed         RestoreTimeout: not Ready in 120s  (Restoring took 1.2s)",
    ]);
  });
});

describe("follow", () => {
  /** A stand-in API: `get` returns `current`; watches get the versions pushed with `emit`. */
  function fakeApi(first: Migration | undefined) {
    let current = first;
    let listeners: ((m: Migration | undefined) => void)[] = [];
    let endWatch: () => void = () => {};
    const printed: string[] = [];
    const calls = { get: 0, watch: 0 };
    const deps: FollowDeps = {
      get: async () => {
        calls.get++;
        return current;
      },
      watch: async (_rv, onChange) => {
        calls.watch++;
        listeners.push(onChange);
        return {
          stop: () => {
            listeners = listeners.filter((l) => l !== onChange);
          },
          ended: new Promise<void>((r) => {
            endWatch = r;
          }),
        };
      },
      print: (l) => printed.push(l),
      warn: (l) => printed.push(`warn: ${l}`),
      now: Date.now,
      timeoutMs: 2_000,
      retryMs: 10,
    };
    const settle = () => new Promise((r) => setTimeout(r, 30));
    return {
      deps,
      printed,
      calls,
      emit: async (m: Migration | undefined) => {
        current = m;
        for (const l of listeners) l(m);
        await settle();
      },
      /** The server closes the watch; the change in between reaches only a fresh get. */
      dropWatch: async (m: Migration) => {
        current = m;
        endWatch();
        await settle();
      },
      settle,
    };
  }

  it("follows watch events to the end and survives a watch that ends", async () => {
    const api = fakeApi(mig("x", { phase: "Pending" }));
    const result = follow(api.deps, new Progress(Date.now()));
    await api.settle();
    await api.emit(mig("x", { phase: "Restoring" }));
    await api.dropWatch(mig("x", { phase: "CuttingOver" }));
    expect(api.calls).toEqual({ get: 2, watch: 2 });
    await api.emit(mig("x", { phase: "Succeeded" }));
    const r = await result;
    expect(r).toMatchObject({ kind: "ended", outcome: "Succeeded" });
    expect(api.printed.map((l) => l.trim().split(/\s+/)[1])).toEqual([
      "Pending",
      "Restoring",
      "CuttingOver",
      "Succeeded",
    ]);
  });

  it("reports a deleted migration, a timeout and an interruption", async () => {
    const deleted = fakeApi(mig("x", { phase: "Pending" }));
    const r1 = follow(deleted.deps, new Progress(Date.now()));
    await deleted.settle();
    await deleted.emit(undefined);
    expect(await r1).toEqual({ kind: "deleted" });

    const slow = fakeApi(mig("x", { phase: "Pending" }));
    slow.deps.timeoutMs = 100;
    expect(await follow(slow.deps, new Progress(Date.now()))).toMatchObject({ kind: "timeout" });

    const stopped = fakeApi(mig("x", { phase: "Pending" }));
    const ctl = new AbortController();
    stopped.deps.signal = ctl.signal;
    const r3 = follow(stopped.deps, new Progress(Date.now()));
    ctl.abort();
    expect(await r3).toMatchObject({ kind: "aborted" });
  });

  it("keeps retrying while the API server is unreachable, warning once", async () => {
    const api = fakeApi(mig("x", { phase: "Pending" }));
    let failures = 3;
    const get = api.deps.get;
    api.deps.get = async () => {
      if (failures-- > 0) throw new Error("connect ECONNREFUSED");
      return get();
    };
    const r = follow(api.deps, new Progress(Date.now()));
    await new Promise((res) => setTimeout(res, 100));
    await api.emit(mig("x", { phase: "Failed", failureReason: "NoTarget" }));
    expect(await r).toMatchObject({ kind: "ended", outcome: "Failed" });
    expect(api.printed.filter((l) => l.startsWith("warn:"))).toEqual([
      "warn: Lost the migration's updates (connect ECONNREFUSED); retrying",
    ]);
  });
});
