// Checkpoint and restore of the counter workload through SimRuntime, without
// Kubernetes: `node test/sim/bench.ts [runs] [MB...]` (default 3 runs of 16
// and 64 MB). Prints the median of each figure. The source keeps running
// (--leave-running) and the restored copy runs beside it, as in a migration.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SimRuntime } from "./runtime.ts";
import { ensureSimTools } from "./setup.ts";
import { counterWorkload, readCounterProgress } from "./workloads.ts";

export interface RuntimeBenchRow {
  heldMb: number;
  checkpointMs: number;
  frozenMs: number;
  restoreMs: number;
  imageMiB: number;
}

export async function benchRuntime(runs: number, sizesMb: number[]): Promise<RuntimeBenchRow[]> {
  const tools = await ensureSimTools();
  const rt = await SimRuntime.create({ criuBinDir: tools.criuBinDir, name: "bench" });
  const dir = await mkdtemp(join(tmpdir(), "sim-bench-"));
  const rows: RuntimeBenchRow[] = [];
  try {
    for (const mb of sizesMb) {
      const samples: RuntimeBenchRow[] = [];
      for (let i = 0; i < runs; i++) {
        const src = join(dir, `${mb}-${i}-src`);
        const dst = join(dir, `${mb}-${i}-dst`);
        await mkdir(src);
        await mkdir(dst);
        const spec = (id: string, progressDir: string) => ({
          id,
          rootfs: tools.rootfs,
          ...counterWorkload({ progressDir, memoryMb: mb }),
        });
        await rt.createContainer(spec(`s${mb}-${i}`, src));
        await until(async () => (await readCounterProgress(src))?.heldMb === mb);
        const ck = await rt.checkpoint(`s${mb}-${i}`, join(dir, `ck-${mb}-${i}`));
        const r = await rt.restore(spec(`d${mb}-${i}`, dst), ck.imagesDir);
        await until(async () => (await readCounterProgress(dst)) !== undefined);
        samples.push({
          heldMb: mb,
          checkpointMs: ck.durationMs,
          frozenMs: (ck.stats?.frozenUs ?? 0) / 1000,
          restoreMs: r.durationMs,
          imageMiB: ck.imageBytes / (1 << 20),
        });
        await rt.delete(`s${mb}-${i}`);
        await rt.delete(`d${mb}-${i}`);
        await rm(ck.imagesDir, { recursive: true, force: true });
      }
      rows.push({
        heldMb: mb,
        checkpointMs: Math.round(median(samples.map((s) => s.checkpointMs))),
        frozenMs: Math.round(median(samples.map((s) => s.frozenMs))),
        restoreMs: Math.round(median(samples.map((s) => s.restoreMs))),
        imageMiB: Number(median(samples.map((s) => s.imageMiB)).toFixed(1)),
      });
    }
  } finally {
    await rt.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

async function until(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("workload did not publish its progress in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.argv[2] ?? "3");
  const sizes = process.argv.slice(3).map(Number);
  console.table(await benchRuntime(runs, sizes.length > 0 ? sizes : [16, 64]));
}
