// `npm run bench`: every benchmark, printed side by side with its baseline.
// `npm run bench -- ingest monitor` runs only the named sections.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../support/operator.ts";
import { runE2eBench } from "./e2e.ts";
import { runIngest } from "./ingest.ts";
import { monitorFootprint, reaction } from "./monitor.ts";
import { formatPackPushTable, runPackPushBench } from "./pack-push.ts";

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
  // Real CRIU on simulated nodes; E2E_RUNS=1 for a quick pass.
  const runs = Number(process.env.E2E_RUNS ?? 3);
  const { summary } = await runE2eBench({
    sizesMb: [16, 64, 256],
    runs,
    log: (m) => console.error(`[e2e] ${m}`),
  });
  const s = (ms?: number) => (ms === undefined ? "-" : ms / 1000);
  const rows: Row[] = summary.map((r) => [
    `${r.sizeMb} MB`,
    r.policy,
    s(r.checkpointMs),
    s(r.packPushMs),
    s(r.restoreMs),
    s(r.totalMs),
    r.policy === "checkpoint" ? s(r.downtimeMs) : "-",
    r.stateKept ? "yes" : "no",
  ]);
  rows.push([
    "-",
    "thesis prototype (restart only)",
    "-",
    "-",
    "-",
    "~5.1 (breach-to-recreated)",
    "-",
    "no",
  ]);
  rows.push([
    "~27 MB",
    "SHADOW pipeline",
    "-",
    "-",
    "-",
    "3.4-4.5 (checkpoint-to-running)",
    "-",
    "yes",
  ]);
  rows.push(["64 MB", "target", "", "", "", "< 4", "< 1", "yes"]);
  table(
    `End to end on simulated nodes with real CRIU: median of ${runs} run(s) per row, seconds (checkpoint, pack+push, restore: status.timestamps; total: Migration created -> Succeeded seen by the bench; downtime: CRIU dump start on the edge -> first progress read on the cloud node)`,
    [
      "size",
      "policy",
      "checkpoint",
      "pack+push",
      "restore",
      "total",
      "downtime (dump start -> first cloud progress)",
      "state kept",
    ],
    rows,
  );
}
