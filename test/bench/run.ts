// `npm run bench`: every benchmark, printed side by side with its baseline.
// `npm run bench -- ingest monitor` runs only the named sections.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../support/operator.ts";
import { type E2eResult, runE2eBench } from "./e2e.ts";
import { runIngest } from "./ingest.ts";
import { monitorFootprint, reaction } from "./monitor.ts";
import { formatPackPushTable, runPackPushBench } from "./pack-push.ts";
import { runVerifyBench } from "./verify.ts";

type Row = (string | number)[];

export function table(title: string, header: string[], rows: Row[]): void {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  const line = (r: Row) =>
    `| ${r.map((c, i) => String(c ?? "").padEnd(widths[i] ?? 0)).join(" | ")} |`;
  console.log(`\n${title}\n`);
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of cells.slice(1)) console.log(line(r));
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function median(xs: number[]): number | undefined {
  const v = [...xs].sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

/** Median (min-max) of durations in ms, shown in seconds; "-" when none. */
function spread(ms: (number | undefined)[]): string {
  const v = ms.filter((x): x is number => x !== undefined && Number.isFinite(x));
  const m = median(v);
  if (m === undefined) return "-";
  const s = (x: number) => (x / 1000).toFixed(2);
  return v.length === 1 ? s(m) : `${s(m)} (${s(Math.min(...v))}-${s(Math.max(...v))})`;
}

const mb = (bytes: (number | undefined)[]) => {
  const m = median(bytes.filter((x): x is number => x !== undefined));
  return m === undefined ? "-" : (m / 1e6).toFixed(1);
};

function printE2eTables(r: E2eResult, runs: number): void {
  const v = r.versions;
  const on = `Kubernetes ${v.kubernetes}, containerd ${v.containerd}, CRIU ${v.criu}, buildah ${v.buildah}`;
  const sizes = [...new Set([...r.edgeshift, ...r.manual].map((x) => x.sizeMb))];
  const rows: Row[] = [];
  for (const size of sizes) {
    for (const policy of ["checkpoint", "restart"] as const) {
      const xs = r.edgeshift.filter((x) => x.sizeMb === size && x.policy === policy);
      if (xs.length === 0) continue;
      const ck = policy === "checkpoint";
      rows.push([
        `${size} MiB`,
        policy,
        spread(xs.map((x) => x.dispatchMs)),
        ck ? spread(xs.map((x) => x.checkpointMs)) : "-",
        ck ? spread(xs.map((x) => x.packPushMs)) : "-",
        ck ? spread(xs.map((x) => x.handMs)) : "-",
        spread(xs.map((x) => x.restoreMs)),
        spread(xs.map((x) => x.cutoverMs)),
        ck ? spread(xs.map((x) => x.downtimeMs)) : "-",
        spread(xs.map((x) => x.totalMs)),
        ck ? mb(xs.map((x) => x.imageBytes)) : "-",
        ck ? spread(xs.map((x) => x.logGapMs)) : "-",
        ck
          ? xs.every((x) => x.stateKept)
            ? `yes (${xs.length}/${xs.length})`
            : "NO"
          : "no (new process)",
      ]);
    }
  }
  table(
    `edgeshift on real nodes (${on}): median (min-max) of ${runs} run(s), seconds. Steps from the Migration's status.timestamps (dispatch: Migration created by the bench -> checkpointStarted, under restart -> restoreStarted; hand-over: imagePushed -> restoreStarted; cutover: restored -> original's deletion; downtime: status.downtimeSeconds, handoff Freeze, the original held from the end of its dump to the restored pod Ready, nothing running meanwhile); total: Migration created by the bench -> Succeeded and the original pod gone, as the bench saw them (50 ms polls); log gap: largest gap between two lines of the restored pod's log (workload ticks every 0.2 s)`,
    [
      "size",
      "policy",
      "dispatch",
      "checkpoint",
      "pack+push",
      "hand-over",
      "restore",
      "cutover",
      "downtime",
      "total",
      "image MB",
      "log gap",
      "state kept",
    ],
    rows,
  );

  const mrows: Row[] = sizes.flatMap((size) => {
    const xs = r.manual.filter((x) => x.sizeMb === size);
    if (xs.length === 0) return [];
    return [
      [
        `${size} MiB`,
        spread(xs.map((x) => x.checkpointMs)),
        spread(xs.map((x) => x.copyMs)),
        spread(xs.map((x) => x.buildMs)),
        spread(xs.map((x) => x.commitMs)),
        spread(xs.map((x) => x.pushMs)),
        spread(xs.map((x) => x.restoreMs)),
        spread(xs.map((x) => x.deleteMs)),
        spread(xs.map((x) => x.totalMs)),
        mb(xs.map((x) => x.archiveBytes)),
        mb(xs.map((x) => x.imageBytes)),
        spread(xs.map((x) => x.logGapMs)),
        xs.every((x) => x.stateKept) ? `yes (${xs.length}/${xs.length})` : "NO",
      ],
    ];
  });
  table(
    `The manual recipe of the upstream checkpoint docs on the same nodes and workload (${on}): median (min-max) of ${runs} run(s), seconds. curl POST https://<edge node>:10250/checkpoint/... with a token allowed create on nodes/checkpoint; cp of the archive off the node's /var/lib/kubelet/checkpoints; buildah from scratch + add + config --annotation (org.criu.checkpoint.container.name, io.kubernetes.cri-o.annotations.checkpoint.name); buildah commit; buildah push (its default gzip) to the checkpoint registry; kubectl apply of the user's pod with the checkpoint image on the cloud node -> Running; kubectl delete pod of the original; total: checkpoint call -> restored Running and original deleted`,
    [
      "size",
      "curl checkpoint",
      "copy off node",
      "from+add+config",
      "commit",
      "push",
      "pod Running",
      "delete original",
      "total",
      "archive MB",
      "image MB",
      "log gap",
      "state kept",
    ],
    mrows,
  );

  const srows: Row[] = sizes.map((size) => {
    const tot = (xs: { sizeMb: number; totalMs: number }[]) =>
      median(xs.filter((x) => x.sizeMb === size).map((x) => x.totalMs));
    const ck = tot(r.edgeshift.filter((x) => x.policy === "checkpoint"));
    const rs = tot(r.edgeshift.filter((x) => x.policy === "restart"));
    const man = tot(r.manual);
    const s = (x?: number) => (x === undefined ? "-" : (x / 1000).toFixed(2));
    const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(1)}x` : "-");
    return [`${size} MiB`, s(ck), s(rs), s(man), ratio(man, ck), "yes / no / yes"];
  });
  table(
    `Side by side, measured in this run (${on}), median total seconds: edgeshift (Migration created -> original gone) vs the manual recipe (checkpoint call -> restored Running and original deleted); state kept: edgeshift checkpoint / edgeshift restart / manual`,
    [
      "size",
      "edgeshift checkpoint",
      "edgeshift restart",
      "manual recipe",
      "manual / edgeshift checkpoint",
      "state kept",
    ],
    srows,
  );
}

const wanted = new Set(process.argv.slice(2));
const on = (s: string) => wanted.size === 0 || wanted.has(s);

if (on("ingest")) {
  const rows: Row[] = [];
  for (const pods of [1000, 10_000]) {
    const r = await runIngest(pods, 10);
    rows.push([pods, r.ratePerSec, r.cpuCores, r.perCore, r.p50Ms, r.p99Ms, r.rssMB, r.dropped]);
  }
  table(
    "Ingest: simulated monitors at 1 Hz -> NATS -> verify + decide (target: 10,000 samples/s on one core, p99 < 50 ms)",
    [
      "pods",
      "samples/s",
      "cores used",
      "samples/s per core",
      "p50 ms",
      "p99 ms",
      "RSS MB",
      "dropped",
    ],
    rows,
  );
}

if (on("verify")) {
  const rows: Row[] = [];
  const results = runVerifyBench(5);
  const base = results[0]?.usPerSample ?? Number.NaN;
  for (const r of results) rows.push([r.way, r.usPerSample, base / r.usPerSample, r.accepted]);
  table(
    "Receive path without NATS: verify + decide per sample, 10,000 monitors (median of 5 rounds, same run)",
    ["key lookup", "CPU µs per sample", "speed vs before", "accepted (last round)"],
    rows,
  );
}

if (on("reaction")) {
  const rows: Row[] = [];
  for (const w of [3, 5, 10])
    rows.push([`edgeshift, ${w} s window`, (await reaction(w)) / 1000, "measured"]);
  rows.push(["HPA (15 s sync on metrics-server's 15 s resolution)", "15-30", "documented"]);
  rows.push(["KEDA (30 s polling)", "30", "documented"]);
  rows.push(["checkpoint-restore-operator (30 s poll + 15 s metrics)", "30-45", "documented"]);
  rows.push(["thesis prototype (one sample, no window)", "~1", "migrates on a single spike"]);
  table(
    "Reaction: start of a sustained breach -> decision (real monitor, real NATS)",
    ["who", "seconds", "source"],
    rows,
  );
}

if (on("monitor")) {
  // The image runs compiled JavaScript; compile the sidecar into dist/ (git-ignored) to measure that.
  execFileSync(
    process.execPath,
    [
      join(repoRoot, "node_modules/typescript/bin/tsc"),
      "-p",
      join(repoRoot, "tsconfig.build.json"),
    ],
    {
      stdio: "inherit",
    },
  );
  const js = join(repoRoot, "dist/sidecar/main.js");
  const variants: [string, string[]][] = [
    ["TypeScript source (dev)", [join(repoRoot, "sidecar/main.ts")]],
    ["compiled JS", [js]],
    ["compiled JS, image flags", ["--max-semi-space-size=1", "--v8-pool-size=0", js]],
  ];
  const rows: Row[] = [];
  for (const [name, cmd] of variants) {
    if (!existsSync(cmd[cmd.length - 1] ?? "")) continue;
    const r = await monitorFootprint(15, cmd);
    rows.push([name, r.rssMB, r.anonMB, r.cpuPercentOfCore, r.cpuMsPerSample, r.samples]);
  }
  rows.push(["target", "<= 40", "", "<= 0.5", "", ""]);
  table(
    "Monitor footprint at 1 sample/s (RSS includes the node binary's shared file pages; private = RssAnon)",
    ["variant", "RSS MB", "private MB", "CPU % of a core", "CPU ms/sample", "samples"],
    rows,
  );
}

if (on("pack-push")) {
  // buildah comes from Debian; the bench installs nothing and notes a missing buildah.
  const report = await runPackPushBench({});
  console.log(
    "\nPack + push of a checkpoint archive into a local registry: edgeshift vs the buildah recipe (target: >= 3x buildah, uncompressed >= 80% of SHA-256)\n",
  );
  console.log(formatPackPushTable(report));
}

if (on("e2e")) {
  // Real nodes; E2E_SIZES=1,16 E2E_RUNS=1 for a quick pass; E2E_EDGE_MBIT=100 shapes the edge link.
  const runs = Number(process.env.E2E_RUNS ?? 3);
  const edgeMbit = process.env.E2E_EDGE_MBIT ? Number(process.env.E2E_EDGE_MBIT) : undefined;
  if (edgeMbit !== undefined && !(edgeMbit > 0)) throw new Error("E2E_EDGE_MBIT must be > 0");
  const sizesMb = (process.env.E2E_SIZES ?? "1,16,64,256").split(",").map(Number);
  if (!(runs >= 1) || sizesMb.some((x) => !(x >= 1))) {
    throw new Error("E2E_RUNS must be >= 1 and E2E_SIZES a comma list of MiB >= 1");
  }
  const r = await runE2eBench({
    sizesMb,
    runs,
    edgeMbit,
    log: (m) => console.error(`[e2e] ${m}`),
  });
  if (edgeMbit)
    console.log(`\nThe edge node's link shaped to ${edgeMbit} Mbit/s both ways (tc tbf).`);
  printE2eTables(r, runs);
}
