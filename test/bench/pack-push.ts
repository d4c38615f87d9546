// Pack + push benchmark: the same checkpoint archives (256 MiB and 1 GiB of
// generated CRIU pages in the CRI-O layout) into the same local docker-registry,
// edgeshift (each compression) against the buildah recipe from the Kubernetes
// checkpoint blog (buildah from scratch / add / config --annotation / commit /
// push, vfs storage). Each edgeshift run is its own process (compiled JS, as
// the agent runs) so its peak RSS is its own; buildah's is the largest of its
// steps (GNU time). The single-core SHA-256 rate is measured in the same run.
//
// Run alone: npx node test/bench/pack-push.ts [--sizes=256,1024] [--no-buildah]
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { validateArchive } from "../../migration/archive/validate.ts";
import type { Compression } from "../../migration/oci/image.ts";
import { encodeLayer } from "../../migration/oci/layer.ts";
import {
  freePort,
  type Managed,
  startProcess,
  stopProcess,
  waitUntil,
} from "../cluster/process.ts";
import { compileEntry } from "../support/compiled-child.ts";
import type { PushChildRequest, PushChildResponse } from "../support/push-child.ts";
import { writeSyntheticArchive } from "../support/synthetic-archive.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface BenchRow {
  sizeMiB: number;
  tool: string;
  compression: string;
  archiveBytes: number;
  layerBytes?: number;
  seconds?: number;
  peakRssBytes?: number;
  note?: string;
}

export interface PackPushReport {
  sha256MBps: number;
  rows: BenchRow[];
  notes: string[];
}

export interface PackPushOptions {
  /** Archive sizes in MiB of generated pages. Default [256, 1024]. */
  sizesMiB?: number[];
  compressions?: Compression[];
  buildah?: boolean;
  /** Skip a buildah row whose estimated time exceeds this. Default 240 s. */
  buildahBudgetSeconds?: number;
  log?: (msg: string) => void;
}

/** Single-core SHA-256 over an in-memory buffer, MB/s (10^6 bytes). */
export function measureSha256(totalBytes = 1024 * MiB): number {
  const buf = randomBytes(64 * MiB);
  const rounds = Math.max(1, Math.round(totalBytes / buf.length));
  createHash("sha256").update(buf.subarray(0, MiB)).digest(); // warm up
  const t = performance.now();
  for (let i = 0; i < rounds; i++) createHash("sha256").update(buf).digest();
  return (rounds * buf.length) / 1e6 / ((performance.now() - t) / 1000);
}

async function startRegistry(dir: string): Promise<{ proc: Managed; host: string }> {
  const port = await freePort();
  const config = join(dir, "registry.yml");
  await writeFile(
    config,
    stringify({
      version: 0.1,
      log: { level: "error", accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: join(dir, "registry") }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString("hex") },
    }),
  );
  const proc = startProcess("registry", "docker-registry", ["serve", config], { logDir: dir });
  const host = `127.0.0.1:${port}`;
  await waitUntil(
    "registry",
    async () => ((await fetch(`http://${host}/v2/`)).status === 200 ? true : undefined),
    { timeoutMs: 20_000, alive: [proc] },
  );
  return { proc, host };
}

async function pushChild(childPath: string, req: PushChildRequest): Promise<PushChildResponse> {
  // --expose-gc as the agent runs it (see migration/oci/layer.ts); a clean env.
  const p = spawn(process.execPath, ["--expose-gc", childPath], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  let out = "";
  let err = "";
  p.stdout.on("data", (d) => {
    out += d;
  });
  p.stderr.on("data", (d) => {
    err += d;
  });
  p.stdin.end(JSON.stringify(req));
  const code = await new Promise<number | null>((r) => p.on("exit", r));
  if (code !== 0) throw new Error(`push child exited ${code}: ${err}`);
  return JSON.parse(out) as PushChildResponse;
}

/** The buildah recipe in a throw-away storage root; returns seconds and the largest step's RSS. */
async function buildahRecipe(
  root: string,
  archive: string,
  container: string,
  baseImage: string,
  dest: string,
): Promise<{ seconds: number; peakRssBytes: number }> {
  const global = [
    "--root",
    join(root, "storage"),
    "--runroot",
    join(root, "run"),
    "--storage-driver",
    "vfs",
  ];
  let peakKiB = 0;
  const step = async (args: string[]): Promise<string> => {
    const { stdout, stderr } = await run(
      "/usr/bin/time",
      ["-f", "maxrss=%M", "buildah", ...global, ...args],
      { maxBuffer: 16 * MiB, env: { ...process.env, BUILDAH_ISOLATION: "chroot" } },
    );
    const m = stderr.match(/maxrss=(\d+)/g);
    for (const x of m ?? []) peakKiB = Math.max(peakKiB, Number(x.slice(7)));
    return stdout.trim();
  };
  const t = performance.now();
  const ctr = await step(["from", "scratch"]);
  await step(["add", ctr, archive, "/"]);
  await step([
    "config",
    "--annotation",
    `io.kubernetes.cri-o.annotations.checkpoint.name=${container}`,
    "--annotation",
    `org.criu.checkpoint.container.name=${container}`,
    "--annotation",
    `io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName=${baseImage}`,
    ctr,
  ]);
  await step(["commit", "-q", ctr, "localhost/checkpoint-bench:latest"]);
  await step([
    "push",
    "--tls-verify=false",
    "localhost/checkpoint-bench:latest",
    `docker://${dest}`,
  ]);
  const seconds = (performance.now() - t) / 1000;
  await step(["rm", "--all"]).catch(() => "");
  await step(["rmi", "--all", "--force"]).catch(() => "");
  return { seconds, peakRssBytes: peakKiB * 1024 };
}

/** Total layer size of the image under :latest, as the registry stores it. */
async function layerBytes(host: string, repo: string): Promise<number | undefined> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/latest`, {
    headers: {
      accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    },
  });
  if (!res.ok) return undefined;
  const m = (await res.json()) as { layers?: { size: number }[] };
  return m.layers?.reduce((a, l) => a + l.size, 0);
}

async function haveBuildah(): Promise<boolean> {
  try {
    await run("buildah", ["--version"]);
    return true;
  } catch {
    return false;
  }
}

export async function runPackPushBench(opts: PackPushOptions = {}): Promise<PackPushReport> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const sizes = opts.sizesMiB ?? [256, 1024];
  const compressions = opts.compressions ?? ["none", "zstd", "gzip"];
  const budget = opts.buildahBudgetSeconds ?? 240;
  const notes: string[] = [];
  const rows: BenchRow[] = [];
  const dir = await mkdtemp(join(tmpdir(), "edgeshift-bench-"));
  let registry: { proc: Managed; host: string } | undefined;
  const child = await compileEntry("test/support/push-child.ts");
  let useBuildah = opts.buildah ?? true;
  if (useBuildah && !(await haveBuildah())) {
    useBuildah = false;
    notes.push("buildah is not installed (apt-get install -y buildah): buildah rows skipped.");
  }
  let buildahSecondsPerByte: number | undefined;
  try {
    const sha256MBps = measureSha256();
    log(`SHA-256 single core: ${sha256MBps.toFixed(0)} MB/s`);
    registry = await startRegistry(dir);
    for (const sizeMiB of sizes) {
      const ckptDir = join(dir, "checkpoints");
      await mkdir(ckptDir, { recursive: true });
      const written = await writeSyntheticArchive(
        join(ckptDir, `checkpoint-bench-${sizeMiB}_bench-app-2025-01-01T00:00:00Z.tar`),
        {
          namespace: "bench",
          pod: `bench-${sizeMiB}`,
          container: "app",
          image: "registry.example/bench/app:1",
          dataBytes: sizeMiB * MiB,
        },
      );
      const base = { sizeMiB, archiveBytes: written.sizeBytes };
      log(`Generated a ${(written.sizeBytes / 1e6).toFixed(0)} MB archive`);

      // The pipeline alone, no registry: what the link or registry leaves on the table.
      const info = await validateArchive(written.path);
      for (const compression of ["none", "zstd"] as const) {
        const t = performance.now();
        const d = await encodeLayer(info.path, compression, { write: async () => {} });
        rows.push({
          ...base,
          tool: "edgeshift (no upload)",
          compression,
          layerBytes: d.size,
          seconds: (performance.now() - t) / 1000,
        });
      }

      for (const compression of compressions) {
        const res = await pushChild(child.path, {
          archivePath: written.path,
          repository: `${registry.host}/bench/edgeshift-${compression}-${sizeMiB}`,
          tag: "latest",
          compression,
          insecure: true,
        });
        rows.push({
          ...base,
          tool: "edgeshift",
          compression,
          layerBytes: res.result.sizes.layerBytes,
          seconds: res.elapsedMs / 1000,
          peakRssBytes: res.maxRssBytes,
        });
        log(`edgeshift ${compression} ${sizeMiB} MiB: ${(res.elapsedMs / 1000).toFixed(2)} s`);
      }

      if (useBuildah) {
        const estimate = buildahSecondsPerByte ? buildahSecondsPerByte * written.sizeBytes : 0;
        if (estimate > budget) {
          rows.push({
            ...base,
            tool: "buildah recipe",
            compression: "gzip",
            note: `skipped: ~${estimate.toFixed(0)} s estimated`,
          });
          notes.push(
            `buildah ${sizeMiB} MiB skipped: estimated ${estimate.toFixed(0)} s > ${budget} s budget.`,
          );
        } else {
          const root = join(dir, "buildah");
          try {
            const r = await buildahRecipe(
              root,
              written.path,
              "app",
              "registry.example/bench/app:1",
              `${registry.host}/bench/buildah-${sizeMiB}:latest`,
            );
            buildahSecondsPerByte = r.seconds / written.sizeBytes;
            rows.push({
              ...base,
              tool: "buildah recipe",
              compression: "gzip",
              layerBytes: await layerBytes(registry.host, `bench/buildah-${sizeMiB}`),
              seconds: r.seconds,
              peakRssBytes: r.peakRssBytes,
            });
            log(`buildah ${sizeMiB} MiB: ${r.seconds.toFixed(2)} s`);
          } finally {
            await rm(root, { recursive: true, force: true });
          }
        }
      }
      await rm(ckptDir, { recursive: true, force: true });
    }
    notes.push(
      "MB = 10^6 bytes; MB/s = archive bytes / wall time of validate+pack+push (edgeshift) or from+add+config+commit+push (buildah).",
      "Registry: local Debian docker-registry (filesystem storage) on the same 2 cores; buildah push compresses with gzip by default.",
      "'no upload' rows: the read-hash-compress pipeline into a discarding sink, in the bench process (no RSS column).",
    );
    return { sha256MBps, rows, notes };
  } finally {
    if (registry) await stopProcess(registry.proc);
    await child.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The report as a text table. */
export function formatPackPushTable(report: PackPushReport): string {
  const header = [
    "archive",
    "tool",
    "compression",
    "layer MB",
    "time s",
    "MB/s",
    "peak RSS MB",
    "x buildah",
    "% SHA-256",
  ];
  const lines: string[][] = [];
  for (const r of report.rows) {
    const mbps = r.seconds ? r.archiveBytes / 1e6 / r.seconds : undefined;
    const bh = report.rows.find(
      (x) => x.sizeMiB === r.sizeMiB && x.tool === "buildah recipe" && x.seconds,
    );
    const bhMbps = bh?.seconds ? bh.archiveBytes / 1e6 / bh.seconds : undefined;
    lines.push([
      `${r.sizeMiB >= 1024 ? `${r.sizeMiB / 1024} GiB` : `${r.sizeMiB} MiB`}`,
      r.tool,
      r.compression,
      r.layerBytes !== undefined ? (r.layerBytes / 1e6).toFixed(0) : "-",
      r.seconds !== undefined ? r.seconds.toFixed(2) : "-",
      mbps !== undefined ? mbps.toFixed(0) : (r.note ?? "-"),
      r.peakRssBytes !== undefined ? (r.peakRssBytes / 1e6).toFixed(0) : "-",
      mbps !== undefined && bhMbps ? `${(mbps / bhMbps).toFixed(1)}x` : "-",
      mbps !== undefined && r.compression === "none"
        ? `${((100 * mbps) / report.sha256MBps).toFixed(0)}%`
        : "-",
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [
    `Single-core SHA-256 (node:crypto): ${report.sha256MBps.toFixed(0)} MB/s`,
    fmt(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...lines.map(fmt),
    ...report.notes.map((n) => `- ${n}`),
  ].join("\n");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const sizes = arg("sizes")?.split(",").map(Number);
  const report = await runPackPushBench({
    sizesMiB: sizes,
    buildah: !process.argv.includes("--no-buildah"),
  });
  console.log(formatPackPushTable(report));
}
